"""Reconstruction quality: how well an autoencoding method re-encodes the unedited source.

A method may return ``reconstruction`` in its ``EditOutput``: the source encoded and decoded without any edit.
Comparing it with the source separates what the autoencoder loses anyway from what the edit changes.

Keys (each with a ``_count``), whole images, reconstruction vs ``source_image``:

- ``reconstruction/psnr``: PSNR in dB (data range 1) of the mean squared error over all pixels and channels,
  capped at 100 dB like the other PSNRs (``masked_image_quality``; an exact reconstruction scores exactly 100).
- ``reconstruction/ssim``: torchmetrics' SSIM map averaged over all pixels (``masked_image_quality.masked_ssim``
  with an all-true region; identical images give 1).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from interpedit.metrics.masked_image_quality import PSNR_CAP_DB, masked_psnr, masked_ssim
from interpedit.metrics.metric_inputs import check_images, check_same_shape, float32_arithmetic
from interpedit.metrics.per_image_average import PerImageAverage

RECONSTRUCTION_KEYS: tuple[str, ...] = ("reconstruction/psnr", "reconstruction/ssim")


def reconstruction_psnr(reconstruction: Tensor, source: Tensor, max_psnr: float = PSNR_CAP_DB) -> Tensor:
    """Whole-image PSNR (dB, capped at ``max_psnr``): (B, 3, H, W) x 2 in [0, 1] -> (B,)."""
    everywhere = torch.ones(source.shape[0], *source.shape[-2:], dtype=torch.bool, device=source.device)
    return masked_psnr(reconstruction, source, everywhere, max_psnr)


def reconstruction_ssim(reconstruction: Tensor, source: Tensor) -> Tensor:
    """Whole-image SSIM (mean of the SSIM map): (B, 3, H, W) x 2 in [0, 1] -> (B,); needs H, W >= 6."""
    everywhere = torch.ones(source.shape[0], *source.shape[-2:], dtype=torch.bool, device=source.device)
    return masked_ssim(reconstruction, source, everywhere)


class ReconstructionQuality(PerImageAverage):
    """A method's unedited re-encodings against their sources (definitions in the module docstring).

    Args:
        max_psnr: PSNR cap in dB.
        **kwargs: ``torchmetrics.Metric`` options.
    """

    def __init__(self, *, max_psnr: float = PSNR_CAP_DB, **kwargs: Any) -> None:
        super().__init__(RECONSTRUCTION_KEYS, **kwargs)
        self.max_psnr = max_psnr

    @torch.no_grad()
    def update(self, reconstruction: Tensor, source: Tensor) -> None:
        """Add a batch.

        Args:
            reconstruction: (B, 3, H, W) in [0, 1], the method's re-encoding of the source without an edit.
            source: (B, 3, H, W) in [0, 1], the source images.
        """
        where = f"{type(self).__name__}.update"
        reconstruction = check_images(where, "reconstruction", reconstruction)
        source = check_images(where, "source", source).to(reconstruction.device)
        check_same_shape(where, ("reconstruction", "source"), reconstruction, source)
        with float32_arithmetic(reconstruction.device):
            self._accumulate(
                {
                    "reconstruction/psnr": reconstruction_psnr(reconstruction, source, self.max_psnr),
                    "reconstruction/ssim": reconstruction_ssim(reconstruction, source),
                }
            )
