"""Background preservation: how much an edit changed the image outside its edit mask (source vs edited).

Keys: ``background/psnr`` (dB, higher better), ``background/ssim`` (higher better), ``background/mse`` (lower
better), ``background/lpips`` (lower better; absent when LPIPS is unavailable), each with a ``_count``.
Values are raw: PIE-Bench's tables print LPIPS x10^3, MSE x10^4 and SSIM x10^2; we do not scale.

Two definitions (``pie_bench_compat``):

Clean (default): true masked means over the background pixels (mask False), see ``masked_image_quality``:
MSE over background pixels only; PSNR from that MSE, capped at 100 dB (identical backgrounds give exactly 100);
SSIM map of the whole images averaged over background pixels only; LPIPS between the source and the edited image
with its edit region filled back with the source's pixels, so that only background differences count (LPIPS has
no per-pixel mean: its features see across the mask border). An image whose mask covers everything has no
background and gets NaN (dropped from the means).

PIE-Bench (``pie_bench_compat=True``), as in its ``evaluation/evaluate.py`` and ``matrics_calculator.py``: the
mask's first/last row and column are forced to edit region; both images are multiplied by (1 - mask), so the
edit region is black in both; then full-image torchmetrics formulas: PSNR (data range 1), SSIM (data range 1),
MSE (mean over all pixels and channels) and LPIPS (SqueezeNet by default, inputs 2x - 1). The zeroed pixels count
as perfect matches, which inflates PSNR/SSIM relative to the clean means. An image whose forced mask covers
everything gets NaN, like PIE-Bench's "nan" rows. Identical backgrounds give PSNR = +inf, as torchmetrics
does; it is kept, so the mean is +inf too, which is what averaging PIE-Bench's CSV column gives. Images are used
as given: PIE-Bench reads 8-bit files, so pass ``round(x * 255) / 255`` for bit-level agreement.

LPIPS needs torchvision's ImageNet backbone weights (``lpips_distance``), e.g. ``squeezenet1_1-b8a52dc0.pth`` in
``torch.hub.get_dir()/checkpoints``. When they are neither cached nor downloadable (with ``HF_HUB_OFFLINE=1`` no
download is tried), the metric warns once, at construction, naming the missing file, its URL and the cache
folder; it lists the reason in ``unavailable["background/lpips"]`` and never reports a ``background/lpips`` value
(no key in ``compute()`` or ``per_image``; never NaN or 0 in its place). Under DDP every rank must have the
weights or none.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from interpedit.metrics.lpips_distance import LPIPSFunction, LPIPSNet, build_lpips
from interpedit.metrics.masked_image_quality import (
    PSNR_CAP_DB,
    force_mask_border,
    masked_mse,
    masked_ssim,
    psnr_from_mse,
    ssim_map,
)
from interpedit.metrics.metric_inputs import check_images, check_mask, check_same_shape, float32_arithmetic
from interpedit.metrics.per_image_average import PerImageAverage

LPIPS_KEY = "background/lpips"


def _prepare(where: str, source: Tensor, edited: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    source = check_images(where, "source", source)
    edited = check_images(where, "edited", edited)
    check_same_shape(where, ("source", "edited"), source, edited)
    return source, edited.to(source.device), check_mask(where, "mask", mask, source)


def _nan_where_no_background(values: Tensor, background: Tensor) -> Tensor:
    return torch.where(background.flatten(1).any(dim=1), values, torch.full_like(values, float("nan")))


def _zero_filled(source: Tensor, edited: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """PIE-Bench's inputs: both images times (1 - border-forced mask), and that background (B, H, W)."""
    background = ~force_mask_border(mask)
    keep = background[:, None].to(source.dtype)
    return source * keep, edited * keep, background


def _mse(source: Tensor, edited: Tensor, mask: Tensor, compat: bool) -> Tensor:
    if compat:
        source, edited, background = _zero_filled(source, edited, mask)
        return _nan_where_no_background((source - edited).pow(2).mean(dim=(1, 2, 3)), background)
    return masked_mse(source, edited, ~mask)


def _psnr_from(mse: Tensor, compat: bool, max_psnr: float) -> Tensor:
    # PIE-Bench's torchmetrics PSNR is 10 log10(1 / MSE) with no cap (+inf for identical pixels).
    return -10.0 * torch.log10(mse) if compat else psnr_from_mse(mse, max_psnr)


def _ssim(source: Tensor, edited: Tensor, mask: Tensor, compat: bool) -> Tensor:
    if compat:
        source, edited, background = _zero_filled(source, edited, mask)
        return _nan_where_no_background(ssim_map(source, edited).mean(dim=(1, 2)), background)
    return masked_ssim(source, edited, ~mask)


def _lpips(source: Tensor, edited: Tensor, mask: Tensor, lpips: LPIPSFunction, compat: bool) -> Tensor:
    if compat:
        first, second, background = _zero_filled(source, edited, mask)
    else:
        background = ~mask
        first, second = source, torch.where(mask[:, None], source, edited)
    values = lpips(first * 2 - 1, second * 2 - 1).reshape(-1).float()
    return _nan_where_no_background(values, background)


