"""Validation of metric inputs, and how metrics run: float32 arithmetic, networks in eval mode.

Images are (B, 3, H, W) floats in [0, 1]; masks are (B, H, W) bool with True = edit region. Metrics cast images
to float32 and run inside ``float32_arithmetic``, which switches autocast off, so a metric gives the same numbers
under ``bf16-mixed`` as in float32 (bf16 has 8 bits of mantissa: a PSNR near 40 dB would lose its last digits).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

RANGE_TOLERANCE = 1e-3
"""Images may leave [0, 1] by this much (decoder round-off) before they are rejected as wrongly scaled."""


@contextmanager
def float32_arithmetic(device: torch.device) -> Iterator[None]:
    """Switch autocast off on ``device``'s type, so that metric arithmetic (and metric networks) run in float32."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode for a metric's forward pass and restore its mode on exit, also after an error.

    Metrics may share a network that is being trained (the shapes CLIP's vision tower), so they never change its
    mode or its ``requires_grad`` for good.
    """
    # Each submodule's own flag: train(mode) would set a wrapper's mode on everything inside it.
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, training in modes:
            submodule.training = training


def check_images(where: str, name: str, images: Tensor, *, check_range: bool = True) -> Tensor:
    """Check (B, 3, H, W) images in [0, 1] and return them as float32.

    Args:
        where: the caller, for the message (``"BackgroundPreservation.update"``).
        name: the argument's name.
        images: the images.
        check_range: reject values outside [0, 1] (beyond ``RANGE_TOLERANCE``); images in [-1, 1] or 0-255 are
            the usual mistake.

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: wrong shape or range.
    """
    if not isinstance(images, Tensor) or not images.is_floating_point():
        kind = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"{where}: {name} must be a floating-point tensor in [0, 1], got {kind}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{where}: {name} must be (B, 3, H, W), got {tuple(images.shape)}")
    images = images.detach().float()
    if check_range and images.numel() and bool(
        torch.logical_or(images < -RANGE_TOLERANCE, images > 1 + RANGE_TOLERANCE).any()
    ):
        raise ValueError(
            f"{where}: {name} has values in [{float(images.min()):.3g}, {float(images.max()):.3g}]; expected [0, 1] "
            "(convert [-1, 1] images with (x + 1) / 2 and 0-255 images with x / 255)"
        )
    return images


def check_same_shape(where: str, names: tuple[str, str], first: Tensor, second: Tensor) -> None:
    """Raise ``ValueError`` when two image batches differ in shape."""
    if first.shape != second.shape:
        raise ValueError(
            f"{where}: {names[0]} is {tuple(first.shape)} but {names[1]} is {tuple(second.shape)}; they must match"
        )


def check_mask(where: str, name: str, mask: Tensor, images: Tensor) -> Tensor:
    """Check a (B, H, W) bool mask against (B, 3, H, W) images and return it on the images' device.

    Raises:
        TypeError: not a bool tensor.
        ValueError: its shape does not match the images.
    """
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        kind = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{where}: {name} must be a bool tensor (True = edit region), got {kind}; use mask > 0.5")
    expected = (images.shape[0], images.shape[2], images.shape[3])
    if tuple(mask.shape) != expected:
        raise ValueError(f"{where}: {name} is {tuple(mask.shape)} but the images need (B, H, W) = {expected}")
    return mask.to(images.device)
