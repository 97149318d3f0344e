"""Structure distance: how much an edit changed the image's layout, seen through a ViT's self-similarity of keys.

Key ``structure/distance`` (lower better, 0 for identical images), with ``structure/distance_count``. The value
is raw: PIE-Bench's tables print it x10^3.

Definition (both modes): run the source and the edited image through a timm ViT, take the keys of one block
(default the last) for all tokens with heads concatenated (``vit_keys``), form each image's cosine
self-similarity matrix of keys (T x T), and take the mean squared difference between the two matrices.

Preprocessing (``pie_bench_compat``):

Clean (default): images in [0, 1] are resized to the ViT's input size and normalised with its mean/std (from
``vit.pretrained_cfg``, else ImageNet's; pass them for models trained otherwise, e.g. the shapes CLIP's tower
wants mean = std = 0.5). A ViT built with ``dynamic_img_size=True`` gets the shorter side resized to
``image_size`` with the aspect ratio kept; any other ViT gets exactly its ``img_size`` (non-square inputs are
stretched). Images already at that size are not resampled. Bilinear resizing with antialiasing.

PIE-Bench (``pie_bench_compat=True``), as its ``LossG``/``VitExtractor``: pixel values in 0-255 (not divided
by 255: a quirk of its code, reproduced), resized with torchvision ``Resize(224, max_size=480)`` semantics
(shorter side 224, bilinear), then ImageNet mean/std normalisation of those 0-255 values, and DINO ViT-B/8's last
block (``"dino_vitb8"``, timm's ``vit_base_patch8_224.dino``). PIE-Bench resized tensors with torchvision before
0.17, which did not antialias tensor resizes, so compat mode does not antialias by default (``antialias``
overrides either default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interpedit.metrics.metric_inputs import check_images, check_same_shape, evaluation_mode, float32_arithmetic
from interpedit.metrics.per_image_average import PerImageAverage
from interpedit.metrics.vit_keys import key_self_similarity, vit_keys

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
PIE_BENCH_VIT = "dino_vitb8"
"""PIE-Bench's structure network (torch.hub ``facebookresearch/dino``); timm's ``vit_base_patch8_224.dino``."""
PIE_BENCH_SHORT_SIDE = 224
PIE_BENCH_MAX_SIZE = 480


def resized_size(height: int, width: int, short_side: int, max_size: int | None = None) -> tuple[int, int]:
    """Output size of torchvision's ``Resize(short_side, max_size=max_size)``: shorter side to ``short_side``,
    longer side scaled (truncated) and, if that exceeds ``max_size``, both scaled down to fit."""
    short, long = min(height, width), max(height, width)
    new_short, new_long = short_side, int(short_side * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if height <= width else (new_long, new_short)


def self_similarity_distance(source_keys: Tensor, edited_keys: Tensor) -> Tensor:
    """Mean squared difference of the two key self-similarity matrices: (B, T, D) x 2 -> (B,)."""
    difference = key_self_similarity(source_keys) - key_self_similarity(edited_keys)
    return difference.pow(2).mean(dim=(1, 2))


def _model_input_size(vit: nn.Module) -> tuple[int, int]:
    size = getattr(getattr(vit, "patch_embed", None), "img_size", None)
    if size is None:
        raise TypeError(f"{type(vit).__name__} has no patch_embed.img_size: expected a timm VisionTransformer")
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


class StructureDistance(PerImageAverage):
    """Per-image structure distance between source and edited images (definitions in the module docstring).

    Args:
        vit: a timm ``VisionTransformer`` (e.g. ``ShapesCLIP.vision_model``), or a name/path for
            ``interpedit.backbones.load_timm_vit`` (DINO short names such as ``"dino_vitb8"`` work); a ViT loaded
            here gets ``dynamic_img_size=True``.
        image_size: input side for a dynamic-size ViT (the shorter side is resized to it); default and, for a
            fixed-size ViT, required value: the model's ``img_size``. Not allowed with ``pie_bench_compat``.
        mean: per-channel normalisation mean for [0, 1] inputs; default from ``vit.pretrained_cfg``, else
            ImageNet's. Not allowed with ``pie_bench_compat``.
        std: per-channel normalisation std, same rules as ``mean``.
        block_index: the block whose keys are compared; -1 = last.
        antialias: antialias the resize; default True, False with ``pie_bench_compat``.
        pie_bench_compat: PIE-Bench's preprocessing (0-255 values, shorter side 224, ImageNet normalisation).
        **kwargs: ``torchmetrics.Metric`` options.
    """

    def __init__(
        self,
        vit: nn.Module | str = PIE_BENCH_VIT,
        *,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        block_index: int = -1,
        antialias: bool | None = None,
        pie_bench_compat: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(["structure/distance"], **kwargs)
        if pie_bench_compat and (image_size is not None or mean is not None or std is not None):
            raise ValueError(
                "StructureDistance: pie_bench_compat fixes the input size (shorter side 224) and the ImageNet "
                "normalisation; leave image_size, mean and std unset"
            )
        if isinstance(vit, (str, bytes)) or hasattr(vit, "__fspath__"):
            from interpedit.backbones import load_timm_vit

            vit = load_timm_vit(vit, dynamic_img_size=True).eval().requires_grad_(False)
        if not isinstance(vit, nn.Module):
            raise TypeError(f"StructureDistance: vit must be an nn.Module or a name/path, got {type(vit).__name__}")
        # A ViT passed in may be trained elsewhere: its mode and requires_grad are left alone (see keys).
        self.vit = vit
        self.model_input_size = _model_input_size(vit)
        self.dynamic_img_size = bool(getattr(vit, "dynamic_img_size", False))
        if image_size is not None and not self.dynamic_img_size and (image_size, image_size) != self.model_input_size:
            raise ValueError(
                f"StructureDistance: image_size={image_size}, but the ViT takes exactly {self.model_input_size} "
                "inputs; build it with dynamic_img_size=True to use other sizes"
            )
        self.image_size = image_size if image_size is not None else min(self.model_input_size)
        cfg = getattr(vit, "pretrained_cfg", None) or {}
        mean = IMAGENET_MEAN if pie_bench_compat else (mean if mean is not None else cfg.get("mean", IMAGENET_MEAN))
        std = IMAGENET_STD if pie_bench_compat else (std if std is not None else cfg.get("std", IMAGENET_STD))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"StructureDistance: mean and std need 3 values, got {tuple(mean)} and {tuple(std)}")
        self.mean: tuple[float, ...] = tuple(float(v) for v in mean)
        self.std: tuple[float, ...] = tuple(float(v) for v in std)
        self.block_index = block_index
        self.antialias = (not pie_bench_compat) if antialias is None else antialias
        self.pie_bench_compat = pie_bench_compat

    def _input_size(self, height: int, width: int) -> tuple[int, int]:
        if self.pie_bench_compat:
            size = resized_size(height, width, PIE_BENCH_SHORT_SIDE, PIE_BENCH_MAX_SIZE)
            if not self.dynamic_img_size and size != self.model_input_size:
                raise ValueError(
                    f"StructureDistance: PIE-Bench resizes {height}x{width} images to {size[0]}x{size[1]}, but the "
                    f"ViT takes exactly {self.model_input_size}; build it with dynamic_img_size=True"
                )
            return size
        if self.dynamic_img_size:
            return resized_size(height, width, self.image_size)
        return self.model_input_size

    def preprocess(self, images: Tensor) -> Tensor:
        """The ViT's input for (B, 3, H, W) images in [0, 1] (float32 (B, 3, H', W'))."""
        if self.pie_bench_compat:
            images = images * 255.0  # PIE-Bench normalises 0-255 values with [0, 1] statistics
        size = self._input_size(*images.shape[-2:])
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=self.antialias)
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype)[:, None, None]
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype)[:, None, None]
        return (images - mean) / std

    def keys(self, images: Tensor) -> Tensor:
        """The ViT's keys of (B, 3, H, W) images in [0, 1]: (B, T, D) float32, with the gradient where enabled."""
        parameter = next(self.vit.parameters(), None)
        pixel_values = self.preprocess(images)
        if parameter is not None:
            pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype)
        with float32_arithmetic(pixel_values.device), evaluation_mode(self.vit):
            return vit_keys(self.vit, pixel_values, self.block_index).float()

    @torch.no_grad()
    def distances(self, source: Tensor, edited: Tensor) -> Tensor:
        """Structure distance per image: (B, 3, H, W) x 2 in [0, 1] -> (B,)."""
        where = f"{type(self).__name__}"
        source = check_images(where, "source", source)
        edited = check_images(where, "edited", edited)
        check_same_shape(where, ("source", "edited"), source, edited)
        with float32_arithmetic(source.device):
            # Two passes of the same batch shape: identical images give bit-identical keys, hence exactly 0.
            return self_similarity_distance(self.keys(source), self.keys(edited.to(source.device)))

    def update(self, source: Tensor, edited: Tensor) -> None:
        """Add a batch: ``source`` and ``edited`` are (B, 3, H, W) in [0, 1]."""
        self._accumulate({"structure/distance": self.distances(source, edited)})
