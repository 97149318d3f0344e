"""PIE-Bench and COCO run-length encodings: round trips, agreement with the reference decoders, errors."""

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from interpedit.masks.rle import coco_rle_to_mask, mask_to_coco_rle, mask_to_pie_rle, pie_rle_to_mask


def random_masks():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (3, 5), (7, 4), (32, 32), (17, 40)]
    masks = [np.zeros((4, 6), bool), np.ones((4, 6), bool)]
    corners = np.zeros((5, 7), bool)
    corners[0, 0] = corners[-1, -1] = corners[2, -1] = corners[3, 0] = True  # runs crossing row ends
    masks.append(corners)
    for shape in shapes:
        for density in (0.1, 0.5, 0.9):
            masks.append(rng.random(shape) < density)
    return masks


def reference_pie_decode(encoded, height, width):
    # PnPInversion's evaluation/evaluate.py `mask_decode`, without its border forcing (a metric choice).
    length = height * width
    mask_array = np.zeros((length,))
    for i in range(0, len(encoded), 2):
        splice_len = min(encoded[i + 1], length - encoded[i])
        for j in range(splice_len):
            mask_array[encoded[i] + j] = 1
    return mask_array.reshape(height, width)


def test_pie_rle_round_trips_and_matches_the_reference_decoder():
    for mask in random_masks():
        rle = mask_to_pie_rle(mask)
        assert all(isinstance(v, int) for v in rle)
        np.testing.assert_array_equal(pie_rle_to_mask(rle, *mask.shape), mask)
        np.testing.assert_array_equal(reference_pie_decode(rle, *mask.shape).astype(bool), mask)


def test_pie_rle_is_row_major_runs_of_ones():
    mask = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1]], bool)
    # Flattened row-major: 0 1 1 1 0 0 0 0 1 -> one run of three from 1, one of one from 8.
    assert mask_to_pie_rle(mask) == [1, 3, 8, 1]
    assert mask_to_pie_rle(np.zeros((2, 2), bool)) == []


def test_pie_rle_agrees_with_pycocotools_on_the_transposed_mask():
    # COCO runs are column-major, so PIE-Bench's row-major runs of M are COCO runs of M.T (size [W, H]).
    for mask in random_masks():
        height, width = mask.shape
        rle = mask_to_pie_rle(mask)
        counts, position = [], 0
        for start, length in zip(rle[0::2], rle[1::2]):
            counts += [start - position, length]
            position = start + length
        counts.append(height * width - position)
        coco = coco_mask.frPyObjects({"size": [width, height], "counts": counts}, width, height)
        np.testing.assert_array_equal(coco_mask.decode(coco).astype(bool), mask.T)


def test_coco_rle_round_trips_and_is_what_pycocotools_writes():
    for mask in random_masks():
        rle = mask_to_coco_rle(mask)
        assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
        np.testing.assert_array_equal(coco_rle_to_mask(rle), mask)
        reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle["counts"] == reference["counts"].decode("ascii")
        assert coco_mask.area(reference) == mask.sum()


def test_coco_rle_decodes_uncompressed_counts():
    mask = np.array([[1, 0, 0], [1, 1, 0]], bool)
    # Column-major: 1 1 | 0 1 | 0 0 -> counts start with zeros: 0 zeros, 2 ones, 1 zero, 1 one, 2 zeros.
    np.testing.assert_array_equal(coco_rle_to_mask({"size": [2, 3], "counts": [0, 2, 1, 1, 2]}), mask)


@pytest.mark.parametrize(
    "rle, message",
    [
        ([0, 5, 20, 5], "run 1 covers pixels 20..24 but the 4x6 image has only 24"),
        ([-1, 2], "both must be >= 0"),
        ([3, -2], "both must be >= 0"),
        ([1, 2, 3], "pairs but has 3 values"),
        ([1.5, 2], "must be integers"),
    ],
)
def test_pie_rle_decode_rejects_runs_outside_the_image(rle, message):
    with pytest.raises(ValueError, match="mapping_file.json: 000000000007.mask") as error:
        pie_rle_to_mask(rle, 4, 6, where="mapping_file.json: 000000000007.mask")
    assert message in str(error.value)


def test_bad_masks_and_coco_rles_are_rejected():
    with pytest.raises(ValueError, match="expected an \\(H, W\\) mask"):
        mask_to_pie_rle(np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match="0/1 or bool"):
        mask_to_coco_rle(np.full((2, 2), 3))
    with pytest.raises(ValueError, match="mapping_file.json: footprint: COCO RLE counts sum to 5, not 2x3"):
        coco_rle_to_mask({"size": [2, 3], "counts": [0, 5]}, where="mapping_file.json: footprint")
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        coco_rle_to_mask({"counts": "abc"})
