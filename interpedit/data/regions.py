"""Region budget helpers: padding masks to a fixed number of slots and boxes from masks."""

from __future__ import annotations

import torch


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes around boolean masks.

    Args:
        masks: (..., H, W) bool.

    Returns:
        (..., 4) float32 ``x0, y0, x1, y1`` with exclusive ends; all zeros for empty masks.
    """
    height, width = masks.shape[-2:]
    rows = masks.any(dim=-1)  # (..., H)
    cols = masks.any(dim=-2)  # (..., W)
    nonempty = rows.any(dim=-1)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    big = max(height, width) + 1
    y0 = torch.where(rows, ys, big).amin(dim=-1)
    y1 = torch.where(rows, ys, -1).amax(dim=-1) + 1
    x0 = torch.where(cols, xs, big).amin(dim=-1)
    x1 = torch.where(cols, xs, -1).amax(dim=-1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).float()
    return torch.where(nonempty[..., None], boxes, torch.zeros_like(boxes))


def pad_regions(masks: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (or truncate) a stack of region masks to exactly ``budget`` slots.

    Args:
        masks: (N, H, W) bool.
        budget: number of slots K.

    Returns:
        ``(padded, valid)``: (K, H, W) bool and (K,) bool. Regions beyond the budget are dropped; callers
        that need a choice among regions select them first (see ``sample_regions_by_area``).
    """
    n, height, width = masks.shape
    padded = torch.zeros(budget, height, width, dtype=torch.bool)
    keep = min(n, budget)
    padded[:keep] = masks[:keep].bool()
    valid = torch.zeros(budget, dtype=torch.bool)
    valid[:keep] = padded[:keep].flatten(1).any(dim=1)
    return padded, valid


def sample_regions_by_area(
    masks: torch.Tensor, budget: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Choose at most ``budget`` regions, with probability proportional to area, without replacement.

    Args:
        masks: (N, H, W) bool.
        budget: number of regions to keep.
        generator: source of randomness, for reproducible choices.

    Returns:
        (min(N, budget),) long indices into ``masks``, sorted ascending so that the original order is kept.
    """
    n = masks.shape[0]
    if n <= budget:
        return torch.arange(n)
    areas = masks.flatten(1).sum(dim=1).double().clamp_min(1.0)
    chosen = torch.multinomial(areas, budget, replacement=False, generator=generator)
    return chosen.sort().values
