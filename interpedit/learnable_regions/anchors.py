"""Anchor points from a ViT's CLS-token attention (Learnable Regions, step 1).

The self-supervised ViT's last block attends from the CLS token to every patch; averaged over heads, that map peaks
on the salient object. Anchors are its highest cells, taken in order, with the cells too close to the border left
out so that the boxes around them fit (the released code keeps cells at least ``max_half_size`` cells from every
border).

Coordinates: an anchor is ``(row, col)`` on the patch grid, row first as in the map's ``(h, w)`` layout. Boxes built
from it (``interpedit.learnable_regions.boxes``) put ``col`` on x and ``row`` on y. The released code passes the row
where x belongs, which transposes every box away from its attention peak.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from interpedit.metrics.vit_keys import _qkv_layer


@contextmanager
def capture_qkv(vit: nn.Module, block_index: int = -1) -> Iterator[list[Tensor]]:
    """Record the fused ``qkv`` projection of one timm ViT block; the hook is removed on exit."""
    captured: list[Tensor] = []
    handle = _qkv_layer(vit, block_index).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        yield captured
    finally:
        handle.remove()


def patch_grid(vit: nn.Module, height: int, width: int) -> tuple[int, int]:
    """The (rows, cols) patch grid of a timm ViT for an input of ``height`` x ``width`` pixels."""
    patch = vit.patch_embed.patch_size
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    return height // patch_h, width // patch_w


def cls_attention_from_qkv(attention_module: nn.Module, qkv: Tensor, num_prefix_tokens: int,
                           grid: tuple[int, int]) -> Tensor:
    """The CLS token's attention over the patches, averaged over heads, from a block's fused ``qkv`` output.

    The attention probabilities are recomputed from the block's queries and keys (with its ``q_norm``/``k_norm``
    and ``scale``) exactly as timm's ``Attention`` forms them: a softmax over all tokens (CLS, registers, patches).
    The row of the CLS query is then read at the patch keys only, so the map does not sum to 1 where registers take
    some of the mass.

    Args:
        attention_module: the block's timm ``Attention``.
        qkv: (B, T, 3 * D) output of its ``qkv`` layer.
        num_prefix_tokens: CLS and register tokens before the patches.
        grid: (rows, cols) of the patches.

    Returns:
        (B, rows, cols) float32.
    """
    batch, tokens, width = qkv.shape
    heads = attention_module.num_heads
    rows, cols = grid
    if tokens - num_prefix_tokens != rows * cols:
        raise ValueError(f"{tokens - num_prefix_tokens} patch tokens do not form a {rows}x{cols} grid")
    q, k, _ = qkv.reshape(batch, tokens, 3, heads, width // (3 * heads)).permute(2, 0, 3, 1, 4)
    q = getattr(attention_module, "q_norm", nn.Identity())(q)
    k = getattr(attention_module, "k_norm", nn.Identity())(k)
    scale = getattr(attention_module, "scale", q.shape[-1] ** -0.5)
    probabilities = ((q[:, :, :1] * scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, 1, T)
    return probabilities[:, :, 0, num_prefix_tokens:].mean(dim=1).reshape(batch, rows, cols).float()


def cls_attention(vit: nn.Module, pixel_values: Tensor, block_index: int = -1) -> Tensor:
    """The CLS attention map of one block (default the last) for preprocessed images: -> (B, rows, cols)."""
    with capture_qkv(vit, block_index) as captured:
        vit.forward_features(pixel_values)
    if len(captured) != 1:
        raise RuntimeError(f"expected one pass through block {block_index}, the hook saw {len(captured)}")
    grid = patch_grid(vit, *pixel_values.shape[-2:])
    return cls_attention_from_qkv(vit.blocks[block_index].attn, captured[0], int(getattr(vit, "num_prefix_tokens", 1)),
                                  grid)


def anchor_points(attention: Tensor, num_points: int, border: int, spacing: int = 0) -> Tensor:
    """The ``num_points`` highest cells of each (rows, cols) attention map, as (row, col), in descending order.

    Cells closer than ``border`` cells to an edge (``row < border`` or ``row > rows - 1 - border``, the same for
    columns) are skipped, so a box of half-size ``border`` around an anchor stays on the grid. When too few cells
    pass, the highest remaining cells fill the list; unlike the released code, no anchor is repeated.

    ``spacing`` > 0 goes beyond the paper: a greedy non-maximum suppression that skips any cell closer than ``spacing``
    cells (Chebyshev distance) to an anchor already taken, so the anchors spread over several attention peaks
    instead of piling onto the strongest one. The skipped cells fill the list, in attention order, only when too
    few cells are left.

    Args:
        attention: (B, rows, cols) maps.
        num_points: anchors per map; at most rows * cols.
        border: cells kept clear of every edge (0 keeps every cell).
        spacing: minimum distance, in cells, between anchors (0: the released top-k, no suppression).

    Returns:
        (B, num_points, 2) long tensor of (row, col).
    """
    if attention.ndim != 3:
        raise ValueError(f"attention must be (B, rows, cols), got shape {tuple(attention.shape)}")
    batch, rows, cols = attention.shape
    if not 1 <= num_points <= rows * cols:
        raise ValueError(f"num_points must be in 1..{rows * cols} for a {rows}x{cols} grid, got {num_points}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if spacing < 0:
        raise ValueError(f"spacing must be >= 0, got {spacing}")
    row_index = torch.arange(rows, device=attention.device)[:, None].expand(rows, cols)
    col_index = torch.arange(cols, device=attention.device)[None, :].expand(rows, cols)
    inside = ((row_index >= border) & (row_index <= rows - 1 - border)
              & (col_index >= border) & (col_index <= cols - 1 - border)).flatten()
    flat = attention.detach().float().flatten(1)
    # Cells inside the border come first (in attention order), then the others (in attention order).
    lowest = torch.finfo(torch.float32).min
    key = torch.where(inside, flat, torch.full_like(flat, lowest))
    order_inside = key.argsort(dim=1, descending=True, stable=True)
    order_all = flat.argsort(dim=1, descending=True, stable=True)
    count_inside = int(inside.sum())
    chosen = []
    for b in range(batch):
        candidates = order_inside[b, :count_inside].tolist()
        picked = _spaced(candidates, num_points, spacing, cols) if spacing else candidates[:num_points]
        taken = set(picked)
        for index in candidates + order_all[b].tolist():  # fill: suppressed cells first, then the border's
            if len(picked) == num_points:
                break
            if index not in taken:
                picked.append(index)
                taken.add(index)
        chosen.append(picked)
    index = torch.tensor(chosen, device=attention.device, dtype=torch.long)
    return torch.stack([index // cols, index % cols], dim=-1)


def _spaced(candidates: list[int], count: int, spacing: int, cols: int) -> list[int]:
    """Greedy non-maximum suppression: the first ``count`` flat cells of ``candidates`` (in order) that lie at least
    ``spacing`` cells (Chebyshev distance) from every cell taken before them."""
    picked: list[tuple[int, int]] = []
    for index in candidates:
        row, col = divmod(index, cols)
        if all(max(abs(row - r), abs(col - c)) >= spacing for r, c in picked):
            picked.append((row, col))
            if len(picked) == count:
                break
    return [r * cols + c for r, c in picked]
