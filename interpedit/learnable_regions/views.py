"""The augmented views CLIP sees in the Learnable Regions losses (Text2LIVE's recipe, as the paper uses it).

View 0 is the whole image. Each other view is a random crop covering 0.6-1.0 of each side, flipped horizontally
with p = 0.5, turned by up to 15 degrees and shifted by up to 10 % (p = 0.8), with colour jitter of 0.1 (p = 0.7)
and greyscale (p = 0.15). Crop, flip, turn and shift are one affine resampling (``F.affine_grid``), so a view costs
one ``grid_sample``.

The parameters are drawn once (``ViewAugmentation.sample``) and applied to any number of images: a candidate edit
and its source then go through the same views, so a directional difference measures the edit and not two
different augmentations (the released code augments them independently). Perspective warps are left out.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class ViewParameters(NamedTuple):
    affine: Tensor
    """(V, 2, 3) sampling grids' affine maps (output -> input, in [-1, 1] coordinates)."""
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    greyscale: Tensor
    """(V,) each; greyscale is bool."""


class ViewAugmentation:
    """Random views (module docstring).

    Args:
        num_views: V views, view 0 the whole image.
        crop_scale: side fraction range of the crops.
        max_rotation: degrees.
        max_translation: fraction of the side.
        jitter: colour jitter strength.
        p_flip, p_affine, p_jitter, p_greyscale: probabilities of each step.
        size: output side in pixels (None keeps the input's).
    """

    def __init__(self, num_views: int = 16, crop_scale: tuple[float, float] = (0.6, 1.0), max_rotation: float = 15.0,
                 max_translation: float = 0.1, jitter: float = 0.1, p_flip: float = 0.5, p_affine: float = 0.8,
                 p_jitter: float = 0.7, p_greyscale: float = 0.15, size: int | None = None) -> None:
        if num_views < 1:
            raise ValueError(f"ViewAugmentation.num_views must be >= 1, got {num_views}")
        low, high = crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"ViewAugmentation.crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        self.num_views = num_views
        self.crop_scale = crop_scale
        self.max_rotation = max_rotation
        self.max_translation = max_translation
        self.jitter = jitter
        self.p_flip, self.p_affine, self.p_jitter, self.p_greyscale = p_flip, p_affine, p_jitter, p_greyscale
        self.size = size

    def sample(self, generator: torch.Generator | None = None) -> ViewParameters:
        count = self.num_views

        def uniform(low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(count, generator=generator)

        def chance(p: float) -> Tensor:
            return torch.rand(count, generator=generator) < p

        low, high = self.crop_scale
        scale_x, scale_y = uniform(low, high), uniform(low, high)
        # The crop's centre may move as far as the crop stays inside the image.
        centre_x, centre_y = uniform(-1, 1) * (1 - scale_x), uniform(-1, 1) * (1 - scale_y)
        flip = torch.where(chance(self.p_flip), -1.0, 1.0)
        turn = chance(self.p_affine)
        angle = torch.where(turn, uniform(-self.max_rotation, self.max_rotation), torch.zeros(count)) * math.pi / 180
        shift_x = torch.where(turn, uniform(-self.max_translation, self.max_translation) * 2, torch.zeros(count))
        shift_y = torch.where(turn, uniform(-self.max_translation, self.max_translation) * 2, torch.zeros(count))
        cos, sin = torch.cos(angle), torch.sin(angle)
        affine = torch.stack([
            torch.stack([scale_x * cos * flip, -scale_x * sin, centre_x + shift_x], dim=-1),
            torch.stack([scale_y * sin * flip, scale_y * cos, centre_y + shift_y], dim=-1),
        ], dim=1)
        jitter = chance(self.p_jitter)

        def factor() -> Tensor:
            return torch.where(jitter, uniform(1 - self.jitter, 1 + self.jitter), torch.ones(count))

        brightness, contrast, saturation = factor(), factor(), factor()
        greyscale = chance(self.p_greyscale)
        # View 0: the whole image, untouched.
        affine[0] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        brightness[0] = contrast[0] = saturation[0] = 1.0
        greyscale[0] = False
        return ViewParameters(affine, brightness, contrast, saturation, greyscale)

    def apply(self, images: Tensor, parameters: ViewParameters) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, V, 3, S, S) views in [0, 1] (S = ``size`` or H)."""
        batch, channels, height, width = images.shape
        views = parameters.affine.shape[0]
        side_h, side_w = (self.size, self.size) if self.size else (height, width)
        affine = parameters.affine.to(images.device, images.dtype)
        grid = F.affine_grid(affine, [views, channels, side_h, side_w], align_corners=False)  # (V, S, S, 2)
        repeated = images[:, None].expand(batch, views, channels, height, width).reshape(-1, channels, height, width)
        out = F.grid_sample(repeated, grid.repeat(batch, 1, 1, 1), mode="bilinear", padding_mode="reflection",
                            align_corners=False).reshape(batch, views, channels, side_h, side_w)

        def per_view(values: Tensor) -> Tensor:
            return values.to(images.device, images.dtype)[None, :, None, None, None]

        grey = (0.299 * out[:, :, 0:1] + 0.587 * out[:, :, 1:2] + 0.114 * out[:, :, 2:3])
        out = out * per_view(parameters.brightness)
        mean = grey.mean(dim=(-2, -1), keepdim=True) * per_view(parameters.brightness)
        out = (out - mean) * per_view(parameters.contrast) + mean
        grey = (0.299 * out[:, :, 0:1] + 0.587 * out[:, :, 1:2] + 0.114 * out[:, :, 2:3])
        out = (out - grey) * per_view(parameters.saturation) + grey
        out = torch.where(per_view(parameters.greyscale.float()) > 0.5, grey.expand_as(out), out)
        return out.clamp(0.0, 1.0)
