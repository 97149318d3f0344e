"""Paired views: masks stay on their pixels through every augmentation; absent regions are marked."""

from __future__ import annotations

import pytest
import torch

from interpedit.data.paired_views import PairedViews
from interpedit.data.regions import boxes_from_masks
from tests.segmented_folder_builders import REGION_COLOURS, erode, paint_regions, rectangle_masks

KEYS = [f"{view}_{key}" for view in ("source", "target") for key in ("image", "masks", "region_valid", "boxes")]


def scene(height=96, width=128):
    """Four flat-coloured rectangles on black: (image (3, H, W) float in [0, 1], masks (4, H, W) bool)."""
    masks = rectangle_masks(height, width, [(5, 8, 50, 60), (60, 4, 120, 40), (70, 50, 110, 90), (20, 70, 40, 92)])
    image = torch.from_numpy(paint_regions(masks)).permute(2, 0, 1).float() / 255
    return image, torch.from_numpy(masks)


@pytest.mark.parametrize("degrees", [0.0, 15.0])
def test_masks_stay_aligned_with_their_colours(degrees):
    image, masks = scene()
    views = PairedViews((64, 80), scale=(0.3, 1.0), flip_probability=0.5, degrees=degrees)
    colours = torch.from_numpy(REGION_COLOURS[:4]).float() / 255
    checked = 0
    for seed in range(12):
        out = views(image, masks, generator=seed)
        for view in ("source", "target"):
            view_image, view_masks = out[f"{view}_image"], out[f"{view}_masks"]
            # Bilinear resampling blends colours across an edge by one pixel; a rotation resamples the
            # already resized image once more, hence two pixels. Beyond that the colour must be exact.
            inside = erode(view_masks, 2 if degrees else 1)
            for k in range(masks.shape[0]):
                if inside[k].any():
                    pixels = view_image[:, inside[k]]  # (3, n)
                    assert (pixels - colours[k][:, None]).abs().max() < 1e-3, (seed, view, k)
                    checked += 1
            # The converse: a pixel of region k's exact colour, away from edges, is inside mask k.
            for k in range(masks.shape[0]):
                exact = ((view_image - colours[k][:, None, None]).abs().max(dim=0).values < 1e-3)
                assert view_masks[k][erode(exact[None])[0]].all(), (seed, view, k)
    assert checked > 50


def test_mask_edges_match_the_image_at_large_downscaling():
    # A vertical edge, downscaled 4x over the whole image: a pixel is more than half red exactly when the
    # source pixel under its centre is red (nearest-exact); plain nearest is shifted by 1.5 source pixels.
    height, width = 32, 128
    for edge in range(40, 56):
        masks = torch.zeros(1, height, width, dtype=torch.bool)
        masks[0, :, :edge] = True
        image = torch.zeros(3, height, width)
        image[0] = masks[0].float()
        views = PairedViews((8, 32), scale=(1.0, 1.0), ratio=(4.0, 4.0), flip_probability=0.0)
        out = views(image, masks, generator=0)
        red = out["source_image"][0]
        decided = (red - 0.5).abs() > 1e-3
        assert torch.equal(out["source_masks"][0][decided], (red > 0.5)[decided]), edge


def test_flip_moves_a_left_region_to_the_right():
    image, masks = scene(64, 64)
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 10:30, 2:20] = True
    views = PairedViews(64, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_probability=1.0)
    out = views(image, masks, generator=0)
    assert out["source_boxes"][0].tolist() == [44.0, 10.0, 62.0, 30.0]
    assert torch.equal(out["source_masks"][0], masks[0].flip(-1))
    assert torch.equal(out["source_image"], image.flip(-1))


def test_cropped_away_region_is_marked_absent():
    image, _ = scene(64, 64)
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 0:4, 0:4] = True  # a corner region most crops miss
    masks[1, 28:36, 28:36] = True  # the centre, in every crop of half the side
    views = PairedViews(32, scale=(0.25, 0.25), ratio=(1.0, 1.0), flip_probability=0.0)
    absent = 0
    for seed in range(20):
        out = views(image, masks, region_valid=torch.tensor([True, True]), generator=seed)
        for view in ("source", "target"):
            valid, view_masks, boxes = out[f"{view}_region_valid"], out[f"{view}_masks"], out[f"{view}_boxes"]
            assert valid[1]
            assert torch.equal(valid, view_masks.flatten(1).any(dim=1))
            if not valid[0]:
                absent += 1
                assert boxes[0].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert absent > 10


