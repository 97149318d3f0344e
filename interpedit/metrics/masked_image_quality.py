"""Per-image MSE, PSNR and SSIM over a region of pixels, as true masked means.

Images are (B, 3, H, W) in [0, 1] (data range 1); ``region`` is (B, H, W) bool, True where a pixel counts.

- MSE: mean of the squared difference over the region's pixels and the 3 channels.
- PSNR: ``10 * log10(1 / MSE)`` dB, capped at ``PSNR_CAP_DB`` = 100 dB, i.e. MSE floored at 1e-10: identical
  pixels give exactly 100, a finite, documented ideal (torchmetrics would give ``inf``). An 8-bit round-off
  alone already gives about 59 dB, so the cap never touches a real edit.
- SSIM: torchmetrics' SSIM map (Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, data range 1, reflection
  padding at the image border) computed on the whole images in float64, averaged over channels, then over the
  region's pixels (identical images give 1). The windows of pixels near the region's border reach across it, as
  any local SSIM must; with the whole image as region the value equals torchmetrics'
  ``StructuralSimilarityIndexMeasure``. Needs H, W >= 6.

A region with no pixel gives NaN (undefined), which the metrics drop from their means.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

PSNR_CAP_DB: float = 100.0
"""PSNR of identical pixels (dB); equivalently an MSE floor of ``10 ** (-PSNR_CAP_DB / 10)`` = 1e-10."""

SSIM_KERNEL_SIZE = 11
"""torchmetrics' default Gaussian window; reflection padding needs images of at least ``SSIM_KERNEL_SIZE // 2 + 1``."""


def masked_mse(first: Tensor, second: Tensor, region: Tensor) -> Tensor:
    """Mean squared difference over the region's pixels and channels: (B, 3, H, W) x 2, (B, H, W) -> (B,)."""
    squared = (first - second).pow(2).sum(dim=1)  # (B, H, W), summed over channels
    weight = region.to(squared.dtype)
    pixels = weight.sum(dim=(1, 2))
    total = (squared * weight).sum(dim=(1, 2))
    return torch.where(pixels > 0, total / (3 * pixels).clamp(min=1), torch.full_like(total, float("nan")))


def psnr_from_mse(mse: Tensor, max_psnr: float = PSNR_CAP_DB) -> Tensor:
    """``10 * log10(1 / mse)`` for data range 1, capped at ``max_psnr`` (so MSE 0 gives exactly ``max_psnr``)."""
    # -10 * log10(0) is +inf and the clamp maps it to the cap exactly; NaN (empty region) stays NaN.
    return (-10.0 * torch.log10(mse)).clamp(max=max_psnr)


def masked_psnr(first: Tensor, second: Tensor, region: Tensor, max_psnr: float = PSNR_CAP_DB) -> Tensor:
    """PSNR (dB) of the masked MSE, capped at ``max_psnr``: (B, 3, H, W) x 2, (B, H, W) -> (B,)."""
    return psnr_from_mse(masked_mse(first, second, region), max_psnr)


def ssim_map(first: Tensor, second: Tensor) -> Tensor:
    """torchmetrics' SSIM map (data range 1), averaged over channels: (B, 3, H, W) x 2 -> (B, H, W).

    Raises:
        ValueError: images smaller than the reflection padding of the 11-pixel window allows.
    """
    height, width = first.shape[-2:]
    smallest = SSIM_KERNEL_SIZE // 2 + 1
    if height < smallest or width < smallest:
        raise ValueError(
            f"SSIM needs images of at least {smallest}x{smallest} pixels (an {SSIM_KERNEL_SIZE}-pixel window with "
            f"reflection padding), got {height}x{width}"
        )
    _, full = structural_similarity_index_measure(
        first, second, data_range=1.0, reduction="none", return_full_image=True
    )
    return full.mean(dim=1)


def masked_ssim(first: Tensor, second: Tensor, region: Tensor) -> Tensor:
    """SSIM map averaged over the region's pixels: (B, 3, H, W) x 2, (B, H, W) -> (B,), in the inputs' dtype.

    The map is computed in float64 (where the device has it): in float32, torchmetrics' variance E[x^2] - mu^2
    of a flat patch comes out as -1e-8 instead of 0, which turns identical images into SSIM 0.99997, not 1.
    """
    exact = torch.float32 if first.device.type == "mps" else torch.float64
    values = ssim_map(first.to(exact), second.to(exact))
    weight = region.to(values.dtype)
    pixels = weight.sum(dim=(1, 2))
    total = (values * weight).sum(dim=(1, 2))
    mean = torch.where(pixels > 0, total / pixels.clamp(min=1), torch.full_like(total, float("nan")))
    return mean.to(first.dtype)


def force_mask_border(mask: Tensor) -> Tensor:
    """PIE-Bench's mask decoding quirk: the first and last row and column become edit region (True).

    PIE-Bench does this "to avoid annotation errors in boundary", so its background metrics never count the
    image border. (B, H, W) bool -> (B, H, W) bool, a copy.
    """
    forced = mask.clone()
    forced[:, 0, :] = True
    forced[:, -1, :] = True
    forced[:, :, 0] = True
    forced[:, :, -1] = True
    return forced
