"""The shapes world renderer: exact ground truth, anti-aliasing, pixel-exact moves, captions and vocabulary."""

import itertools
import math

import numpy as np
import pytest

from interpedit.shapes import (
    COLOURS,
    PALETTE,
    SHAPES,
    Background,
    Scene,
    SceneConfig,
    ShapeObject,
    caption,
    render,
    render_background,
    sample_scene,
    visible_fractions,
    vocabulary,
)
from interpedit.shapes.attributes import BACKGROUND_MIN_PALETTE_DISTANCE, SIZE_RADII
from interpedit.shapes.attributes import position_phrase

GREY = Background(kind="solid", colours=((120, 118, 125),))


def scenes(count, config=None, namespace=9):
    for index in range(count):
        yield sample_scene(np.random.default_rng(np.random.SeedSequence([namespace, index])), config)


def test_same_seed_same_scene_and_pixels():
    first = sample_scene(np.random.default_rng(np.random.SeedSequence([0, 0, 7])))
    second = sample_scene(np.random.default_rng(np.random.SeedSequence([0, 0, 7])))
    assert first == second
    np.testing.assert_array_equal(render(first).image, render(second).image)
    other = sample_scene(np.random.default_rng(np.random.SeedSequence([0, 0, 8])))
    assert other != first


def test_sampled_scenes_keep_their_guarantees():
    config = SceneConfig(min_objects=2, max_objects=5, min_visible_fraction=0.4)
    counts = set()
    for scene in scenes(150, config):
        counts.add(len(scene.objects))
        assert all(obj.fits_in_frame() for obj in scene.objects)
        assert np.all(visible_fractions(scene.objects) >= 0.4)
        keys = [(o.size, o.colour, o.shape, position_phrase(o.position)) for o in scene.objects]
        assert len(set(keys)) == len(keys)
        for obj in scene.objects:
            low, high = SIZE_RADII[obj.size]
            assert low <= obj.radius <= high
    assert counts == {2, 3, 4, 5}


def test_label_map_follows_the_majority_rule_and_coverage_is_a_partition():
    for scene in scenes(40):
        result = render(scene, 32)
        coverage = result.coverage
        assert coverage.min() >= 0 and coverage.sum(axis=0).max() <= 1.0 + 1e-6
        for index in range(len(scene.objects)):
            np.testing.assert_array_equal(result.labels == index + 1, coverage[index] > 0.5)
        no_majority = (coverage <= 0.5).all(axis=0) if len(scene.objects) else np.ones((32, 32), bool)
        np.testing.assert_array_equal(result.labels == 0, no_majority)
        expected = result.labels[None] == np.arange(1, len(scene.objects) + 1)[:, None, None]
        np.testing.assert_array_equal(result.masks, expected)


def test_pixels_are_exact_mixtures_of_palette_and_background():
    for scene in scenes(30):
        result = render(scene, 32)
        uncovered = result.coverage.sum(axis=0) == 0
        np.testing.assert_array_equal(result.image[uncovered], result.background[uncovered])
        for index, obj in enumerate(scene.objects):
            interior = result.coverage[index] == 1.0
            assert (result.image[interior] == PALETTE[obj.colour]).all()
        # Anti-aliasing: some pixels are shared between an object and what lies behind it.
        assert ((result.coverage > 0) & (result.coverage < 1)).any()


def test_later_objects_occlude_earlier_ones_and_occlusion_happens():
    below = ShapeObject("square", "red", 0.16, (0.45, 0.5))
    above = ShapeObject("circle", "blue", 0.1, (0.55, 0.5))
    result = render(Scene(GREY, (below, above)), 64)
    overlap_pixel = (32, int(0.5 * 64))  # inside both, the later (blue) circle wins
    assert result.labels[overlap_pixel] == 2
    assert tuple(result.image[overlap_pixel]) == PALETTE["blue"]
    assert visible_fractions([below, above])[0] < 1.0

    occluded = 0
    for scene in scenes(100, SceneConfig(min_objects=3, max_objects=4)):
        result = render(scene, 64)
        for index, obj in enumerate(scene.objects):
            alone = render(Scene(scene.background, (obj,)), 64)
            if result.coverage[index].sum() < alone.coverage[0].sum() - 1:
                occluded += 1
    assert occluded >= 10


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_have_their_radius_area_at_every_resolution(shape):
    obj = ShapeObject(shape, "green", 0.15, (0.5, 0.5), rotation=0.3)
    for resolution in (32, 64, 128, 256):
        area = render(Scene(GREY, (obj,)), resolution).coverage[0].sum() / resolution**2
        assert area == pytest.approx(math.pi * 0.15**2, rel=0.03)


