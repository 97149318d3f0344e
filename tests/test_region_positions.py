"""Region positions from masks (pixel-centre convention) and their sinusoidal embedding."""

import math

import pytest
import torch

from interpedit.region import RegionPositionEmbedding, region_positions, sinusoidal_embedding


def test_hand_built_masks_give_centroid_and_sqrt_area_fraction():
    masks = torch.zeros(1, 4, 4, 8, dtype=torch.bool)
    masks[0, 0, 1, 2] = True  # one pixel: centre (2.5 / 8, 1.5 / 4)
    masks[0, 1, 0:2, 4:8] = True  # top-right quarter
    masks[0, 2] = True  # everything
    positions = region_positions(masks)[0]
    expected = torch.tensor([
        [2.5 / 8, 1.5 / 4, math.sqrt(1 / 32)],
        [0.75, 0.25, 0.5],
        [0.5, 0.5, 1.0],
        [0.0, 0.0, 0.0],  # empty slot
    ])
    torch.testing.assert_close(positions, expected)


def test_a_horizontal_flip_maps_x_to_one_minus_x_and_keeps_y_and_size():
    masks = torch.rand(3, 5, 37, 29, generator=torch.Generator().manual_seed(0)) > 0.8
    positions = region_positions(masks)
    flipped = region_positions(masks.flip(-1))
    torch.testing.assert_close(flipped[..., 0], 1 - positions[..., 0], atol=1e-7, rtol=0)
    torch.testing.assert_close(flipped[..., 1:], positions[..., 1:], atol=1e-7, rtol=0)
    vertical = region_positions(masks.flip(-2))
    torch.testing.assert_close(vertical[..., 1], 1 - positions[..., 1], atol=1e-7, rtol=0)


def test_positions_do_not_depend_on_the_mask_resolution():
    masks = torch.rand(2, 3, 10, 14, generator=torch.Generator().manual_seed(1)) > 0.7
    upsampled = masks.repeat_interleave(3, dim=-2).repeat_interleave(3, dim=-1)
    torch.testing.assert_close(region_positions(upsampled), region_positions(masks))


def test_sinusoidal_embedding_layout_and_no_wraparound_on_the_unit_interval():
    positions = torch.tensor([[0.0, 0.25, 1.0]])
    embedding = sinusoidal_embedding(positions, dim=12, max_frequency=4.0)  # 2 frequencies: 0.5 and 4
    assert embedding.shape == (1, 12)
    x = embedding[0, :4]  # sin(f0 x), sin(f1 x), cos(f0 x), cos(f1 x) of the first coordinate
    torch.testing.assert_close(x, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    size = embedding[0, 8:]
    torch.testing.assert_close(size, torch.tensor([math.sin(math.pi), 0.0, math.cos(math.pi), 1.0]), atol=1e-6, rtol=0)
    grid = torch.linspace(0, 1, 101)[:, None].expand(-1, 3)
    codes = sinusoidal_embedding(grid, dim=6)  # the lowest frequency alone: half a cycle over [0, 1]
    distances = torch.cdist(codes, codes) + torch.eye(101) * 10
    assert distances.min() > 1e-2  # 0 and 1 (left and right edges) stay apart


def test_embedding_width_must_split_over_the_coordinates():
    with pytest.raises(ValueError, match="multiple of 6"):
        RegionPositionEmbedding(dim=100)
    with pytest.raises(ValueError, match="x, y, size"):
        RegionPositionEmbedding(dim=12)(torch.zeros(1, 2, 2))
