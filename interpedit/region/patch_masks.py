"""Region masks on the ViT's patch grid.

A patch belongs to a region if any pixel under the patch is in the region's mask (the "any pixel" rule of the
original region autoencoder). It is a max-pool of the mask over each patch's footprint, so every non-empty region
owns at least one patch and even a one-pixel region gets a token; a region's patches may overlap its neighbours'.

The footprint is taken in the mask's own pixels: the image is resized to the ViT input size, so patch ``j`` of
``h`` covers rows ``[j * H / h, (j + 1) * H / h)`` of an ``H``-row mask, and a mask row belongs to every patch it
overlaps (``adaptive_max_pool2d``'s windows are exactly these). When ``H`` is the ViT input size this is a plain
max-pool with the patch as kernel; when ``H`` divides evenly it equals nearest-resizing the mask to the ViT input
size and max-pooling. Unlike nearest-resizing first, it never drops a thin region when the mask is larger than
the ViT input, and it covers every pixel when the sizes do not divide.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_grid_masks(masks: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Region masks on the patch grid by the "any pixel of the patch" rule.

    Args:
        masks: (B, K, H, W) bool region masks at image resolution.
        grid_size: patch grid ``(h, w)`` of the ViT.

    Returns:
        (B, K, h, w) bool, True where the patch overlaps a pixel of the region.
    """
    if masks.dim() != 4:
        raise ValueError(f"masks: expected (B, K, H, W), got shape {tuple(masks.shape)}")
    grid_h, grid_w = (int(size) for size in grid_size)
    height, width = masks.shape[-2:]
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid_size: expected positive sizes, got {tuple(grid_size)}")
    if height < grid_h or width < grid_w:
        # A mask pixel would have to be split between patches: masks must have at least the grid's resolution.
        raise ValueError(
            f"masks: {height}x{width} is smaller than the {grid_h}x{grid_w} patch grid; pass masks at image resolution"
        )
    batch, slots = masks.shape[:2]
    # uint8 is not supported by adaptive_max_pool2d on every device; float is exact for 0/1 values.
    flat = masks.reshape(batch * slots, 1, height, width).float()
    if height % grid_h == 0 and width % grid_w == 0:
        pooled = F.max_pool2d(flat, kernel_size=(height // grid_h, width // grid_w))
    else:
        pooled = F.adaptive_max_pool2d(flat, (grid_h, grid_w))
    return pooled.reshape(batch, slots, grid_h, grid_w) > 0.5


def patch_token_masks(masks: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Region masks over the ViT's patch tokens, in the tokens' row-major order.

    Args:
        masks: (B, K, H, W) bool region masks at image resolution.
        grid_size: patch grid ``(h, w)`` of the ViT.

    Returns:
        (B, K, N) bool with ``N = h * w``; token ``n`` is patch ``(n // w, n % w)``, as timm flattens its grid.
    """
    return patch_grid_masks(masks, grid_size).flatten(2)
