"""Reader of shapes-world benchmark exports: PIE-Bench's layout plus exact ground truth.

``python -m datamodules.shapes export`` writes the folder; its format is documented in
``interpedit.shapes.export``. On top of PIE-Bench's fields (read by ``interpedit.benchmarks.pie_bench``) an entry
needs ``target_image_path``, ``source_labels_path``, ``target_labels_path`` (relative to the root, same size as
the source image), ``edit`` (``type``, ``params``, ``objects``, ``target_indices``), ``source_objects`` and
``target_objects`` (attributes plus a COCO RLE ``footprint`` of the image's size), ``resolution``, ``background``
and ``supersample`` (with the target objects they re-render the target, which shape accuracy needs); captions and
seeds are not needed to read it back.

A mapping file is a shapes export when its entries have ``target_image_path`` (``is_shapes_mapping``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from interpedit.benchmarks.edit_sample import (
    BenchmarkError,
    EditSample,
    ShapesGroundTruth,
    image_size,
    read_json_object,
    require,
    resolve_inside,
)
from interpedit.benchmarks.pie_bench import MAPPING_FILE, parse_pie_bench_entry
from interpedit.data.annotations import rle_run_lengths
from interpedit.data.image_io import ImageLoadError, open_verified
from interpedit.masks.rle import coco_rle_to_mask
from interpedit.shapes.edits import EDIT_TYPE_IDS
from interpedit.shapes.scene import Background, ShapeObject

SHAPES_MARKER_KEY = "target_image_path"
"""The field whose presence in a mapping file's entries makes it a shapes export."""


def is_shapes_mapping(mapping: dict[str, Any], source: Path) -> bool:
    """Whether a parsed ``mapping_file.json`` is a shapes export (its entries have ``target_image_path``).

    Raises:
        BenchmarkError: some entries have it and others do not.
    """
    marked = [isinstance(entry, dict) and SHAPES_MARKER_KEY in entry for entry in mapping.values()]
    if all(marked):
        return True
    if any(marked):
        first_plain = next(entry_id for entry_id, flag in zip(mapping, marked) if not flag)
        raise BenchmarkError(
            source,
            f"entry {first_plain!r}: missing key {SHAPES_MARKER_KEY!r}, which other entries have; a shapes export "
            "needs it in every entry (or read the folder with format 'pie_bench' to ignore the ground truth)",
        )
    return False


def read_shapes_benchmark(root: str | Path) -> list[EditSample]:
    """Index a shapes benchmark export.

    Args:
        root: the export folder.

    Returns:
        One sample per entry, in the file's order, with ``shapes`` ground truth.

    Raises:
        BenchmarkError: naming ``mapping_file.json`` and the entry, for anything ``read_pie_bench`` refuses, and
            for missing or malformed ground-truth fields, missing files, sizes that disagree with the source
            image, object indices out of range, or an edit type that disagrees with ``editing_type_id``.
    """
    root = Path(root)
    source = root / MAPPING_FILE
    mapping = read_json_object(source)
    samples = []
    for entry_id, entry in mapping.items():
        sample = parse_pie_bench_entry(root, entry_id, entry, source=source)
        ground_truth = _parse_ground_truth(root, entry_id, entry, sample, source)
        samples.append(dataclasses.replace(sample, shapes=ground_truth))
    return samples


def _parse_ground_truth(
    root: Path, entry_id: str, entry: dict[str, Any], sample: EditSample, source: Path
) -> ShapesGroundTruth:
    where = f"entry {entry_id!r}"
    size = (sample.height, sample.width)
    paths = {}
    for key in ("target_image_path", "source_labels_path", "target_labels_path"):
        relative = require(entry, key, str, source=source, where=where)
        path = resolve_inside(root, relative, source=source, where=f"{where}: {key!r}")
        found = image_size(path, source=source, where=f"{where}: {key!r}")
        if found != size:
            raise BenchmarkError(
                source,
                f"{where}: {key!r} {path.name} is {found[0]}x{found[1]} but the source image is "
                f"{size[0]}x{size[1]} (height x width)",
            )
        paths[key] = path
    resolution = require(entry, "resolution", int, source=source, where=where)
    if size != (resolution, resolution):
        raise BenchmarkError(
            source, f"{where}: 'resolution' is {resolution} but the source image is {size[0]}x{size[1]}"
        )

    edit = require(entry, "edit", dict, source=source, where=where)
    edit_where = f"{where}: 'edit'"
    edit_name = require(edit, "type", str, source=source, where=edit_where)
    if edit_name not in EDIT_TYPE_IDS:
        raise BenchmarkError(
            source, f"{edit_where}: unknown type {edit_name!r}; expected one of {', '.join(EDIT_TYPE_IDS)}"
        )
    if EDIT_TYPE_IDS[edit_name] != sample.edit_type_id:
        raise BenchmarkError(
            source,
            f"{where}: 'editing_type_id' {sample.edit_type_id!r} disagrees with the edit type {edit_name!r} "
            f"(id {EDIT_TYPE_IDS[edit_name]!r})",
        )
    params = require(edit, "params", dict, source=source, where=edit_where)
    source_objects, source_footprints = _parse_objects(entry, "source_objects", size, source, where)
    target_objects, target_footprints = _parse_objects(entry, "target_objects", size, source, where)
    source_indices = _parse_indices(edit, "objects", len(source_objects), source, edit_where)
    target_indices = _parse_indices(edit, "target_indices", len(target_objects), source, edit_where)
    background = _parse_background(entry, source, where)
    supersample = require(entry, "supersample", int, source=source, where=where)
    if supersample < 1:
        raise BenchmarkError(source, f"{where}: 'supersample' is {supersample}, expected a positive integer")
    return ShapesGroundTruth(
        target_image=paths["target_image_path"],
        source_labels=paths["source_labels_path"],
        target_labels=paths["target_labels_path"],
        edit_name=edit_name,
        params=params,
        source_indices=source_indices,
        target_indices=target_indices,
        source_objects=source_objects,
        target_objects=target_objects,
        source_footprints=source_footprints,
        target_footprints=target_footprints,
        background=background,
        supersample=supersample,
    )


