"""Region silhouettes: outlines in frames that follow the explicit positions, and their painting back."""

from __future__ import annotations

import pytest
import torch

from interpedit.region import region_positions
from interpedit.region.region_silhouettes import paint_silhouettes, region_silhouettes
from interpedit.shapes import Background, Scene, ShapeObject, render


def _scene_masks(side: int = 32) -> torch.Tensor:
    """(1, K, side, side) masks of a rendered three-object scene (objects, then the background)."""
    scene = Scene(
        background=Background(kind="solid", colours=((128, 128, 128),)),
        objects=(
            ShapeObject(shape="star", colour="red", radius=0.2, position=(0.35, 0.4), rotation=0.3),
            ShapeObject(shape="triangle", colour="blue", radius=0.14, position=(0.7, 0.65), rotation=1.0),
            ShapeObject(shape="square", colour="green", radius=0.08, position=(0.45, 0.5), rotation=0.2),
        ),
    )
    labels = torch.as_tensor(render(scene, side).labels)
    ids = [1, 2, 3, 0]
    return torch.stack([labels == i for i in ids])[None]


def _iou(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    inter = (first & second).flatten(-2).sum(-1).float()
    union = (first | second).flatten(-2).sum(-1).float()
    return inter / union.clamp(min=1)


def test_painting_the_silhouettes_at_their_positions_gives_the_masks_back():
    masks = _scene_masks()
    positions = region_positions(masks)
    valid = masks.flatten(2).any(-1)
    silhouettes = region_silhouettes(masks, positions, size=48, extent=1.5)
    assert silhouettes.shape == (1, 4, 48, 48) and 0 <= silhouettes.min() and silhouettes.max() <= 1
    painted = paint_silhouettes(silhouettes, positions, valid, 32, 32, extent=1.5) > 0.5
    iou = _iou(painted, masks)[0]
    assert (iou[:3] > 0.97).all(), iou  # the objects, partly occluded ones included
    assert iou[3] > 0.95, iou  # the background, the largest region


def test_a_silhouette_does_not_depend_on_where_the_region_is():
    masks = _scene_masks()
    shifted = torch.roll(masks[:, :1], shifts=(4, 6), dims=(-2, -1))  # the star, 6 px right and 4 px down
    both = torch.cat([masks[:, :1], shifted], dim=1)
    positions = region_positions(both)
    torch.testing.assert_close(positions[0, 1, :2] - positions[0, 0, :2], torch.tensor([6 / 32, 4 / 32]))
    silhouettes = region_silhouettes(both, positions, size=48, extent=1.5)
    torch.testing.assert_close(silhouettes[0, 0], silhouettes[0, 1], atol=1e-5, rtol=0)


def test_a_moved_position_paints_the_outline_at_the_new_place():
    masks = _scene_masks()[:, :1]
    positions = region_positions(masks)
    silhouettes = region_silhouettes(masks, positions, size=48)
    moved = positions.clone()
    moved[..., 0] += 6 / 32
    moved[..., 1] += 4 / 32
    painted = paint_silhouettes(silhouettes, moved, torch.ones(1, 1, dtype=torch.bool), 32, 32) > 0.5
    expected = torch.roll(masks, shifts=(4, 6), dims=(-2, -1))
    assert _iou(painted, expected).item() > 0.97


def test_empty_and_invalid_slots_paint_nothing():
    masks = _scene_masks()
    masks[:, 1] = False
    positions = region_positions(masks)
    silhouettes = region_silhouettes(masks, positions)
    assert silhouettes[0, 1].abs().sum() == 0
    valid = torch.tensor([[True, True, False, True]])
    painted = paint_silhouettes(silhouettes, positions, valid, 32, 32)
    assert painted[0, 1].abs().sum() == 0 and painted[0, 2].abs().sum() == 0 and painted[0, 0].sum() > 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: region_silhouettes(torch.zeros(1, 2, 8, 8, dtype=torch.bool), torch.zeros(1, 3, 3)), "positions"),
        (lambda: region_silhouettes(torch.zeros(1, 2, 8, 8, dtype=torch.bool), torch.zeros(1, 2, 3), size=0), "size"),
        (lambda: paint_silhouettes(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 3), torch.ones(1, 3, dtype=torch.bool),
                                   8, 8), "valid"),
    ],
)
def test_mismatched_shapes_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
