"""Candidate boxes around anchors, their ROI features, and their masks (Learnable Regions, steps 2-3).

A box of half-size ``s`` cells around the anchor cell ``(row, col)`` covers the cells ``col - s .. col + s`` and
``row - s .. row + s`` (a side of ``2 s + 1`` cells, centred on the anchor), clipped to the grid. Boxes are
``(x1, y1, x2, y2)`` in continuous grid units, cell ``i`` spanning ``[i, i + 1)``: x from the column, y from the
row. ``torchvision.ops.roi_align`` reads them with ``spatial_scale=1`` (the boxes are already in the feature grid's
units; the released code's 1/8 shrank every box into the map's top-left corner) and ``aligned=True`` (so that a
box ``[0, cols]`` covers the whole map).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align


def anchor_boxes(anchors: Tensor, half_sizes: Sequence[int], grid: tuple[int, int]) -> Tensor:
    """Boxes of every half-size around every anchor.

    Args:
        anchors: (B, P, 2) long (row, col) cells.
        half_sizes: S half-sizes in cells.
        grid: (rows, cols) of the grid.

    Returns:
        (B, P, S, 4) float boxes ``(x1, y1, x2, y2)`` in grid units, clipped to ``[0, cols] x [0, rows]``.
    """
    rows, cols = grid
    sizes = torch.as_tensor(list(half_sizes), device=anchors.device, dtype=torch.float32)
    if sizes.ndim != 1 or len(sizes) == 0 or bool((sizes < 0).any()):
        raise ValueError(f"half_sizes must be a non-empty list of sizes >= 0, got {list(half_sizes)}")
    row = anchors[..., 0].float()[..., None]  # (B, P, 1)
    col = anchors[..., 1].float()[..., None]
    x1 = (col - sizes).clamp(0, cols)
    y1 = (row - sizes).clamp(0, rows)
    x2 = (col + sizes + 1).clamp(0, cols)
    y2 = (row + sizes + 1).clamp(0, rows)
    return torch.stack([x1, y1, x2, y2], dim=-1)


def roi_features(features: Tensor, boxes: Tensor, output_size: int = 8) -> Tensor:
    """ROI-aligned features of every box, grouped per anchor with the sizes stacked on channels.

    Args:
        features: (B, C, rows, cols) feature map on the boxes' grid.
        boxes: (B, P, S, 4) boxes from ``anchor_boxes``.
        output_size: side of each ROI's feature crop.

    Returns:
        (B * P, S * C, output_size, output_size): for anchor ``p`` of image ``b`` (row ``b * P + p``), channels
        ``s * C .. (s + 1) * C`` hold size ``s``'s crop.
    """
    batch, anchors, sizes, _ = boxes.shape
    if features.shape[0] != batch:
        raise ValueError(f"{features.shape[0]} feature maps for boxes of {batch} images")
    flat = boxes.reshape(batch, anchors * sizes, 4).to(features.dtype)
    crops = roi_align(features, list(flat.unbind(0)), output_size=output_size, spatial_scale=1.0,
                      sampling_ratio=-1, aligned=True)  # (B * P * S, C, o, o), in (b, p, s) order
    return crops.reshape(batch * anchors, sizes * features.shape[1], output_size, output_size)


def box_masks(boxes: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Binary image masks of grid-unit boxes: (..., 4) -> (..., H, W) bool.

    The box's edges are scaled from the grid to the image (x by ``W / cols``, y by ``H / rows``) and a pixel is in
    the mask when its centre is inside the box.
    """
    rows, cols = grid
    height, width = size
    x1, y1, x2, y2 = (boxes * boxes.new_tensor([width / cols, height / rows] * 2)).unbind(-1)
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    inside_y = (ys >= y1[..., None]) & (ys < y2[..., None])  # (..., H)
    inside_x = (xs >= x1[..., None]) & (xs < x2[..., None])  # (..., W)
    return inside_y[..., :, None] & inside_x[..., None, :]


def box_area_fraction(boxes: Tensor, grid: tuple[int, int]) -> Tensor:
    """The share of the grid each grid-unit box covers: (..., 4) -> (...) in [0, 1]."""
    rows, cols = grid
    x1, y1, x2, y2 = boxes.unbind(-1)
    return ((x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)) / float(rows * cols)
