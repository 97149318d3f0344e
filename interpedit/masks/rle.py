"""Run-length encodings of binary masks: PIE-Bench's and COCO's.

PIE-Bench (``mapping_file.json``, field ``mask``) stores ``[start, length, start, length, ...]``: 0-based starts of
runs of ones over the image flattened in row-major (C) order, 1 = the region to edit. COCO (pycocotools) counts
alternating runs of zeros and ones over the image flattened in column-major (Fortran) order, compressed to a string.

PIE-Bench's evaluation script also sets the outer border of every decoded mask to 1 before computing metrics;
that is a metric choice, not part of the encoding, so ``pie_rle_to_mask`` does not do it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask


def mask_to_pie_rle(mask: np.ndarray) -> list[int]:
    """Encode a mask as PIE-Bench RLE.

    Args:
        mask: (H, W) bool (or 0/1) array.

    Returns:
        ``[start, length, ...]`` of the runs of ones in row-major order, starts ascending.
    """
    mask = _as_binary_mask(mask, "mask_to_pie_rle")
    flat = np.concatenate([[False], mask.reshape(-1), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])  # run starts and ends alternate
    starts, ends = edges[0::2], edges[1::2]
    return np.stack([starts, ends - starts], axis=1).reshape(-1).tolist()


def pie_rle_to_mask(rle: Sequence[int], height: int, width: int, where: str = "mask") -> np.ndarray:
    """Decode PIE-Bench RLE, checking that every run lies inside the image.

    Args:
        rle: ``[start, length, ...]`` over the row-major flattened image.
        height, width: image size.
        where: names the file and field in error messages (e.g. ``"mapping_file.json: 000000000012.mask"``).

    Returns:
        (H, W) bool.

    Raises:
        ValueError: on an odd number of values, non-integers, negative values, or a run past the image's end
            (PIE-Bench's own decoder silently clips such runs).
    """
    values = list(rle)
    if len(values) % 2:
        raise ValueError(f"{where}: PIE-Bench RLE needs (start, length) pairs but has {len(values)} values")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{where}: PIE-Bench RLE values must be integers")
    pixels = height * width
    mask = np.zeros(pixels, dtype=bool)
    for pair in range(0, len(values), 2):
        start, length = int(values[pair]), int(values[pair + 1])
        if start < 0 or length < 0:
            raise ValueError(f"{where}: run {pair // 2} has start {start} and length {length}; both must be >= 0")
        if start + length > pixels:
            raise ValueError(
                f"{where}: run {pair // 2} covers pixels {start}..{start + length - 1} "
                f"but the {height}x{width} image has only {pixels}"
            )
        mask[start : start + length] = True
    return mask.reshape(height, width)


def mask_to_coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a mask as compressed COCO RLE.

    Args:
        mask: (H, W) bool (or 0/1) array.

    Returns:
        ``{"size": [H, W], "counts": str}``, JSON-serialisable.
    """
    mask = _as_binary_mask(mask, "mask_to_coco_rle")
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def coco_rle_to_mask(rle: dict[str, Any], where: str = "mask") -> np.ndarray:
    """Decode COCO RLE, compressed (``counts`` a string or bytes) or uncompressed (``counts`` a list).

    Returns:
        (H, W) bool.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"{where}: COCO RLE must be a dict with 'size' and 'counts'")
    size = rle["size"]
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in size):
        raise ValueError(f"{where}: COCO RLE size must be [height, width], got {size}")
    height, width = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, list):
        if any(not isinstance(c, (int, np.integer)) or c < 0 for c in counts):
            raise ValueError(f"{where}: uncompressed COCO RLE counts must be non-negative integers")
        if sum(counts) != height * width:
            raise ValueError(f"{where}: COCO RLE counts sum to {sum(counts)}, not {height}x{width}")
        compressed = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    elif isinstance(counts, (str, bytes)):
        compressed = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"{where}: COCO RLE counts must be a string, bytes or a list, got {type(counts).__name__}")
    decoded = coco_mask.decode(compressed)
    if decoded.shape != (height, width):
        raise ValueError(f"{where}: COCO RLE decoded to {decoded.shape}, expected ({height}, {width})")
    return decoded.astype(bool)


def _as_binary_mask(mask: np.ndarray, caller: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{caller}: expected an (H, W) mask, got shape {mask.shape}")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{caller}: mask values must be 0/1 or bool")
    return mask.astype(bool)