def test_padding_slots_stay_absent_and_boxes_come_from_masks():
    image, masks = scene()
    valid = torch.tensor([True, False, True, True])
    out = PairedViews(48, degrees=10.0)(image, masks, region_valid=valid, generator=1)
    for view in ("source", "target"):
        assert not out[f"{view}_region_valid"][1] and not out[f"{view}_masks"][1].any()
        assert torch.equal(out[f"{view}_boxes"], boxes_from_masks(out[f"{view}_masks"]))


def test_min_region_pixels_and_fraction():
    height, width = 64, 64
    image = torch.zeros(3, height, width)
    image[0, :, :32] = 1.0  # the region is painted red, so its visible area can be counted in the view
    masks = torch.zeros(1, height, width, dtype=torch.bool)
    masks[0, :, :32] = True
    # Crops are 64 high and 32 wide (scale 0.5, ratio 0.5), kept at that size: the visible part of the
    # region is (32 - left) columns, a fraction (32 - left) / 32 of it.
    views = PairedViews((64, 32), scale=(0.5, 0.5), ratio=(0.5, 0.5), flip_probability=0.0, min_region_fraction=0.5)
    outcomes = set()
    for seed in range(30):
        out = views(image, masks, generator=seed)
        visible = int((out["source_image"][0] > 0.5).sum())
        assert bool(out["source_region_valid"][0]) == (visible >= 0.5 * 2048), seed
        outcomes.add(bool(out["source_region_valid"][0]))
    assert outcomes == {True, False}
    big = PairedViews((64, 32), scale=(0.5, 0.5), ratio=(0.5, 0.5), flip_probability=0.0, min_region_pixels=1500)
    for seed in range(10):
        out = big(image, masks, generator=seed)
        visible = int((out["source_image"][0] > 0.5).sum())
        assert bool(out["source_region_valid"][0]) == (visible >= 1500)


def test_reproducible_independent_and_leaves_global_rng_alone():
    image, masks = scene()
    views = PairedViews(40, degrees=10.0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = views(image, masks, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    again = views(image, masks, generator=5)
    other = views(image, masks, generator=6)
    assert sorted(first) == sorted(KEYS)
    assert all(torch.equal(first[key], again[key]) for key in KEYS)
    assert not torch.equal(first["source_image"], other["source_image"])
    assert not torch.equal(first["source_image"], first["target_image"])
    assert first["source_masks"].dtype == torch.bool and first["source_boxes"].dtype == torch.float32
    assert first["source_image"].shape == (3, 40, 40) and first["target_masks"].shape == (4, 40, 40)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="scale"):
        PairedViews(32, scale=(0.0, 1.0))
    image, masks = scene()
    with pytest.raises(ValueError, match="masks must be"):
        PairedViews(32)(image, masks[:, :10])


def test_crops_and_flips_give_the_target_positions_of_the_crop_geometry():
    """Each view's region positions are where the crop (and flip) put the region: read the crop window back from a
    coordinate ramp in the image and transform the region's original centroid and size by it."""
    from interpedit.region import region_positions

    side, out = 64, 32
    columns = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    image = torch.stack([columns.expand(side, side), columns[:, None].expand(side, side), torch.zeros(side, side)])
    masks = torch.zeros(1, side, side, dtype=torch.bool)
    masks[0, 28:38, 26:34] = True  # centroid (30, 33) pixels, inside every crop below
    views = PairedViews(out, scale=(0.5, 0.5), ratio=(1.0, 1.0), flip_probability=0.5)
    flips = 0
    for seed in range(12):
        result = views(image, masks, generator=seed)
        for view in ("source", "target"):
            ramp_x, ramp_y = result[f"{view}_image"][0], result[f"{view}_image"][1]
            flipped = bool(ramp_x[0, -1] < ramp_x[0, 0])
            flips += flipped
            xs = ramp_x[0].flip(0) if flipped else ramp_x[0]
            # Linear ramps survive bilinear resizing: pixel j of the view samples x = left + (j + 0.5) * width / out.
            step = (xs[-2] - xs[1]) / (out - 3)
            left, top = xs[1] - 1.5 * step, ramp_y[1, 0] - 1.5 * (ramp_y[-2, 0] - ramp_y[1, 0]) / (out - 3)
            width = step * out
            expected_x = (30.0 / side - left) / width
            expected_y = (33.0 / side - top) / width
            if flipped:
                expected_x = 1.0 - expected_x
            expected_size = (10 * 8 / side**2) ** 0.5 / width
            found = region_positions(result[f"{view}_masks"][None])[0, 0]
            # Nearest-exact mask resizing moves an edge by at most half an output pixel.
            assert abs(found[0] - expected_x) < 1.0 / out, (seed, view)
            assert abs(found[1] - expected_y) < 1.0 / out, (seed, view)
            assert abs(found[2] - expected_size) < 0.1 * expected_size, (seed, view)
    assert 0 < flips < 24
