"""Log image grids to TensorBoard from any LightningModule that exposes a ``log_images`` hook, and save the test
and predict grids as PNG files in the run directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid, save_image


def grid_from_columns(columns: dict[str, torch.Tensor], max_rows: int) -> torch.Tensor:
    """One row per sample, one column per entry of ``columns`` (each (B, 3, H, W) in [0, 1]).

    Returns:
        (3, H_grid, W_grid) float in [0, 1].
    """
    tiles = []
    rows = min(max_rows, min(v.shape[0] for v in columns.values()))
    for row in range(rows):
        for images in columns.values():
            tiles.append(images[row].detach().float().clamp(0, 1).cpu())
    return make_grid(torch.stack(tiles), nrow=len(columns), padding=2, pad_value=1.0)


class ImageGrid(Callback):
    """Calls ``pl_module.log_images(batch, outputs) -> {column name: (B, 3, H, W)}`` on the first
    ``num_batches`` validation/test/predict batches of each epoch (rank 0) and logs the grid to TensorBoard. In the
    stages of ``png_stages`` it also saves ``<stage>_grid_<batch>.png`` in the run directory (``trainer.log_dir``),
    with the column names in ``<stage>_grid_<batch>.txt``, so an evaluation's grid can be opened without TensorBoard.

    Args:
        num_batches: batches per epoch to draw.
        max_rows: samples per grid.
        png_stages: stages whose grids are also saved as PNG files (``val`` would write one per validation).
    """

    def __init__(self, num_batches: int = 1, max_rows: int = 8,
                 png_stages: Sequence[str] = ("test", "predict")) -> None:
        self.num_batches = num_batches
        self.max_rows = max_rows
        self.png_stages = tuple(png_stages)
        self._run_dir: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts from rank 0 under DDP: read it where every rank calls once, not in a rank-0
        # batch hook, where the other ranks would never join the broadcast.
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)

    def _log(self, trainer: Trainer, pl_module: LightningModule, stage: str, outputs: Any, batch: Any,
             batch_idx: int) -> None:
        if batch_idx >= self.num_batches or not trainer.is_global_zero or not hasattr(pl_module, "log_images"):
            return
        columns = pl_module.log_images(batch, outputs)
        if not columns:
            return
        grid = grid_from_columns(columns, self.max_rows)
        if stage in self.png_stages:
            run_dir = self._run_dir or Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            save_image(grid, run_dir / f"{stage}_grid_{batch_idx}.png")
            (run_dir / f"{stage}_grid_{batch_idx}.txt").write_text(" | ".join(columns) + "\n")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                tag = f"{stage}/grid_{batch_idx}: " + " | ".join(columns)
                logger.experiment.add_image(tag, grid, global_step=trainer.global_step)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):  # noqa: D102
        self._log(trainer, pl_module, "val", outputs, batch, batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):  # noqa: D102
        self._log(trainer, pl_module, "test", outputs, batch, batch_idx)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):  # noqa: D102
        self._log(trainer, pl_module, "predict", outputs, batch, batch_idx)
