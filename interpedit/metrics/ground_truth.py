"""Ground-truth metrics for edits with a known exact result (the shapes world).

Keys (each with a ``_count``):

- ``gt/psnr_edited``, ``gt/ssim_edited``: edited vs the true target inside the true changed region;
  ``gt/psnr_unedited``, ``gt/ssim_unedited``: outside it. True masked means (``masked_image_quality``): PSNR
  capped at 100 dB (the true target itself scores exactly 100), SSIM map averaged over the region's pixels.
  NaN where the region is empty.
- ``gt/region_iou``: IoU of the method's own edit region with the true changed region; NaN for a batch where the
  method gives none, and where both are empty.
- ``gt/colour_accuracy``, ``gt/shape_accuracy``: 1 or 0 per image, whether the edited object has the requested
  colour and shape, judged from the edited pixels (``attribute_accuracy``: the colour by majority palette label,
  the shape by re-rendering the true target scene with each candidate shape); NaN where not requested (-1).
- ``gt/object_iou``, ``gt/object_found``, ``gt/centroid_error``: where the edited object ended up
  (``object_placement``): its pixels in the edited image are those whose nearest colour, among the palette and the
  true background's colour at that pixel, is the object's colour (less the pixels the true target label map gives
  to other objects of that colour); against the object's true label mask, both masks less the true target's
  anti-aliased (ambiguous) pixels: their IoU, 1 if any pixel was found, and the distance in pixels between their
  centroids (NaN when none was found). The true target scores 1, 1 and 0. NaN where the edited object is not in
  the target (``target_object_index`` -1, e.g. remove) and everywhere when ``target_object_index`` is not given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from interpedit.metrics.attribute_accuracy import (
    MAX_PALETTE_DISTANCE,
    SHAPE_TIE_TOLERANCE,
    colour_accuracy,
    shape_accuracy,
)
from interpedit.metrics.masked_image_quality import PSNR_CAP_DB, masked_psnr, masked_ssim
from interpedit.metrics.metric_inputs import check_images, check_mask, check_same_shape, float32_arithmetic
from interpedit.metrics.object_placement import PLACEMENT_KEYS, placement_metrics
from interpedit.metrics.per_image_average import PerImageAverage
from interpedit.shapes import COLOURS, SHAPES

GROUND_TRUTH_KEYS = (
    "gt/psnr_edited",
    "gt/psnr_unedited",
    "gt/ssim_edited",
    "gt/ssim_unedited",
    "gt/region_iou",
    "gt/colour_accuracy",
    "gt/shape_accuracy",
    *PLACEMENT_KEYS,
)


def region_iou(edit_region: Tensor, changed_mask: Tensor) -> Tensor:
    """Intersection over union of two (B, H, W) bool masks -> (B,); NaN where both are empty."""
    intersection = (edit_region & changed_mask).flatten(1).sum(dim=1).float()
    union = (edit_region | changed_mask).flatten(1).sum(dim=1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))


def _check_ids(where: str, name: str, ids: Tensor, batch: int, classes: tuple[str, ...]) -> Tensor:
    if not isinstance(ids, Tensor) or ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8):
        raise TypeError(f"{where}: {name} must be an integer tensor of class ids (-1 = not applicable)")
    if tuple(ids.shape) != (batch,):
        raise ValueError(f"{where}: {name} is {tuple(ids.shape)}, expected ({batch},)")
    if bool(((ids < -1) | (ids >= len(classes))).any()):
        raise ValueError(f"{where}: {name} has ids outside -1..{len(classes) - 1} ({', '.join(classes)})")
    return ids.long()


class GroundTruthMetrics(PerImageAverage):
    """Edited images against their exact targets (definitions in the module docstring).

    Args:
        max_psnr: PSNR cap in dB.
        max_palette_distance: RGB distance (0-255) within which a pixel counts as a palette colour.
        shape_tie_tolerance: mean squared errors this close to the nearest candidate render count as a tie.
        **kwargs: ``torchmetrics.Metric`` options.
    """

    def __init__(
        self,
        *,
        max_psnr: float = PSNR_CAP_DB,
        max_palette_distance: float = MAX_PALETTE_DISTANCE,
        shape_tie_tolerance: float = SHAPE_TIE_TOLERANCE,
        **kwargs: Any,
    ) -> None:
        super().__init__(GROUND_TRUTH_KEYS, **kwargs)
        self.max_psnr = max_psnr
        self.max_palette_distance = max_palette_distance
        self.shape_tie_tolerance = shape_tie_tolerance

    @torch.no_grad()
    def update(
        self,
        edited: Tensor,
        target: Tensor,
        changed_mask: Tensor,
        *,
        edit_region: Tensor | None = None,
        requested_colour: Tensor | None = None,
        requested_shape: Tensor | None = None,
        target_object_mask: Tensor | None = None,
        target_scene: Sequence[str] | None = None,
        target_object_index: Tensor | None = None,
        supersample: Tensor | int | None = None,
        target_labels: Tensor | None = None,
    ) -> None:
        """Add a batch (names as in the edit-benchmark batch).

        Args:
            edited: (B, 3, H, W) in [0, 1], the method's results.
            target: (B, 3, H, W) in [0, 1], the true targets.
            changed_mask: (B, H, W) bool, the pixels the true edit changes.
            edit_region: (B, H, W) bool, the region the method chose to edit; None if it gives none.
            requested_colour: (B,) long ``COLOURS`` ids of the edited object after the edit, -1 = not applicable.
            requested_shape: (B,) long ``SHAPES`` ids, -1 = not applicable.
            target_object_mask: (B, H, W) bool, the edited object's label mask in the true target render; needed
                when any colour or shape is requested.
            target_scene: B true target scenes as JSON (``Scene.to_dict``), ``""`` where there is none; needed,
                like the next two, when any shape is requested (the shape candidates are re-renders of it).
            target_object_index: (B,) long, the edited object's index in its target scene, -1 where there is none.
            supersample: (B,) long or one int, the renderer's samples per pixel side the benchmark was rendered
                with.
            target_labels: (B, H, W) integer true target label maps (0 = background, ``i + 1`` = object ``i``);
                object placement leaves out the pixels of other objects of the edited object's colour. Without it
                nothing is left out.

        Object placement is measured where ``target_object_index`` is given and >= 0 (with ``requested_colour``,
        ``target_object_mask`` and ``target_scene``, whose background it renders); NaN elsewhere.
        """
        where = f"{type(self).__name__}.update"
        edited = check_images(where, "edited", edited)
        target = check_images(where, "target", target).to(edited.device)
        check_same_shape(where, ("edited", "target"), edited, target)
        changed_mask = check_mask(where, "changed_mask", changed_mask, edited)
        batch = edited.shape[0]
        undefined = torch.full((batch,), float("nan"), device=edited.device)
        with float32_arithmetic(edited.device):
            values = {
                "gt/psnr_edited": masked_psnr(edited, target, changed_mask, self.max_psnr),
                "gt/psnr_unedited": masked_psnr(edited, target, ~changed_mask, self.max_psnr),
                "gt/ssim_edited": masked_ssim(edited, target, changed_mask),
                "gt/ssim_unedited": masked_ssim(edited, target, ~changed_mask),
                "gt/region_iou": undefined,
                "gt/colour_accuracy": undefined,
                "gt/shape_accuracy": undefined,
                **{key: undefined for key in PLACEMENT_KEYS},
            }
            if edit_region is not None:
                edit_region = check_mask(where, "edit_region", edit_region, edited)
                values["gt/region_iou"] = region_iou(edit_region, changed_mask)
            colours = None if requested_colour is None else _check_ids(
                where, "requested_colour", requested_colour, batch, COLOURS
            )
            shapes = None if requested_shape is None else _check_ids(
                where, "requested_shape", requested_shape, batch, SHAPES
            )
            wants_colour = colours is not None and bool((colours >= 0).any())
            wants_shape = shapes is not None and bool((shapes >= 0).any())
            if (wants_colour or wants_shape) and target_object_mask is None:
                raise ValueError(f"{where}: attribute accuracy needs target_object_mask (the edited object's mask)")
            if wants_shape:
                missing = [
                    name
                    for name, value in (
                        ("target_scene", target_scene),
                        ("target_object_index", target_object_index),
                        ("supersample", supersample),
                    )
                    if value is None
                ]
                if missing:
                    raise ValueError(
                        f"{where}: shape accuracy needs {', '.join(missing)} (the true target scene it re-renders)"
                    )
            if wants_colour:
                object_mask = check_mask(where, "target_object_mask", target_object_mask, edited)
                values["gt/colour_accuracy"] = colour_accuracy(edited, object_mask, colours, self.max_palette_distance)
            if wants_shape:
                object_mask = check_mask(where, "target_object_mask", target_object_mask, edited)
                if isinstance(target_scene, str) or len(target_scene) != batch:
                    raise ValueError(f"{where}: target_scene must be a list of {batch} JSON strings, one per image")
                if not isinstance(target_object_index, Tensor) or target_object_index.is_floating_point():
                    raise TypeError(f"{where}: target_object_index must be a (B,) integer tensor (-1 = none)")
                # shape_accuracy checks the remaining scene data per image and names the image.
                values["gt/shape_accuracy"] = shape_accuracy(
                    edited, object_mask, shapes, target_scene, target_object_index, supersample,
                    self.max_palette_distance, self.shape_tie_tolerance,
                )
            if target_object_index is not None:
                values.update(self._placement(where, edited, target, colours, target_object_mask, target_scene,
                                              target_object_index, target_labels))
        self._accumulate(values)

    @staticmethod
    def _placement(
        where: str,
        edited: Tensor,
        target: Tensor,
        colours: Tensor | None,
        target_object_mask: Tensor | None,
        target_scene: Sequence[str] | None,
        target_object_index: Tensor,
        target_labels: Tensor | None,
    ) -> dict[str, Tensor]:
        batch = edited.shape[0]
        if not isinstance(target_object_index, Tensor) or target_object_index.is_floating_point():
            raise TypeError(f"{where}: target_object_index must be a (B,) integer tensor (-1 = none)")
        if tuple(target_object_index.shape) != (batch,):
            raise ValueError(f"{where}: target_object_index is {tuple(target_object_index.shape)}, expected ({batch},)")
        if not bool((target_object_index >= 0).any()):
            return {}
        missing = [
            name
            for name, value in (
                ("requested_colour", colours),
                ("target_object_mask", target_object_mask),
                ("target_scene", target_scene),
            )
            if value is None
        ]
        if missing:
            raise ValueError(f"{where}: object placement (target_object_index given) needs {', '.join(missing)}")
        object_mask = check_mask(where, "target_object_mask", target_object_mask, edited)
        return placement_metrics(
            edited, target, colours, object_mask, target_scene, target_object_index, target_labels, where=where
        )