def background_mse(source: Tensor, edited: Tensor, mask: Tensor, *, pie_bench_compat: bool = False) -> Tensor:
    """Background MSE per image (module docstring): (B, 3, H, W) x 2, (B, H, W) bool -> (B,)."""
    source, edited, mask = _prepare("background_mse", source, edited, mask)
    with float32_arithmetic(source.device):
        return _mse(source, edited, mask, pie_bench_compat)


def background_psnr(
    source: Tensor, edited: Tensor, mask: Tensor, *, pie_bench_compat: bool = False, max_psnr: float = PSNR_CAP_DB
) -> Tensor:
    """Background PSNR in dB per image (module docstring): (B, 3, H, W) x 2, (B, H, W) bool -> (B,).

    Args:
        max_psnr: the cap of the clean definition; PIE-Bench's has none.
    """
    source, edited, mask = _prepare("background_psnr", source, edited, mask)
    with float32_arithmetic(source.device):
        return _psnr_from(_mse(source, edited, mask, pie_bench_compat), pie_bench_compat, max_psnr)


def background_ssim(source: Tensor, edited: Tensor, mask: Tensor, *, pie_bench_compat: bool = False) -> Tensor:
    """Background SSIM per image (module docstring): (B, 3, H, W) x 2, (B, H, W) bool -> (B,)."""
    source, edited, mask = _prepare("background_ssim", source, edited, mask)
    with float32_arithmetic(source.device):
        return _ssim(source, edited, mask, pie_bench_compat)


def background_lpips(
    source: Tensor, edited: Tensor, mask: Tensor, lpips: LPIPSFunction, *, pie_bench_compat: bool = False
) -> Tensor:
    """Background LPIPS per image (module docstring): (B, 3, H, W) x 2, (B, H, W) bool -> (B,).

    Args:
        lpips: ``(img1, img2) -> (B,)`` on images in [-1, 1], e.g. ``lpips_distance.TorchmetricsLPIPS()``.
    """
    source, edited, mask = _prepare("background_lpips", source, edited, mask)
    with float32_arithmetic(source.device):
        return _lpips(source, edited, mask, lpips, pie_bench_compat)


class BackgroundPreservation(PerImageAverage):
    """PSNR, SSIM, MSE and LPIPS outside the edit mask, averaged over images (definitions in the module docstring).

    Args:
        pie_bench_compat: reproduce PIE-Bench's formulas (border-forced mask, zero-filled full-image metrics).
        lpips: report LPIPS; False leaves it out without a warning.
        lpips_net_type: LPIPS backbone when torchmetrics' LPIPS is built here (PIE-Bench: ``"squeeze"``).
        lpips_module: ``(img1, img2) -> (B,)`` on [-1, 1] images to use instead of building torchmetrics' LPIPS
            (an ``nn.Module`` moves with the metric).
        max_psnr: PSNR cap of the clean definition, in dB.
        **kwargs: ``torchmetrics.Metric`` options.
    """

    def __init__(
        self,
        *,
        pie_bench_compat: bool = False,
        lpips: bool = True,
        lpips_net_type: LPIPSNet = "squeeze",
        lpips_module: LPIPSFunction | None = None,
        max_psnr: float = PSNR_CAP_DB,
        **kwargs: Any,
    ) -> None:
        if lpips_module is not None and not lpips:
            raise ValueError("BackgroundPreservation: lpips_module was given but lpips=False; drop one of them")
        if lpips_module is not None and not callable(lpips_module):
            raise TypeError(f"BackgroundPreservation: lpips_module must be callable, got {type(lpips_module).__name__}")
        reason = None
        if lpips and lpips_module is None:
            lpips_module, reason = build_lpips(lpips_net_type)
        names = ["background/psnr", "background/ssim", "background/mse"]
        if lpips_module is not None:
            names.append(LPIPS_KEY)
        super().__init__(names, **kwargs)
        self.pie_bench_compat = pie_bench_compat
        self.max_psnr = max_psnr
        self.lpips_module = lpips_module
        if reason is not None:
            self.unavailable[LPIPS_KEY] = reason
            warnings.warn(
                f"BackgroundPreservation: '{LPIPS_KEY}' will not be reported. {reason}. "
                "Pass lpips=False to leave LPIPS out without this warning.",
                UserWarning,
                stacklevel=2,
            )

    @torch.no_grad()
    def update(self, source: Tensor, edited: Tensor, mask: Tensor) -> None:
        """Add a batch.

        Args:
            source: (B, 3, H, W) in [0, 1], the images before editing.
            edited: (B, 3, H, W) in [0, 1], the edited images.
            mask: (B, H, W) bool, True = edit region; the background is its complement.
        """
        source, edited, mask = _prepare(f"{type(self).__name__}.update", source, edited, mask)
        compat = self.pie_bench_compat
        with float32_arithmetic(source.device):
            mse = _mse(source, edited, mask, compat)
            values = {
                "background/psnr": _psnr_from(mse, compat, self.max_psnr),
                "background/ssim": _ssim(source, edited, mask, compat),
                "background/mse": mse,
            }
            if self.lpips_module is not None:
                values[LPIPS_KEY] = _lpips(source, edited, mask, self.lpips_module, compat)
        self._accumulate(values)
