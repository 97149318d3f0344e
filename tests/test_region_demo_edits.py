"""The showcase edits (reconstruct, move, remove, swap), their labelled grid, and plain progress lines."""

from __future__ import annotations

import torch
from PIL import Image

from interpedit.evaluation.labelled_grid import save_labelled_grid
from interpedit.region.demo_edits import demo_edits, far_centroid
from tests.test_region_pretrained import tiny_model


def test_far_centroid_crosses_the_centre():
    positions = torch.tensor([[[0.2, 0.9, 0.1]], [[0.6, 0.4, 0.1]]])
    assert far_centroid(positions, 0).tolist() == [[0.75, 0.25], [0.25, 0.75]]


def test_demo_edits_give_every_column_and_leave_samples_without_the_regions_alone(tmp_path):
    model = tiny_model()
    images = torch.rand(2, 3, 32, 32)
    masks = torch.zeros(2, 3, 32, 32, dtype=torch.bool)
    masks[:, 0, 2:10, 2:10] = True
    masks[0, 1, 20:30, 20:30] = True  # sample 1 has no second region: its swap column is its reconstruction
    masks[:, 2] = ~(masks[:, 0] | masks[:, 1])
    valid = masks.flatten(2).any(2)
    columns = demo_edits(model, images, masks, valid, steps=2, seed=1)
    assert list(columns) == ["source", "reconstruct", "move", "remove", "swap"]
    assert all(c.shape == (2, 3, 32, 32) for c in columns.values())
    torch.testing.assert_close(columns["swap"][1], columns["reconstruct"][1])
    assert not torch.equal(columns["remove"][0], columns["reconstruct"][0])
    path = save_labelled_grid(columns, tmp_path / "grid.png", scale=2)
    with Image.open(path) as picture:
        assert picture.size == (5 * (64 + 2) + 2, 14 + 2 * (64 + 2) + 2)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
