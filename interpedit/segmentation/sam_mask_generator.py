"""Automatic mask generation with SAM on a grid of point prompts, as SAM's ``SamAutomaticMaskGenerator`` does.

For each image: encode it once; prompt the mask decoder with every point of a regular ``points_per_side`` grid
(in batches of ``points_per_batch``), asking for SAM's three masks per point; upsample the mask logits to the
*original* image size (the processor resized the longest side to the model's input size and padded); keep masks
whose predicted IoU and stability score pass their thresholds; remove duplicates with box NMS.

Differences from the original, on purpose:

* no crop layers (``crop_n_layers=0``, the original's default): every mask's ``crop_box`` is the whole image;
* ``min_mask_area`` drops small masks, where the original's ``min_mask_region_area`` instead removes small
  islands and holes with OpenCV and keeps the mask;
* empty masks are always dropped (they are no region, whatever their scores).

The model is transformers' ``SamModel`` with its ``SamProcessor``; nothing of SAM is re-implemented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torchvision.ops import batched_nms

from interpedit.data.regions import boxes_from_masks
from interpedit.masks.rle import coco_rle_to_mask, mask_to_coco_rle


@dataclass(frozen=True)
class GeneratedMask:
    """One mask SAM proposed for one grid point, stored as compressed COCO RLE to keep memory small.

    Attributes:
        rle: ``{"size": [H, W], "counts": str}`` at the original image size.
        area: number of pixels in the mask.
        bbox: ``[x, y, w, h]`` as pycocotools computes it (``w`` counts pixel columns).
        predicted_iou: SAM's own estimate of the mask's IoU.
        stability_score: IoU between the mask thresholded at ``mask_threshold +- stability_score_offset``.
        point_coords: ``(x, y)`` of the prompting point, in original image pixels.
        crop_box: ``[x, y, w, h]`` of the image crop the mask came from (the whole image here).
    """

    rle: dict[str, Any]
    area: int
    bbox: tuple[float, float, float, float]
    predicted_iou: float
    stability_score: float
    point_coords: tuple[float, float]
    crop_box: tuple[int, int, int, int]

    def to_mask(self) -> np.ndarray:
        """Decode to an (H, W) bool array."""
        return coco_rle_to_mask(self.rle)


def point_grid(points_per_side: int) -> torch.Tensor:
    """SAM's prompt grid: cell centres of an ``n x n`` grid over the unit square.

    Returns:
        (n * n, 2) float ``(x, y)`` in [0, 1], rows of constant y, x increasing.
    """
    offset = 1.0 / (2 * points_per_side)
    side = torch.linspace(offset, 1 - offset, points_per_side, dtype=torch.float64)
    ys, xs = torch.meshgrid(side, side, indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def stability_scores(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``mask_threshold + offset`` and ``mask_threshold - offset`` (SAM's score).

    The higher threshold's mask lies inside the lower one's, so the IoU is a ratio of pixel counts.

    Args:
        logits: (N, H, W) mask logits.

    Returns:
        (N,) float in [0, 1]; 0 where even the lower threshold leaves the mask empty.
    """
    intersections = (logits > mask_threshold + offset).flatten(1).sum(dim=1, dtype=torch.int64)
    unions = (logits > mask_threshold - offset).flatten(1).sum(dim=1, dtype=torch.int64)
    scores = intersections / unions.clamp_min(1)
    return torch.where(unions > 0, scores, torch.zeros_like(scores))


