"""Properties of the committed shapes region autoencoder (``pretrained/shapes_region_autoencoder``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from interpedit.editing.region_autoencoder_edit import label_map_regions
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


def test_a_regions_token_does_not_change_when_another_regions_pixels_change(model):
    pairs = recoloured_pairs(24, seed=2026)
    before_images, labels = images_and_labels([p[0] for p in pairs])
    after_images, _ = images_and_labels([p[1] for p in pairs])
    masks, valid = label_map_regions(labels, num_objects=4)
    with torch.no_grad():
        before = model.encode(before_images, masks, valid).appearance
        after = model.encode(after_images, masks, valid).appearance
    cosine = torch.nn.functional.cosine_similarity(before, after, dim=-1)
    others = valid.clone()
    for row, (_, _, changed) in enumerate(pairs):
        others[row, changed] = False
    untouched = cosine[others]
    assert untouched.numel() > 24
    assert float(untouched.min()) >= 0.9, f"lowest cosine of an untouched region's token: {float(untouched.min()):.3f}"
    # The bar is not met by tokens that all look alike: each untouched token is still nearer its own region's
    # token before the change than any other region's token of that image.
    cross = torch.nn.functional.cosine_similarity(after[:, :, None], before[:, None, :], dim=-1)  # (B, K, K)
    cross = cross.masked_fill(~valid[:, None, :], -2.0)
    assert bool((cross.argmax(dim=-1) == torch.arange(valid.shape[1]))[others].all())
    # ...while the recoloured region's own token does change.
    changed_cos = torch.stack([cosine[row, changed] for row, (_, _, changed) in enumerate(pairs)])
    assert float(changed_cos.mean()) < float(untouched.mean())
