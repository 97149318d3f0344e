"""Properties of the committed shapes region autoencoder (``pretrained/shapes_region_autoencoder``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from interpedit.editing.region_autoencoder_edit import label_map_regions
from interpedit.region.patch_masks import patch_grid_masks
from interpedit.region.pretrained import load_region_autoencoder
from interpedit.shapes import COLOURS, SceneConfig, render, sample_scene

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "pretrained" / "shapes_region_autoencoder"


@pytest.fixture(scope="module")
def model():
    return load_region_autoencoder(CHECKPOINT)


def recoloured_pairs(count: int, seed: int):
    """Scenes with 2-4 objects and the same scenes with one object recoloured: only that object's pixels change,
    every label mask stays the same."""
    rng = np.random.default_rng(seed)
    config = SceneConfig(min_objects=2, max_objects=4, backgrounds=("solid", "gradient"))
    pairs = []
    while len(pairs) < count:
        scene = sample_scene(rng, config)
        changed = int(rng.integers(len(scene.objects)))
        old = scene.objects[changed]
        colour = [c for c in COLOURS if c != old.colour][int(rng.integers(len(COLOURS) - 1))]
        objects = list(scene.objects)
        objects[changed] = dataclasses.replace(old, colour=colour)
        before, after = render(scene), render(dataclasses.replace(scene, objects=tuple(objects)))
        assert np.array_equal(before.labels, after.labels)
        pairs.append((before, after, changed))
    return pairs


def images_and_labels(renders):
    images = torch.stack([torch.from_numpy(r.image).permute(2, 0, 1).float() / 255 for r in renders])
    labels = torch.stack([torch.from_numpy(r.labels.astype(np.int64)) for r in renders])
    return images, labels


def mean_token(model, count: int = 64, seed: int = 7) -> torch.Tensor:
    """The mean appearance token over every region of ``count`` other scenes."""
    images, labels = images_and_labels([pair[0] for pair in recoloured_pairs(count, seed)])
    masks, valid = label_map_regions(labels, num_objects=4)
    with torch.no_grad():
        return model.encode(images, masks, valid).appearance[valid].mean(dim=0)


def assert_tokens_kept(cosine: torch.Tensor, apart: torch.Tensor, others: torch.Tensor, kind: str) -> None:
    """>= 0.9 for every region sharing no patch with the changed one, and for at least 95% of all untouched ones."""
    lowest = float(cosine[apart].min())
    assert lowest >= 0.9, f"lowest {kind} cosine of a token sharing no patch with the changed region: {lowest:.3f}"
    assert float((cosine[others] >= 0.9).float().mean()) >= 0.95


def test_a_regions_token_does_not_change_when_another_regions_pixels_change(model):
    """Recolour one object; every other region's appearance token keeps cosine >= 0.9 with its old token.

    Every token of the committed encoder carries one shared vector (measured: norm 499, while tokens differ from
    their mean by 22 on average), which makes raw cosines of any two tokens high. Cosines are therefore also taken
    after subtracting the mean token of 64 other scenes (``mean_token``), the same vector for every token. Tokens
    pool the ViT patches a region touches, so a small region that shares a patch with the recoloured object sees
    some of the changed pixels among its own inputs: the 0.9 bar is asserted for regions that share no patch with
    it, and over all untouched regions for at least 95%. Measured (raw / centred): lowest 1.000 / 0.996 where no
    patch is shared; 143 / 143 of 143 untouched regions >= 0.9. On seed 11 (not asserted) 140 / 139 of 140; the
    one centred miss (-0.969) is a region that shares a patch with the recoloured object.
    """
    pairs = recoloured_pairs(48, seed=2026)
    before_images, labels = images_and_labels([p[0] for p in pairs])
    after_images, _ = images_and_labels([p[1] for p in pairs])
    masks, valid = label_map_regions(labels, num_objects=4)
    with torch.no_grad():
        before = model.encode(before_images, masks, valid).appearance
        after = model.encode(after_images, masks, valid).appearance
    patches = patch_grid_masks(masks, model.encoder.features.grid_size)  # (B, K, gh, gw): patch touches region
    others, apart = valid.clone(), valid.clone()
    for row, (_, _, changed) in enumerate(pairs):
        others[row, changed] = apart[row, changed] = False
        shares = (patches[row] & patches[row, changed]).flatten(1).any(dim=1)
        apart[row] &= ~shares
    assert int(apart.sum()) > 48
    assert_tokens_kept(torch.nn.functional.cosine_similarity(before, after, dim=-1), apart, others, "raw")
    centre = mean_token(model)
    before, after = before - centre, after - centre
    cosine = torch.nn.functional.cosine_similarity(before, after, dim=-1)
    assert_tokens_kept(cosine, apart, others, "centred")
    # The bar is not met by tokens that all look alike: different regions of one image are less similar
    # (measured mean 0.615 against 0.9997 for the untouched regions; two objects of the same colour and shape do get
    # near-identical tokens).
    cross = torch.nn.functional.cosine_similarity(before[:, :, None], before[:, None, :], dim=-1)
    different = valid[:, :, None] & valid[:, None, :] & ~torch.eye(valid.shape[1], dtype=torch.bool)
    assert float(cosine[others].mean()) - float(cross[different].mean()) > 0.3
    # ...and the recoloured region's own token does change (measured mean 0.41).
    changed_cos = torch.stack([cosine[row, changed] for row, (_, _, changed) in enumerate(pairs)])
    assert float(changed_cos.mean()) < 0.5