def _parse_background(entry: dict[str, Any], source: Path, where: str) -> Background:
    data = require(entry, "background", dict, source=source, where=where)
    try:
        return Background.from_dict(data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise BenchmarkError(source, f"{where}: 'background': {problem}") from exc


def _parse_objects(
    entry: dict[str, Any], key: str, size: tuple[int, int], source: Path, where: str
) -> tuple[tuple[ShapeObject, ...], tuple[dict[str, Any], ...]]:
    objects, footprints = [], []
    for index, data in enumerate(require(entry, key, list, source=source, where=where)):
        object_where = f"{where}: {key}[{index}]"
        footprint = require(data, "footprint", dict, source=source, where=object_where)
        declared = footprint.get("size")
        if not isinstance(declared, list) or tuple(declared) != size:
            raise BenchmarkError(
                source, f"{object_where}: 'footprint' size {declared} is not the image's [{size[0]}, {size[1]}]"
            )
        _check_coco_counts(footprint.get("counts"), size, source, f"{object_where}: 'footprint'")
        try:
            objects.append(ShapeObject.from_dict(data))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise BenchmarkError(source, f"{object_where}: {problem}") from exc
        footprints.append(footprint)
    return tuple(objects), tuple(footprints)


def _check_coco_counts(counts: Any, size: tuple[int, int], source: Path, where: str) -> None:
    """COCO RLE runs must cover exactly the image: pycocotools writes past its buffer on longer ones."""
    if isinstance(counts, str):
        try:
            total = int(rle_run_lengths(counts).sum())
        except ValueError as exc:
            raise BenchmarkError(source, f"{where}: COCO RLE counts: {exc}") from exc
    elif isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        total = sum(counts)
    else:
        raise BenchmarkError(source, f"{where}: COCO RLE 'counts' must be a string or a list of non-negative integers")
    if total != size[0] * size[1]:
        raise BenchmarkError(
            source,
            f"{where}: COCO RLE runs sum to {total} pixels but the {size[0]}x{size[1]} image has {size[0] * size[1]}",
        )


def _parse_indices(edit: dict[str, Any], key: str, count: int, source: Path, where: str) -> tuple[int, ...]:
    values = require(edit, key, list, source=source, where=where)
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
            raise BenchmarkError(
                source, f"{where}: {key!r} holds {value!r}, not an index of the scene's {count} objects"
            )
    return tuple(values)


def read_label_map(path: Path, *, source: Path, where: str) -> np.ndarray:
    """An instance-label PNG as an (H, W) int64 array (0 = background, ``i + 1`` = object ``i``).

    Raises:
        BenchmarkError: unreadable file, or not a single-channel image.
    """
    try:
        image = open_verified(path)
    except ImageLoadError as exc:
        raise BenchmarkError(source, f"{where}: {exc.reason}: {path}") from exc
    with image:
        if image.mode not in ("L", "I", "I;16", "I;16L", "I;16B"):
            raise BenchmarkError(source, f"{where}: label map {path} has mode {image.mode}, not single-channel")
        return np.asarray(image).astype(np.int64)


def decode_footprint(footprint: dict[str, Any], *, source: Path, where: str) -> np.ndarray:
    """A footprint's COCO RLE as an (H, W) bool array.

    Raises:
        BenchmarkError: the RLE does not decode to its declared size.
    """
    try:
        return coco_rle_to_mask(footprint, where=where)
    except ValueError as exc:
        raise BenchmarkError(source, str(exc)) from exc
