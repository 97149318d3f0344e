"""Keep the effective batch size the same on any number of GPUs, through gradient accumulation."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from interpedit.user_errors import OptionError


class EffectiveBatchSize(Callback):
    """Sets ``trainer.accumulate_grad_batches`` so that per-device batch x processes x accumulation equals
    ``effective_batch_size``, whatever the number of devices and nodes.

    Learning-rate rule: a config's learning rate is meant for its effective batch size. Since that size stays
    the same on 1 or 64 GPUs, the learning rate does not change either (no linear scaling rule needed); change
    ``effective_batch_size`` and the learning rate together, scaling the rate linearly for SGD-like regimes or by
    the square root for Adam-like ones, and check with a short run.

    Args:
        effective_batch_size: samples per optimiser step, over all processes.
        batch_size_attribute: the data module attribute holding the per-device batch size.
    """

    def __init__(self, effective_batch_size: int, batch_size_attribute: str = "batch_size") -> None:
        if effective_batch_size < 1:
            raise OptionError(f"EffectiveBatchSize.effective_batch_size: must be at least 1, got {effective_batch_size}")
        self.effective_batch_size = effective_batch_size
        self.batch_size_attribute = batch_size_attribute

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        per_device = getattr(datamodule, self.batch_size_attribute, None)
        if not isinstance(per_device, int):
            raise ValueError(
                f"EffectiveBatchSize: the data module {type(datamodule).__name__} has no integer "
                f"'{self.batch_size_attribute}' attribute to read the per-device batch size from"
            )
        per_step = per_device * trainer.world_size
        if self.effective_batch_size % per_step:
            raise ValueError(
                f"EffectiveBatchSize: effective_batch_size {self.effective_batch_size} is not a multiple of the "
                f"per-device batch size {per_device} x {trainer.world_size} processes = {per_step}; change "
                f"data.init_args.{self.batch_size_attribute} or the number of devices"
            )
        trainer.accumulate_grad_batches = self.effective_batch_size // per_step
        rank_zero_info(
            f"Effective batch {self.effective_batch_size} = {per_device} per device x {trainer.world_size} processes "
            f"x {trainer.accumulate_grad_batches} accumulated batches"
        )
