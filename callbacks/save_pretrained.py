"""Export the trained model in its library's own ``save_pretrained`` format at the end of fitting."""

from __future__ import annotations

import os

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


class SavePretrained(Callback):
    """Calls ``pl_module.model.save_pretrained`` into ``<log dir>/<dirname>`` when fitting ends (rank 0).

    The folder (``config.json`` + ``model.safetensors``) loads with ``from_pretrained`` in a notebook or
    in another method's config, without Lightning.

    Args:
        dirname: folder name inside the run's log directory.
        attribute: the LightningModule attribute that holds the model to export.
    """

    def __init__(self, dirname: str = "pretrained", attribute: str = "model") -> None:
        self.dirname = dirname
        self.attribute = attribute
        self.saved_to: str | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model = getattr(pl_module, self.attribute, None)
        if model is None or not hasattr(model, "save_pretrained"):
            raise AttributeError(
                f"SavePretrained: {type(pl_module).__name__}.{self.attribute} has no save_pretrained method"
            )
        target = os.path.join(trainer.log_dir or trainer.default_root_dir, self.dirname)
        if trainer.is_global_zero:
            model.save_pretrained(target)
            rank_zero_info(f"Exported {type(model).__name__} to {target}")
        self.saved_to = target
