"""The token layout: region tokens painted at their explicit positions, small regions on top."""

from __future__ import annotations

import pytest
import torch

from interpedit.region import region_positions
from interpedit.region.region_silhouettes import region_silhouettes
from interpedit.region.token_layout import TokenLayout


def layout_module(**kwargs) -> TokenLayout:
    layout = TokenLayout(token_dim=2, channels=2, **kwargs)
    with torch.no_grad():  # the identity projection, so painted values are the tokens themselves
        layout.project.weight.copy_(torch.eye(2))
        layout.project.bias.zero_()
    return layout


def test_regions_are_painted_at_their_centroids_and_small_ones_lie_on_top():
    layout = layout_module()
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # slot 0 a small object, slot 1 the background
    positions = torch.tensor([[[0.25, 0.25, 0.2], [0.5, 0.5, 0.95]]])
    valid = torch.tensor([[True, True]])
    canvas = layout(tokens, positions, valid, 32, 32)
    assert canvas.shape == (1, 2, 32, 32)
    assert canvas[0, 0, 8, 8] > 0.9 and canvas[0, 1, 8, 8] < 0.1  # the object's centre shows the object
    assert canvas[0, 1, 24, 24] > 0.9 and canvas[0, 0, 24, 24] < 0.05  # elsewhere the background
    # Slot order does not matter: the larger region is painted first either way.
    swapped = layout(tokens.flip(1), positions.flip(1), valid, 32, 32)
    torch.testing.assert_close(swapped, canvas)


def test_moving_a_region_moves_its_paint_and_removing_it_uncovers_the_background():
    layout = layout_module()
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    positions = torch.tensor([[[0.25, 0.25, 0.2], [0.5, 0.5, 0.95]]])
    moved = positions.clone()
    moved[0, 0, :2] = torch.tensor([0.75, 0.75])
    valid = torch.tensor([[True, True]])
    canvas = layout(tokens, moved, valid, 32, 32)
    assert canvas[0, 0, 24, 24] > 0.9 and canvas[0, 0, 8, 8] < 0.05
    removed = layout(tokens, positions, torch.tensor([[False, True]]), 32, 32)
    assert removed[0, 0].abs().max() < 1e-6 and removed[0, 1, 8, 8] > 0.9


def test_channels_must_be_positive():
    with pytest.raises(ValueError, match="channels"):
        TokenLayout(4, channels=0)


def test_a_silhouette_layout_paints_each_region_through_its_outline():
    layout = layout_module(shape="silhouette", silhouette_size=48)
    masks = torch.zeros(1, 2, 32, 32, dtype=torch.bool)
    masks[0, 0, 4:12, 4:20] = True  # a wide rectangle, which a disc would not follow
    masks[0, 1] = ~masks[0, 0]
    positions, valid = region_positions(masks), torch.tensor([[True, True]])
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    canvas = layout(tokens, positions, valid, 32, 32, region_silhouettes(masks, positions, 48, 1.5))
    assert ((canvas[0, 0] > 0.5) == masks[0, 0]).float().mean() > 0.99
    assert ((canvas[0, 1] > 0.5) == masks[0, 1]).float().mean() > 0.97
    disc = layout_module()(tokens, positions, valid, 32, 32)
    assert ((disc[0, 0] > 0.5) == masks[0, 0]).float().mean() < 0.95  # the disc layout misses the outline
    with pytest.raises(ValueError, match="silhouettes"):
        layout(tokens, positions, valid, 32, 32)


@pytest.mark.parametrize("kwargs, message", [({"shape": "box"}, "shape: 'box'"),
                                             ({"silhouette_size": 0}, "silhouette_size"),
                                             ({"silhouette_extent": 0.0}, "silhouette_extent")])
def test_bad_layout_shape_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenLayout(4, channels=2, **kwargs)


def test_a_removed_regions_hole_in_a_silhouette_layout_shows_the_largest_region():
    layout = layout_module(shape="silhouette", silhouette_size=48)
    masks = torch.zeros(1, 2, 32, 32, dtype=torch.bool)
    masks[0, 0, 10:18, 10:18] = True
    masks[0, 1] = ~masks[0, 0]  # the background, with a hole where the object is
    positions = region_positions(masks)
    silhouettes = region_silhouettes(masks, positions, 48, 1.5)
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    removed = layout(tokens, positions, torch.tensor([[False, True]]), 32, 32, silhouettes)
    assert removed[0, 1, 14, 14] > 0.99 and removed[0, 0].abs().max() < 1e-6  # the hole shows the background
    empty = layout(tokens, positions, torch.tensor([[False, False]]), 32, 32, silhouettes)
    assert empty.abs().max() == 0
