"""Editing metrics as torchmetrics ``Metric``s: structure, background preservation, CLIP, ground truth.

Each group's ``update`` computes per-image values through a public functional core, keeps them in
``metric.per_image`` (``{key: (B,)}``, NaN where undefined) for per-image CSV rows, and accumulates NaN-aware sums
and counts that synchronise under DDP. ``compute()`` returns ``{"<group>/<metric>": mean over the images where it
is defined, "<group>/<metric>_count": how many}``. All arithmetic runs in float32, also under bf16 autocast.
Images are (B, 3, H, W) floats in [0, 1]; masks (B, H, W) bool with True = edit region.

Three lines from a notebook::

    from interpedit.metrics import BackgroundPreservation
    metric = BackgroundPreservation(lpips=False)
    metric.update(source, edited, mask); metric.compute()  # {"background/psnr": ..., "background/ssim": ...}

Groups, keys and definitions (each module's docstring has the details, both the clean definitions and
``pie_bench_compat=True``, which reproduces PIE-Bench's published formulas and quirks):

- ``StructureDistance``: ``structure/distance`` (``structure_distance``).
- ``BackgroundPreservation``: ``background/psnr|ssim|mse|lpips`` (``background_preservation``).
- ``CLIPSimilarity``: ``clip/whole|edited|directional`` (``clip_similarity``).
- ``GroundTruthMetrics``: ``gt/psnr_edited|psnr_unedited|ssim_edited|ssim_unedited|region_iou|colour_accuracy|
  shape_accuracy|object_iou|object_found|centroid_error`` (``ground_truth``, ``attribute_accuracy``,
  ``object_placement``).
- ``ReconstructionQuality``: ``reconstruction/psnr|ssim``, a method's unedited re-encoding vs the source
  (``reconstruction``).
- ``EditCost``: ``cost/unet_forwards|unet_backwards|seconds`` per image, counted by ``eval.py`` (``edit_cost``).

Values are raw. PIE-Bench's tables print StructDist x10^3, LPIPS x10^3, MSE x10^4 and SSIM x10^2.
"""

from interpedit.metrics.attribute_accuracy import (
    MAX_PALETTE_DISTANCE,
    SHAPE_TIE_TOLERANCE,
    colour_accuracy,
    palette_labels,
    shape_accuracy,
    shape_render_errors,
)
from interpedit.metrics.edit_cost import EditCost, per_image_cost
from interpedit.metrics.background_preservation import (
    BackgroundPreservation,
    background_lpips,
    background_mse,
    background_psnr,
    background_ssim,
)
from interpedit.metrics.clip_similarity import (
    CLIPSimilarity,
    clip_image_embeddings,
    clip_score,
    clip_text_embeddings,
    directional_similarity,
)
from interpedit.metrics.ground_truth import GROUND_TRUTH_KEYS, GroundTruthMetrics, region_iou
from interpedit.metrics.lpips_distance import TorchmetricsLPIPS, build_lpips
from interpedit.metrics.masked_image_quality import (
    PSNR_CAP_DB,
    force_mask_border,
    masked_mse,
    masked_psnr,
    masked_ssim,
    ssim_map,
)
from interpedit.metrics.object_placement import (
    PLACEMENT_KEYS,
    ambiguous_truth_mask,
    mask_centroids,
    object_placement,
    placement_metrics,
    predicted_object_mask,
    render_backgrounds,
)
from interpedit.metrics.per_image_average import COUNT_SUFFIX, PerImageAverage
from interpedit.metrics.reconstruction import (
    RECONSTRUCTION_KEYS,
    ReconstructionQuality,
    reconstruction_psnr,
    reconstruction_ssim,
)
from interpedit.metrics.structure_distance import StructureDistance, self_similarity_distance
from interpedit.metrics.vit_keys import capture_keys, key_self_similarity, vit_keys

__all__ = [
    "COUNT_SUFFIX",
    "GROUND_TRUTH_KEYS",
    "MAX_PALETTE_DISTANCE",
    "PLACEMENT_KEYS",
    "PSNR_CAP_DB",
    "RECONSTRUCTION_KEYS",
    "SHAPE_TIE_TOLERANCE",
    "BackgroundPreservation",
    "CLIPSimilarity",
    "GroundTruthMetrics",
    "PerImageAverage",
    "EditCost",
    "per_image_cost",
    "ReconstructionQuality",
    "StructureDistance",
    "TorchmetricsLPIPS",
    "ambiguous_truth_mask",
    "background_lpips",
    "background_mse",
    "background_psnr",
    "background_ssim",
    "build_lpips",
    "capture_keys",
    "clip_image_embeddings",
    "clip_score",
    "clip_text_embeddings",
    "colour_accuracy",
    "directional_similarity",
    "force_mask_border",
    "key_self_similarity",
    "mask_centroids",
    "masked_mse",
    "masked_psnr",
    "masked_ssim",
    "object_placement",
    "palette_labels",
    "placement_metrics",
    "predicted_object_mask",
    "reconstruction_psnr",
    "reconstruction_ssim",
    "region_iou",
    "render_backgrounds",
    "self_similarity_distance",
    "shape_accuracy",
    "shape_render_errors",
    "ssim_map",
    "vit_keys",
]