class SamAutomaticMaskGenerator:
    """Whole-image masks from a transformers ``SamModel`` prompted on a point grid.

    Args:
        model: a transformers ``SamModel`` (its device and dtype are used as they are).
        processor: the matching ``SamProcessor`` (resizes the longest side to the model's input size, pads).
        points_per_side: grid points along each side; ``points_per_side ** 2`` prompts per image.
        points_per_batch: prompts decoded together; memory grows with it times the image size.
        pred_iou_thresh: keep masks whose predicted IoU exceeds this (0 or less disables the filter).
        stability_score_thresh: keep masks whose stability score reaches this (0 or less disables the filter).
        stability_score_offset: logit offset used by the stability score.
        mask_threshold: logit above which a pixel belongs to the mask.
        box_nms_thresh: box IoU above which the lower-scoring of two masks is dropped as a duplicate.
        min_mask_area: drop masks with fewer pixels than this.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        *,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        min_mask_area: int = 0,
    ) -> None:
        if points_per_side < 1:
            raise ValueError(f"points_per_side must be at least 1, got {points_per_side}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be at least 1, got {points_per_batch}")
        if not 0.0 < box_nms_thresh <= 1.0:
            raise ValueError(f"box_nms_thresh must be in (0, 1], got {box_nms_thresh}")
        if stability_score_offset < 0:
            raise ValueError(f"stability_score_offset must be non-negative, got {stability_score_offset}")
        if min_mask_area < 0:
            raise ValueError(f"min_mask_area must be non-negative, got {min_mask_area}")
        model_size = model.config.vision_config.image_size
        pad_size = processor.image_processor.pad_size
        longest_edge = processor.image_processor.size["longest_edge"]
        if (pad_size["height"], pad_size["width"]) != (model_size, model_size) or longest_edge != model_size:
            raise ValueError(
                f"the SAM processor resizes to {longest_edge} and pads to {pad_size['height']}x{pad_size['width']} "
                f"but the model takes {model_size}x{model_size} images; load both from the same checkpoint"
            )
        self.model = model
        self.processor = processor
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.min_mask_area = min_mask_area

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def generate(self, image: Image.Image | torch.Tensor) -> list[GeneratedMask]:
        """Masks for one image (PIL image, or (3, H, W) uint8 tensor), best predicted IoU first."""
        return self.generate_batch([image])[0]

    @torch.no_grad()
    def generate_batch(self, images: Sequence[Image.Image | torch.Tensor]) -> list[list[GeneratedMask]]:
        """Masks for several images; the image encoder runs on them together, the prompts image by image.

        Args:
            images: PIL images (converted to RGB) or (3, H, W) uint8 tensors, any sizes.

        Returns:
            One list per image of ``GeneratedMask``, best predicted IoU first.
        """
        pil_images = [_as_rgb_pil(image, index) for index, image in enumerate(images)]
        if not pil_images:
            return []
        grid = point_grid(self.points_per_side)
        # Grid points in each image's own pixels; the processor maps them to the resized input, like the boxes.
        points = [(grid * torch.tensor(image.size, dtype=torch.float64)).tolist() for image in pil_images]
        inputs = self.processor(
            images=pil_images, input_points=[[[point] for point in image_points] for image_points in points],
            return_tensors="pt",
        )
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        embeddings = self.model.get_image_embeddings(pixel_values)
        results = []
        for index, image in enumerate(pil_images):
            results.append(
                self._masks_for_image(
                    embeddings[index : index + 1],
                    inputs["input_points"][index : index + 1],
                    points[index],
                    inputs["original_sizes"][index : index + 1],
                    inputs["reshaped_input_sizes"][index : index + 1],
                )
            )
        return results

    def _masks_for_image(
        self,
        embedding: torch.Tensor,
        input_points: torch.Tensor,
        original_points: list[list[float]],
        original_size: torch.Tensor,
        reshaped_size: torch.Tensor,
    ) -> list[GeneratedMask]:
        height, width = (int(v) for v in original_size[0])
        kept_rles: list[dict[str, Any]] = []
        kept_boxes, kept_ious, kept_stability, kept_points, kept_areas = [], [], [], [], []
        num_points = input_points.shape[1]
        for start in range(0, num_points, self.points_per_batch):
            end = min(start + self.points_per_batch, num_points)
            batch_points = input_points[:, start:end].to(self.device, self.dtype)  # (1, n, 1, 2)
            labels = torch.ones(batch_points.shape[:3], dtype=torch.long, device=self.device)
            outputs = self.model(
                image_embeddings=embedding, input_points=batch_points, input_labels=labels, multimask_output=True
            )
            # (n, 3, H, W) logits at the original size: undo the padding, then the longest-side resize.
            logits = self.processor.post_process_masks(
                outputs.pred_masks.float(), original_size, reshaped_size, binarize=False
            )[0].flatten(0, 1)
            ious = outputs.iou_scores[0].float().flatten()
            point_index = torch.arange(start, end).repeat_interleave(outputs.iou_scores.shape[-1])

            keep = torch.ones_like(ious, dtype=torch.bool)
            if self.pred_iou_thresh > 0.0:
                keep &= ious > self.pred_iou_thresh
            stability = stability_scores(logits, self.mask_threshold, self.stability_score_offset)
            if self.stability_score_thresh > 0.0:
                keep &= stability >= self.stability_score_thresh
            masks = logits[keep] > self.mask_threshold
            areas = masks.flatten(1).sum(dim=1)
            big_enough = areas >= max(1, self.min_mask_area)
            masks, areas = masks[big_enough], areas[big_enough]
            keep_index = keep.nonzero().squeeze(1)[big_enough]
            if not len(keep_index):
                continue
            kept_boxes.append(boxes_from_masks(masks).cpu())
            kept_ious.append(ious[keep_index].cpu())
            kept_stability.append(stability[keep_index].cpu())
            kept_points.append(point_index[keep_index.cpu()])
            kept_areas.append(areas.cpu())
            kept_rles.extend(mask_to_coco_rle(mask) for mask in masks.cpu().numpy())
        if not kept_rles:
            return []

        boxes, ious = torch.cat(kept_boxes), torch.cat(kept_ious)
        survivors = batched_nms(boxes, ious, torch.zeros_like(ious, dtype=torch.long), self.box_nms_thresh)
        stability, point_ids, areas = torch.cat(kept_stability), torch.cat(kept_points), torch.cat(kept_areas)
        masks = []
        for index in survivors.tolist():
            rle = kept_rles[index]
            x, y, w, h = (float(v) for v in coco_mask.toBbox({"size": rle["size"], "counts": rle["counts"].encode()}))
            point = original_points[int(point_ids[index])]
            masks.append(
                GeneratedMask(
                    rle=rle,
                    area=int(areas[index]),
                    bbox=(x, y, w, h),
                    predicted_iou=float(ious[index]),
                    stability_score=float(stability[index]),
                    point_coords=(float(point[0]), float(point[1])),
                    crop_box=(0, 0, width, height),
                )
            )
        return masks


def _as_rgb_pil(image: Image.Image | torch.Tensor, index: int) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3:
        return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    description = f"{tuple(image.shape)} {image.dtype}" if isinstance(image, torch.Tensor) else type(image).__name__
    raise TypeError(f"image {index}: expected a PIL image or a (3, H, W) uint8 tensor, got {description}")
