"""Tell the researcher what a run produced and where, when it ends."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from callbacks.save_pretrained import SavePretrained


class RunSummary(Callback):
    """Prints the final metrics, the checkpoint and export paths, the wall time and the TensorBoard command."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.monotonic()

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        minutes = (time.monotonic() - self._start) / 60.0
        lines = [f"Run finished: {trainer.global_step} steps in {minutes:.1f} min."]
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "test/"))}
        for name in sorted(metrics):
            value = metrics[name]
            value = value.item() if isinstance(value, torch.Tensor) else value
            lines.append(f"  {name} = {value:.4f}")
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.last_model_path:
                lines.append(f"  last checkpoint: {callback.last_model_path}")
            if isinstance(callback, SavePretrained) and callback.saved_to:
                lines.append(f"  exported model: {callback.saved_to}")
        if trainer.logger is not None and trainer.logger.save_dir is not None:
            lines.append(f"  watch it: tensorboard --logdir {trainer.logger.save_dir}")
        print("\n".join(lines), flush=True)