def test_resolutions_render_the_same_scene():
    for scene in scenes(10, SceneConfig(min_objects=2)):
        high = render(scene, 256)
        for resolution in (32, 64, 128):
            low = render(scene, resolution)
            factor = 256 // resolution
            pooled = high.coverage.reshape(len(scene.objects), resolution, factor, resolution, factor).mean(axis=(2, 4))
            # Box-filtered fine coverage matches the coarse coverage up to the coarse sampling error (an object
            # off by one pixel would differ by 1 somewhere).
            error = np.abs(pooled - low.coverage)
            assert error.max() < 0.25 and error.sum() / low.coverage.sum() < 0.04


@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_whole_pixel_move_shifts_bit_identical_pixels(resolution):
    rng = np.random.default_rng(resolution)
    for shape in SHAPES:
        x, y = (round(v * 2**16) / 2**16 for v in rng.uniform(0.35, 0.6, size=2))
        obj = ShapeObject(shape, "orange", 0.1, (x, y), rotation=float(rng.uniform(0, 6.3)))
        shift = (5, -3)
        moved = ShapeObject(shape, "orange", 0.1, (x + shift[0] / resolution, y + shift[1] / resolution), obj.rotation)
        before, after = render(Scene(GREY, (obj,)), resolution), render(Scene(GREY, (moved,)), resolution)
        shifted = np.roll(before.image, (shift[1], shift[0]), axis=(0, 1))
        np.testing.assert_array_equal(after.image, shifted)
        np.testing.assert_array_equal(after.coverage, np.roll(before.coverage, (shift[1], shift[0]), axis=(1, 2)))
        assert (before.coverage > 0).sum() > 10


def test_backgrounds_stay_far_from_the_palette():
    palette = np.array([PALETTE[c] for c in COLOURS], float)
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(palette, 2)) >= 99
    kinds = set()
    for scene in scenes(150):
        kinds.add(scene.background.kind)
        pixels = render_background(scene.background, 32).reshape(-1, 1, 3).astype(float)
        assert np.linalg.norm(pixels - palette[None], axis=-1).min() >= BACKGROUND_MIN_PALETTE_DISTANCE
        if scene.background.kind != "solid":
            assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1
    assert kinds == {"solid", "gradient", "noise"}


def test_caption_names_attributes_and_grid_positions():
    objects = (
        ShapeObject("circle", "red", 0.07, (0.2, 0.2)),
        ShapeObject("square", "blue", 0.16, (0.5, 0.8)),
        ShapeObject("star", "yellow", 0.11, (0.5, 0.5)),
    )
    assert caption(objects) == (
        "a small red circle at the top left and a large blue square at the bottom"
        " and a medium yellow star at the center"
    )
    assert render(Scene(GREY, objects)).caption == caption(objects)
    assert caption(objects, {1: ("colour",), 2: ("all",)}) == (
        "a small red circle at the top left and a large [blue] square at the bottom"
        " and [a medium yellow star at the center]"
    )


def test_captions_use_only_vocabulary_words():
    words = set(vocabulary())
    assert all(word == word.lower() and " " not in word and word.isalnum() for word in words)
    seen = set()
    for scene in scenes(2000, SceneConfig(min_objects=0, max_objects=6)):
        tokens = caption(scene.objects).lower().split(" ")
        assert set(tokens) <= words, set(tokens) - words
        seen.update(tokens)
    assert {"top", "bottom", "center", "hexagon", "star", "purple", "cyan", "empty"} <= seen


def test_invalid_objects_are_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="object.shape: unknown shape 'blob'"):
        ShapeObject("blob", "red", 0.1, (0.5, 0.5))
    with pytest.raises(ValueError, match="object.colour"):
        ShapeObject("circle", "pink", 0.1, (0.5, 0.5))
    with pytest.raises(ValueError, match="object.position"):
        ShapeObject("circle", "red", 0.1, (1.5, 0.5))
    with pytest.raises(ValueError, match="background.colours"):
        Background(kind="gradient", colours=((1, 2, 3),))
    with pytest.raises(ValueError, match="scene config.shapes"):
        SceneConfig(shapes=("circle", "blob"))
