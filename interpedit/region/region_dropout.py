"""Region dropout for training the region autoencoder: keep a random subset of regions, blank the others.

Dropped regions' pixels are blanked at the encoder input, so the kept tokens carry nothing of them, and the
decoder learns to infill wherever no token speaks for the image.
"""

from __future__ import annotations

import torch
from torch import Tensor


def keep_random_subset(valid: Tensor, min_keep_fraction: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """A random subset of each sample's valid regions: between ``ceil(min_keep_fraction * n)`` and ``n`` of its
    ``n`` regions, the count uniform in that range, the regions uniform given the count; at least one when ``n > 0``.

    Args:
        valid: (B, K) bool.
        min_keep_fraction: smallest fraction kept; 1 keeps everything.
        generator: for reproducible draws (on ``valid``'s device).

    Returns:
        (B, K) bool, a subset of ``valid``.
    """
    if not 0.0 <= min_keep_fraction <= 1.0:
        raise ValueError(f"keep_random_subset: min_keep_fraction must be in [0, 1], got {min_keep_fraction}")
    counts = valid.sum(dim=1)  # (B,)
    low = torch.clamp(torch.ceil(counts.float() * min_keep_fraction), min=1).long()
    low = torch.minimum(low, counts)
    uniform = torch.rand(counts.shape, generator=generator, device=valid.device)
    keep_counts = low + (uniform * (counts - low + 1).float()).floor().long().clamp(max=(counts - low))
    # Random scores, invalid slots last; keep the first keep_counts slots of each row in score order.
    scores = torch.rand(valid.shape, generator=generator, device=valid.device).masked_fill(~valid, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)
    return (rank < keep_counts[:, None]) & valid


def blank_regions(images: Tensor, masks: Tensor, blank: Tensor, fill: float = 0.5) -> Tensor:
    """Images with the pixels of the chosen regions set to ``fill``.

    Args:
        images: (B, 3, H, W).
        masks: (B, K, H, W) bool.
        blank: (B, K) bool, regions to blank.
        fill: value written into blanked pixels.
    """
    hidden = (masks & blank[:, :, None, None]).any(dim=1, keepdim=True)  # (B, 1, H, W)
    return torch.where(hidden, torch.full_like(images, fill), images)


def unknown_pixels(masks: Tensor, unknown: Tensor) -> Tensor:
    """Pixels of regions the decoder is given no token for: (B, K, H, W), (B, K) -> (B, H, W) bool."""
    return (masks & unknown[:, :, None, None]).any(dim=1)
