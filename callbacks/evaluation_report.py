"""Write an edit evaluation's outputs into its run directory: tables, edited images, TensorBoard text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image

from callbacks.edit_metrics import EditMetrics
from interpedit.evaluation import write_report


def save_png(path: Path, image) -> None:
    """Save a (3, H, W) float image in [0, 1] as PNG, atomically."""
    pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(pixels).save(temporary)
    os.replace(temporary, path)


class EvaluationReport(Callback):
    """At the end of ``trainer.test``: ``per_image.csv``, ``metrics.json``, ``metrics.md`` (rank 0) and, from
    every rank, ``images/<image_id>.png`` for each edited image, all in the run directory (``trainer.log_dir``).

    Needs an :class:`~callbacks.edit_metrics.EditMetrics` callback in the same trainer.

    Args:
        save_images: write the edited images.
    """

    def __init__(self, save_images: bool = True) -> None:
        self.save_images = save_images
        self.summary: dict[str, Any] | None = None
        self._run_dir: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts from rank 0 under DDP, so it is read here, where every rank calls it once,
        # and not per batch, where ranks with fewer batches would leave the others waiting for ever.
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)

    def run_dir(self, trainer: Trainer) -> Path:
        """The run directory, as resolved at setup."""
        if self._run_dir is None:
            raise RuntimeError("EvaluationReport.run_dir is known only after setup")
        return self._run_dir

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):  # noqa: D102
        if self.save_images and isinstance(outputs, dict) and "edited" in outputs:
            for image_id, image in zip(batch["image_id"], outputs["edited"]):
                save_png(self.run_dir(trainer) / "images" / f"{image_id}.png", image)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = next((c for c in trainer.callbacks if isinstance(c, EditMetrics)), None)
        if metrics is None:
            raise RuntimeError("EvaluationReport needs an EditMetrics callback in the trainer")
        if not trainer.is_global_zero or metrics.results is None:
            return
        overall, rows = metrics.results["test"]
        config_file = self.run_dir(trainer) / "config.yaml"
        config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
        method = getattr(pl_module, "method_name", type(pl_module).__name__)
        self.summary = write_report(self.run_dir(trainer), method, rows, overall, config)
        table = (self.run_dir(trainer) / "metrics.md").read_text()
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("test/metrics", table, global_step=trainer.global_step)
        print(f"{method}: {len(rows)} images; wrote per_image.csv, metrics.json, metrics.md"
              f"{' and images/' if self.save_images else ''} to {self.run_dir(trainer)}\n{table}", flush=True)
