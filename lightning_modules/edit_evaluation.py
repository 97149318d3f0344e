"""Runs an editing method over an edit benchmark; the metrics and the report are callbacks."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule

from interpedit.diffusion.unet_cost import count_unet_calls
from interpedit.editing import EditingMethod, EditOutput
from interpedit.metrics.edit_cost import per_image_cost


class EditEvaluationModule(LightningModule):
    """The evaluation system: ``test_step``/``predict_step`` apply ``method`` to a benchmark batch.

    Every call of the method is counted (``interpedit.diffusion.unet_cost``): the output gains ``cost``, a dict of
    (B,) per-image ``cost/unet_forwards``, ``cost/unet_backwards`` and ``cost/seconds``.

    The step returns the method's :class:`~interpedit.editing.EditOutput`; ``callbacks.edit_metrics.EditMetrics``
    measures it, ``callbacks.evaluation_report.EvaluationReport`` writes the tables and images, and
    ``callbacks.image_grid.ImageGrid`` logs grids through :meth:`log_images`.

    Args:
        method: the editing method (``class_path`` in the config), e.g. ``interpedit.editing.IdentityEdit``.
    """

    def __init__(self, method: EditingMethod) -> None:
        super().__init__()
        self.method = method

    @property
    def method_name(self) -> str:
        """The method's short name, as written in metrics.json and comparison tables."""
        return getattr(self.method, "name", type(self.method).__name__)

    def forward(self, batch: dict[str, Any]) -> EditOutput:
        with count_unet_calls(self.method) as cost:
            output = self.method(batch)
        edited = output["edited"]
        expected = batch["source_image"].shape
        if edited.shape != expected:
            raise ValueError(
                f"{self.method_name} returned edited images of shape {tuple(edited.shape)}; expected {tuple(expected)}"
            )
        output["cost"] = per_image_cost(cost, edited.shape[0])
        return output

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> EditOutput:
        return self(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> EditOutput:
        return self(batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> EditOutput:
        return self(batch)

    def log_images(self, batch: dict[str, Any], output: EditOutput) -> dict[str, torch.Tensor]:
        """Columns of the image grid: source | edited | reconstruction (autoencoders) | masks | target (when known). Each (B, 3, H, W) in [0, 1]."""
        columns = {"source": batch["source_image"], "edited": output["edited"]}
        if "reconstruction" in output:
            columns["reconstruction"] = output["reconstruction"]
        if bool(batch["has_mask"].any()):
            columns["edit mask"] = batch["edit_mask"][:, None].float().expand(-1, 3, -1, -1)
        if "edit_region" in output:
            columns["method region"] = output["edit_region"][:, None].float().expand(-1, 3, -1, -1)
        if bool(batch["has_target"].any()):
            columns["target"] = batch["target_image"]
        return columns
