"""Mask filtering: component labelling equals a breadth-first reference; each filter does what it says."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from interpedit.masks.filtering import MaskFilter, fill_small_holes, label_components, remove_small_islands


def reference_labels(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Breadth-first flood fill in raster order: the textbook definition, slow but obviously right."""
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    height, width = mask.shape
    labels = np.zeros(mask.shape, dtype=np.int64)
    count = 0
    for y in range(height):
        for x in range(width):
            if mask[y, x] and not labels[y, x]:
                count += 1
                labels[y, x] = count
                queue = deque([(y, x)])
                while queue:
                    cy, cx = queue.popleft()
                    for dy, dx in steps:
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                            labels[ny, nx] = count
                            queue.append((ny, nx))
    return labels, count


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("density", [0.3, 0.55, 0.8])
def test_labels_equal_breadth_first_reference(connectivity, density):
    mask = np.random.default_rng(int(density * 100) + connectivity).random((45, 61)) < density
    labels, areas = label_components(mask, connectivity)
    expected, count = reference_labels(mask, connectivity)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(areas, np.bincount(expected.ravel(), minlength=count + 1)[1:])


def test_long_snake_is_one_component():
    # A one-pixel-wide serpentine path: its diameter is most of the image, which a flood fill would need
    # as many iterations for.
    mask = np.zeros((63, 64), dtype=bool)
    mask[::2] = True
    for row in range(1, 63, 2):
        mask[row, 63 if row % 4 == 1 else 0] = True
    labels, areas = label_components(mask, 4)
    assert areas.tolist() == [int(mask.sum())]
    assert labels[mask].min() == 1


def test_diagonal_neighbours_depend_on_connectivity():
    mask = np.eye(4, dtype=bool)
    assert len(label_components(mask, 4)[1]) == 4
    assert len(label_components(mask, 8)[1]) == 1
    assert len(label_components(np.zeros((3, 3), bool))[1]) == 0
    with pytest.raises(ValueError, match="connectivity"):
        label_components(mask, 6)


def ring(size: int, hole: tuple[slice, slice]) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[2:-2, 2:-2] = True
    mask[hole] = False
    return mask


def test_fill_small_holes_fills_enclosed_holes_below_the_threshold_only():
    mask = ring(12, (slice(5, 7), slice(5, 7)))  # a 2x2 hole
    np.testing.assert_array_equal(fill_small_holes(mask, 5), ring(12, (slice(0, 0), slice(0, 0))))
    np.testing.assert_array_equal(fill_small_holes(mask, 4), mask)  # 4 pixels is not below 4


def test_background_reaching_the_border_is_not_a_hole():
    mask = np.ones((8, 8), dtype=bool)
    mask[0:2, 3] = False  # a notch open to the image border, 2 pixels
    np.testing.assert_array_equal(fill_small_holes(mask, 100), mask)
    notch = np.zeros((10, 10), dtype=bool)
    notch[2:8, 2:8] = True
    notch[2:4, 4] = False  # a notch open to the outside of the mask's bounding box
    np.testing.assert_array_equal(fill_small_holes(notch, 100), notch)


def test_hole_closed_only_diagonally_is_filled_with_8_connected_foreground():
    mask = np.zeros((7, 7), dtype=bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False
    mask[2, 2] = mask[4, 4] = False  # a diagonal line of background from the hole towards a corner
    mask[1, 1] = False
    filled = fill_small_holes(mask, 10, connectivity=8)
    # With 8-connected foreground the outline is closed, so background is 4-connected and the diagonal
    # pixels (3, 3), (4, 4), (2, 2) are separate enclosed holes; (1, 1) touches the outside.
    assert filled[3, 3] and filled[2, 2] and filled[4, 4] and not filled[1, 1]


def test_remove_small_islands_keeps_large_components_and_never_empties():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:10, 2:10] = True  # 64 pixels
    mask[15:17, 15:17] = True  # 4 pixels
    kept = remove_small_islands(mask, 10)
    assert kept[2:10, 2:10].all() and kept.sum() == 64
    only_small = np.zeros((20, 20), dtype=bool)
    only_small[1:3, 1:3] = True  # 4 pixels
    only_small[10:13, 10:13] = True  # 9 pixels
    kept = remove_small_islands(only_small, 50)
    assert kept.sum() == 9 and kept[10:13, 10:13].all()


def test_tensor_in_tensor_out():
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[1:5, 1:5] = True
    mask[2, 2] = False
    filled = fill_small_holes(mask, 2)
    assert isinstance(filled, torch.Tensor) and filled[1:5, 1:5].all()
    assert not mask[2, 2]  # the input is not modified


def stack(*boxes, size=10):
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = True
    return masks


def test_mask_filter_area_coverage_and_top_k():
    masks = stack((0, 0, 10, 10), (0, 0, 1, 1), (0, 0, 3, 3), (0, 0, 0, 0), (2, 2, 7, 7), (0, 0, 10, 9))
    kept, indices = MaskFilter()(masks)
    # Defaults: the empty mask 3 goes, and so does the whole image (coverage 1.0 > 0.9); 0.9 itself stays.
    assert indices.tolist() == [1, 2, 4, 5]
    assert torch.equal(kept, masks[indices])
    assert MaskFilter(min_area=9)(masks)[1].tolist() == [2, 4, 5]
    assert MaskFilter(min_area_fraction=0.1)(masks)[1].tolist() == [4, 5]  # 9 < 0.1 * 100 <= 25
    assert MaskFilter(max_coverage=1.0, top_k=2)(masks)[1].tolist() == [0, 5]  # the two largest, in order


def test_mask_filter_cleans_before_measuring_area():
    masks = torch.zeros(1, 20, 20, dtype=torch.bool)
    masks[0, 2:6, 2:6] = True  # 16 pixels
    masks[0, 15, 15] = True  # a one-pixel island
    kept, _ = MaskFilter(island_area=2, min_area=17)(masks)
    assert kept.shape[0] == 0  # without the island it is below min_area
    kept, _ = MaskFilter(island_area=2)(masks)
    assert kept[0].sum() == 16 and not kept[0, 15, 15]


def test_mask_filter_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_coverage"):
        MaskFilter(max_coverage=0.0)
    with pytest.raises(ValueError, match="min_area_fraction"):
        MaskFilter(min_area_fraction=2.0)
