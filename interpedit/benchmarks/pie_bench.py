"""PIE-Bench reader (Ju et al., ICLR 2024; ``cure-lab/PnPInversion``).

Layout::

    root/mapping_file.json                      {id: entry}, read in the file's order
    root/annotation_images/<image_path>         source images (PIE-Bench's are 512x512)

Entry fields (all required; others are ignored here):

- ``image_path``: the source image, relative to ``root/annotation_images``; it may not leave that folder.
- ``original_prompt`` / ``editing_prompt``: prompts with the edited words in ``[brackets]``.
- ``editing_instruction``: the edit as an instruction.
- ``editing_type_id``: a string (``"0"``..``"9"``; an integer is read as its string) naming a type of
  ``interpedit.benchmarks.edit_types`` (shapes exports add ``"10"``-``"12"``).
- ``blended_word``: ``"<source word> <target word>"`` for local blending, possibly ``""``.
- ``mask``: RLE ``[start, length, ...]`` over the row-major flattened image at its own size (read from the image
  header), 1 = the region to edit. Runs must be sorted, disjoint and inside the image; PIE-Bench's decoder would
  clip or merge bad runs silently, so they are refused here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from interpedit.benchmarks.edit_sample import (
    BenchmarkError,
    EditSample,
    image_size,
    read_json_object,
    require,
    resolve_inside,
)
from interpedit.benchmarks.edit_types import EDIT_TYPE_NAMES, LEARNABLE_REGIONS_EDIT_TYPE_ID
from interpedit.data.image_io import DataFileError
from interpedit.masks.rle import pie_rle_to_mask

MAPPING_FILE = "mapping_file.json"
"""PIE-Bench's index, relative to the root."""

IMAGES_DIR = "annotation_images"
"""Folder that ``image_path`` is relative to."""


def read_pie_bench(root: str | Path) -> list[EditSample]:
    """Index a PIE-Bench folder.

    Args:
        root: folder holding ``mapping_file.json`` and ``annotation_images/``.

    Returns:
        One sample per entry, in the file's order.

    Raises:
        BenchmarkError: naming ``mapping_file.json`` and the entry id, for malformed JSON, a missing key or wrong
            type, an unknown edit type id, a missing image, an image path leaving ``annotation_images``, or an
            RLE mask that does not fit the image.
    """
    root = Path(root)
    source = root / MAPPING_FILE
    mapping = read_json_object(source)
    return [parse_pie_bench_entry(root, entry_id, entry, source=source) for entry_id, entry in mapping.items()]


def parse_pie_bench_entry(root: Path, entry_id: str, entry: Any, *, source: Path) -> EditSample:
    """Check one ``mapping_file.json`` entry and index it (PIE-Bench fields only).

    Args:
        root: the benchmark folder.
        entry_id: the entry's key.
        entry: its JSON value.
        source: the mapping file, named by errors.
    """
    where = f"entry {entry_id!r}"
    fields = {
        key: require(entry, key, str, source=source, where=where)
        for key in ("image_path", "original_prompt", "editing_prompt", "editing_instruction", "blended_word")
    }
    image_path = resolve_inside(
        root / IMAGES_DIR, fields["image_path"], source=source, where=f"{where}: 'image_path'"
    )
    height, width = image_size(image_path, source=source, where=f"{where}: 'image_path'")
    rle = check_pie_rle(
        require(entry, "mask", list, source=source, where=where), height, width, source=source, where=where
    )
    return EditSample(
        image_id=entry_id,
        image_path=image_path,
        height=height,
        width=width,
        source_prompt_bracketed=fields["original_prompt"],
        target_prompt_bracketed=fields["editing_prompt"],
        instruction=fields["editing_instruction"],
        blended_word=fields["blended_word"],
        edit_type_id=parse_edit_type_id(entry, source=source, where=where),
        mask_rle=rle,
        benchmark_file=source,
    )


def parse_edit_type_id(entry: dict[str, Any], *, source: Path, where: str) -> str:
    """``entry["editing_type_id"]`` as a known id string.

    Raises:
        BenchmarkError: missing, not a string or integer, or not a PIE-Bench or shapes edit type.
    """
    value = require(entry, "editing_type_id", (str, int), source=source, where=where)
    type_id = str(value)
    if type_id not in EDIT_TYPE_NAMES or type_id == LEARNABLE_REGIONS_EDIT_TYPE_ID:
        known = ", ".join(k for k in EDIT_TYPE_NAMES if k != LEARNABLE_REGIONS_EDIT_TYPE_ID)
        raise BenchmarkError(source, f"{where}: unknown 'editing_type_id' {value!r}; known ids: {known}")
    return type_id


def check_pie_rle(rle: list[Any], height: int, width: int, *, source: Path, where: str) -> tuple[int, ...]:
    """Check a PIE-Bench RLE against an image size.

    Args:
        rle: ``[start, length, ...]``.
        height, width: the image's size.
        source: the mapping file, named by errors.
        where: the entry in words.

    Returns:
        The RLE as a tuple of ints.

    Raises:
        BenchmarkError: odd length, non-integers, negative values, runs out of order or overlapping, or a run
            past the ``height * width`` pixels.
    """
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in rle):
        raise BenchmarkError(source, f"{where}: 'mask' RLE values must be integers")
    if len(rle) % 2:
        raise BenchmarkError(source, f"{where}: 'mask' RLE needs (start, length) pairs but has {len(rle)} values")
    pixels = height * width
    previous_end = 0
    for run, (start, length) in enumerate(zip(rle[0::2], rle[1::2])):
        if start < 0 or length < 0:
            raise BenchmarkError(
                source, f"{where}: 'mask' run {run} has start {start} and length {length}; both must be >= 0"
            )
        if start < previous_end:
            raise BenchmarkError(
                source,
                f"{where}: 'mask' run {run} starts at pixel {start}, before the previous run ends at pixel "
                f"{previous_end}; runs must be sorted and must not overlap",
            )
        if start + length > pixels:
            raise BenchmarkError(
                source,
                f"{where}: 'mask' run {run} covers pixels {start}..{start + length - 1} but the {height}x{width} "
                f"image has only {pixels}",
            )
        previous_end = start + length
    return tuple(rle)


def decode_mask(sample: EditSample) -> np.ndarray:
    """The region to edit of a sample with a mask, at the image's size. (H, W) bool."""
    if sample.mask_rle is None:
        raise DataFileError(sample.benchmark_file, f"entry {sample.image_id!r} has no mask")
    where = f"{sample.benchmark_file}: entry {sample.image_id!r}: 'mask'"
    return pie_rle_to_mask(sample.mask_rle, sample.height, sample.width, where=where)
