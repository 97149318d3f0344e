"""Measure edits with the editing metrics, in validation (training runs) and in test (eval.py)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from torchmetrics import Metric

from interpedit.clip import ShapesCLIP, is_shapes_clip_folder
from interpedit.metrics import (
    COUNT_SUFFIX,
    BackgroundPreservation,
    CLIPSimilarity,
    EditCost,
    GroundTruthMetrics,
    ReconstructionQuality,
    StructureDistance,
)
from interpedit.user_errors import OptionError

# ShapesCLIP feeds its ViT images mapped from [0, 1] to [-1, 1]; structure distance must normalise the same way.
SHAPES_CLIP_MEAN = (0.5, 0.5, 0.5)
SHAPES_CLIP_STD = (0.5, 0.5, 0.5)


def _select(value: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` of a batch entry: tensors, lists, or dicts of them."""
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, dict):
        return {k: _select(v, index) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [value[i] for i in index.tolist()]
    return value


def structure_metric(backbone: str, pie_bench_compat: bool) -> StructureDistance:
    """Structure distance on a timm ViT by name/path, or on the vision tower of a saved ShapesCLIP."""
    if is_shapes_clip_folder(backbone):
        vit = ShapesCLIP.load(backbone).vision_model.eval().requires_grad_(False)
        return StructureDistance(vit, mean=SHAPES_CLIP_MEAN, std=SHAPES_CLIP_STD)
    return StructureDistance(backbone, pie_bench_compat=pie_bench_compat)


class EditMetrics(Callback):
    """Runs the editing metrics on the edits a LightningModule returns from ``validation_step``/``test_step``.

    The step must return an ``EditOutput`` dict (``edited``, optional ``edit_region`` and ``reconstruction``) for an
    edit-benchmark batch (``datamodules.edit_benchmark``). Per stage and epoch it logs ``<stage>/<group>/<metric>``
    (synced over DDP ranks by torchmetrics; the arithmetic stays float32 under bf16-mixed) and keeps
    ``results[stage] = (overall, rows)``: the means, with None for metrics that could not be computed, and one row of
    per-image values per image gathered from every rank, for ``EvaluationReport``.

    Background metrics are measured where the benchmark has an edit mask; ground-truth metrics where it has a
    true target (shapes benchmarks); reconstruction metrics (``reconstruction/psnr|ssim``) on the batches whose
    output has a ``reconstruction``, and left out of the results when none had one.

    Args:
        structure_backbone: timm ViT name, hub id or folder for structure distance (PIE-Bench: ``dino_vitb8``), or a
            saved ShapesCLIP folder (its vision tower); None turns structure distance off.
        clip_model: CLIP hub id or folder (PIE-Bench: ``openai/clip-vit-large-patch14``), or a saved ShapesCLIP
            folder; None turns the CLIP metrics off.
        lpips: measure LPIPS (reported as unavailable when its backbone weights are not on this machine).
        pie_bench_compat: PIE-Bench's published formulas instead of the clean definitions (see the README).
        ground_truth: measure against true targets where the benchmark has them.
        stages: which loops to measure: ``validation`` and/or ``test``.
    """

    def __init__(
        self,
        structure_backbone: str | None = "dino_vitb8",
        clip_model: str | None = "openai/clip-vit-large-patch14",
        lpips: bool = True,
        pie_bench_compat: bool = False,
        ground_truth: bool = True,
        stages: Sequence[str] = ("validation", "test"),
    ) -> None:
        unknown = set(stages) - {"validation", "test"}
        if unknown:
            raise OptionError(f"EditMetrics.stages: unknown {sorted(unknown)}; use validation and/or test")
        self.structure_backbone = structure_backbone
        self.clip_model = clip_model
        self.lpips = lpips
        self.pie_bench_compat = pie_bench_compat
        self.ground_truth = ground_truth
        self.stages = tuple(stages)
        self.groups: dict[str, Metric] = {}
        self.rows: list[dict[str, Any]] = []
        self.results: dict[str, tuple[dict[str, float | None], list[dict[str, Any]]]] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.groups:
            return
        if self.structure_backbone is not None:
            self.groups["structure"] = structure_metric(self.structure_backbone, self.pie_bench_compat)
        self.groups["background"] = BackgroundPreservation(pie_bench_compat=self.pie_bench_compat, lpips=self.lpips)
        if self.clip_model is not None:
            self.groups["clip"] = CLIPSimilarity(self.clip_model, pie_bench_compat=self.pie_bench_compat)
        if self.ground_truth:
            self.groups["gt"] = GroundTruthMetrics()
        self.groups["reconstruction"] = ReconstructionQuality()
        self.groups["cost"] = EditCost()
        for metric in self.groups.values():
            metric.to(pl_module.device)

    # ------------------------------------------------------------------ per batch
    def _measure(self, batch: dict[str, Any], output: dict[str, torch.Tensor]) -> None:
        edited, source = output["edited"], batch["source_image"]
        size = edited.shape[0]
        values: dict[str, torch.Tensor] = {}

        def collect(metric: Metric, index: torch.Tensor) -> None:
            for name, per_image in metric.per_image.items():
                column = values.setdefault(name, torch.full((size,), math.nan))
                column[index.cpu()] = per_image.detach().float().cpu()

        everything = torch.arange(size, device=edited.device)
        if "structure" in self.groups:
            self.groups["structure"].update(source, edited)
            collect(self.groups["structure"], everything)
        masked = batch["has_mask"].nonzero().flatten()
        if masked.numel():
            self.groups["background"].update(source[masked], edited[masked], batch["edit_mask"][masked])
            collect(self.groups["background"], masked)
        if "clip" in self.groups:
            for index, mask in ((masked, batch["edit_mask"]), ((~batch["has_mask"]).nonzero().flatten(), None)):
                if index.numel():
                    self.groups["clip"].update(
                        edited[index], _select(batch["target_prompt"], index),
                        mask=None if mask is None else mask[index],
                        source=source[index], source_prompts=_select(batch["source_prompt"], index),
                    )
                    collect(self.groups["clip"], index)
        with_target = batch["has_target"].nonzero().flatten()
        if "gt" in self.groups and with_target.numel():
            region = output.get("edit_region")
            self.groups["gt"].update(
                edited[with_target], batch["target_image"][with_target], batch["edit_mask"][with_target],
                edit_region=None if region is None else region[with_target],
                requested_colour=batch["requested_colour"][with_target],
                requested_shape=batch["requested_shape"][with_target],
                target_object_mask=batch["target_object_mask"][with_target],
                target_scene=_select(batch["target_scene"], with_target),
                target_object_index=batch["target_object_index"][with_target],
                supersample=batch["supersample"][with_target],
                target_labels=batch["target_labels"][with_target] if "target_labels" in batch else None,
            )
            collect(self.groups["gt"], with_target)
        reconstruction = output.get("reconstruction")
        if reconstruction is not None and "reconstruction" in self.groups:
            self.groups["reconstruction"].update(reconstruction, source)
            collect(self.groups["reconstruction"], everything)
        if "cost" in output and "cost" in self.groups:
            self.groups["cost"].update(output["cost"])
            collect(self.groups["cost"], everything)
        for i in range(size):
            row = {"image_id": batch["image_id"][i], "edit_type_id": batch["edit_type_id"][i],
                   "edit_type": batch["edit_type"][i]}
            row.update({name: float(column[i]) for name, column in values.items()})
            self.rows.append(row)

    @staticmethod
    def _edit_output(pl_module: LightningModule, outputs: Any) -> dict[str, torch.Tensor]:
        if not (isinstance(outputs, dict) and "edited" in outputs):
            raise TypeError(
                f"EditMetrics: {type(pl_module).__name__}'s step returned {type(outputs).__name__}; it must return an "
                "EditOutput dict with 'edited' (B, 3, H, W) for the metrics to measure"
            )
        return outputs

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):  # noqa: D102
        if "validation" in self.stages and not trainer.sanity_checking:
            self._measure(batch, self._edit_output(pl_module, outputs))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):  # noqa: D102
        if "test" in self.stages:
            self._measure(batch, self._edit_output(pl_module, outputs))

    # ------------------------------------------------------------------ per epoch
    def _finish(self, pl_module: LightningModule, stage: str, prefix: str) -> None:
        overall: dict[str, float | None] = {}
        for metric in self.groups.values():
            with warnings.catch_warnings():
                # A group no batch updated (no masks, no targets, no reconstructions) is expected: its metrics are
                # left out below, so torchmetrics' "compute before update" warning is noise.
                warnings.filterwarnings("ignore", message=r"The ``compute`` method of metric .* was called before")
                computed = metric.compute()  # collective under DDP: every rank calls it
            for name, value in computed.items():
                # A metric defined for no image (no masks, no targets, no reconstructions) is left out.
                if not name.endswith(COUNT_SUFFIX) and int(computed[name + COUNT_SUFFIX]) > 0:
                    overall[name] = float(value)
            for name in getattr(metric, "unavailable", {}):
                overall[name] = None
            metric.reset()
        for name, value in overall.items():
            if value is not None and math.isfinite(value):
                pl_module.log(f"{prefix}/{name}", value, sync_dist=False)  # already synced by torchmetrics
        rows = self.rows
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[list[dict[str, Any]]] = [[] for _ in range(dist.get_world_size())]
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        self.results[stage] = (overall, rows)
        self.rows = []

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "validation" in self.stages and not trainer.sanity_checking:
            self._finish(pl_module, "validation", "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "test" in self.stages:
            self._finish(pl_module, "test", "test")
