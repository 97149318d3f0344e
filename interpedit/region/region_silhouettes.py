"""Region silhouettes: each region's mask in a square frame that moves and scales with its explicit position.

A silhouette is the region's mask resampled on an ``S x S`` grid over the square centred on the region's centroid
with half-side ``extent * size`` (``size = sqrt(area fraction)``, normalised image units; see
``interpedit.region.region_positions``). Because the frame is defined by the position alone, a silhouette is
position-free: a move or resize edit changes only the position and the silhouette follows it, a swap trades
silhouettes together with appearance tokens, and painting the silhouettes back at unedited positions gives the
regions' masks again (up to resampling). Parts of a region further than ``extent * size`` from its centroid along
an axis fall outside the frame and are lost; for compact objects (discs, polygons, stars, also when partly
occluded) ``extent = 1.5`` keeps everything, while long or scattered SAM regions may lose their far ends.

The decoder's token layout (``TokenLayout`` with ``shape="silhouette"``) paints the tokens through these instead
of through discs, which gives a small decoder the outline of every region, as the original code's decoder got
masks through masked attention. Grids follow ``torch.nn.functional.grid_sample`` with ``align_corners=False``:
normalised coordinate ``p`` in [0, 1] is grid value ``2 p - 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def _frame_half_side(positions: Tensor, extent: float, resolution: int) -> Tensor:
    """(B, K) half-side of each region's frame in normalised units; at least one pixel of ``resolution``."""
    return (positions[..., 2] * extent).clamp(min=1.0 / resolution)


def region_silhouettes(masks: Tensor, positions: Tensor, size: int = 32, extent: float = 1.5) -> Tensor:
    """(B, K, size, size) silhouettes in [0, 1] of region masks (B, K, H, W) at their positions (B, K, 3).

    Slots with an empty mask get an all-zero silhouette. Bilinear sampling: edges are soft.
    """
    if masks.dim() != 4 or positions.shape != (*masks.shape[:2], 3):
        raise ValueError(
            f"region_silhouettes: masks {tuple(masks.shape)} and positions {tuple(positions.shape)}; expected "
            "(B, K, H, W) and (B, K, 3)"
        )
    if size < 1 or extent <= 0:
        raise ValueError(f"region_silhouettes: size must be positive and extent > 0, got {size} and {extent}")
    batch, slots, height, width = masks.shape
    dtype = positions.dtype if positions.is_floating_point() else torch.float32
    positions = positions.to(dtype)
    half = _frame_half_side(positions, extent, max(height, width))  # (B, K)
    offsets = (torch.arange(size, device=masks.device, dtype=dtype) + 0.5) / size * 2.0 - 1.0  # (S,) in (-1, 1)
    xs = positions[..., 0, None] + offsets * half[..., None]  # (B, K, S) normalised image x of each column
    ys = positions[..., 1, None] + offsets * half[..., None]
    grid = torch.stack(
        [(2.0 * xs - 1.0)[:, :, None, :].expand(-1, -1, size, -1), (2.0 * ys - 1.0)[:, :, :, None].expand(-1, -1, -1, size)],
        dim=-1,
    )  # (B, K, S, S, 2) as (x, y)
    sampled = F.grid_sample(
        masks.reshape(batch * slots, 1, height, width).to(dtype),
        grid.reshape(batch * slots, size, size, 2),
        mode="bilinear", padding_mode="zeros", align_corners=False,
    )
    return sampled.reshape(batch, slots, size, size)


def paint_silhouettes(
    silhouettes: Tensor, positions: Tensor, valid: Tensor, height: int, width: int, extent: float = 1.5
) -> Tensor:
    """(B, K, height, width) coverage in [0, 1]: each silhouette (B, K, S, S) drawn in its frame at its position
    (B, K, 3); zero on invalid slots and outside the frame. The inverse of ``region_silhouettes``."""
    if silhouettes.dim() != 4 or positions.shape != (*silhouettes.shape[:2], 3) or valid.shape != silhouettes.shape[:2]:
        raise ValueError(
            f"paint_silhouettes: silhouettes {tuple(silhouettes.shape)}, positions {tuple(positions.shape)} and valid "
            f"{tuple(valid.shape)}; expected (B, K, S, S), (B, K, 3) and (B, K)"
        )
    batch, slots, size, _ = silhouettes.shape
    dtype = silhouettes.dtype
    positions = positions.to(dtype)
    half = _frame_half_side(positions, extent, max(height, width))[..., None]  # (B, K, 1)
    xs = (torch.arange(width, device=silhouettes.device, dtype=dtype) + 0.5) / width
    ys = (torch.arange(height, device=silhouettes.device, dtype=dtype) + 0.5) / height
    grid_x = (xs - positions[..., 0, None]) / half  # (B, K, W) in frame units, [-1, 1] inside
    grid_y = (ys - positions[..., 1, None]) / half  # (B, K, H)
    grid = torch.stack(
        [grid_x[:, :, None, :].expand(-1, -1, height, -1), grid_y[:, :, :, None].expand(-1, -1, -1, width)], dim=-1
    )
    painted = F.grid_sample(
        silhouettes.reshape(batch * slots, 1, size, size),
        grid.reshape(batch * slots, height, width, 2),
        mode="bilinear", padding_mode="zeros", align_corners=False,
    ).reshape(batch, slots, height, width)
    return painted * valid[..., None, None].to(dtype)
