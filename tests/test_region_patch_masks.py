"""Patch-grid masks: the "any pixel of the patch" rule, at any mask resolution."""

import math

import pytest
import torch
import torch.nn.functional as F

from interpedit.region import patch_grid_masks, patch_token_masks


def random_masks(batch: int, slots: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Blobs, thin lines and single pixels: the regions most likely to lose their patches."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.rand(batch, slots, height, width, generator=generator) > 0.97
    for b in range(batch):
        y, x = (int(v) for v in torch.randint(0, min(height, width), (2,), generator=generator))
        masks[b, 0] = False
        masks[b, 0, y % height, x % width] = True  # one pixel
        masks[b, 1] = False
        masks[b, 1, :, x % width] = True  # a one-pixel-wide column
        masks[b, 2] = False  # an empty slot
    return masks


def reference_patch_masks(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch (i, j) holds the region iff a mask pixel overlaps the patch's footprint in mask coordinates."""
    height, width = masks.shape[-2:]
    out = torch.zeros(*masks.shape[:2], *grid, dtype=torch.bool)
    for i in range(grid[0]):
        rows = slice(math.floor(i * height / grid[0]), math.ceil((i + 1) * height / grid[0]))
        for j in range(grid[1]):
            cols = slice(math.floor(j * width / grid[1]), math.ceil((j + 1) * width / grid[1]))
            out[..., i, j] = masks[..., rows, cols].flatten(-2).any(dim=-1)
    return out


@pytest.mark.parametrize("size", [(32, 32), (30, 30), (37, 45), (64, 64), (9, 8)])
def test_every_nonempty_region_owns_a_patch_and_the_rule_is_any_overlapping_pixel(size):
    masks = random_masks(3, 5, *size, seed=sum(size))
    grid = (8, 8)
    patches = patch_grid_masks(masks, grid)
    assert patches.shape == (3, 5, 8, 8) and patches.dtype == torch.bool
    nonempty = masks.flatten(2).any(dim=-1)
    assert torch.equal(patches.flatten(2).any(dim=-1), nonempty)
    assert torch.equal(patches, reference_patch_masks(masks, grid))


def test_divisible_masks_equal_nearest_resize_to_the_vit_input_then_max_pool():
    masks = random_masks(2, 4, 16, 16, seed=1)
    vit_input, patch = 32, 4
    resized = F.interpolate(masks.float(), size=(vit_input, vit_input), mode="nearest")
    expected = F.max_pool2d(resized, kernel_size=patch) > 0
    assert torch.equal(patch_grid_masks(masks, (vit_input // patch,) * 2), expected)


def test_masks_larger_than_the_vit_input_keep_one_pixel_regions_that_nearest_resizing_drops():
    masks = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    masks[0, 0, 1, 1] = True  # nearest resizing to 32x32 samples even pixels only
    assert not F.interpolate(masks.float(), size=(32, 32), mode="nearest").any()
    assert patch_grid_masks(masks, (8, 8))[0, 0, 0, 0]


def test_token_masks_follow_the_row_major_token_order():
    masks = random_masks(2, 3, 24, 40, seed=2)
    grid = patch_grid_masks(masks, (3, 5))
    tokens = patch_token_masks(masks, (3, 5))
    for n in range(15):
        assert torch.equal(tokens[..., n], grid[..., n // 5, n % 5])


def test_masks_coarser_than_the_grid_are_refused():
    with pytest.raises(ValueError, match="smaller than the 8x8 patch grid"):
        patch_grid_masks(torch.ones(1, 1, 4, 4, dtype=torch.bool), (8, 8))
