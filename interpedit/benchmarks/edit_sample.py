"""One entry of an edit benchmark, as the readers index it (paths and annotations; pixels load later).

Every reader (PIE-Bench, Learnable Regions, shapes export) turns its file into a list of ``EditSample``; the
dataset (``interpedit.benchmarks.edit_benchmark_dataset``) loads the pixels of one sample at a time. Readers
check everything that is cheap up front (keys, types, files present, image sizes from the headers, RLE runs), so
a bad entry stops a run before its first batch, with a ``BenchmarkError`` naming the file and the entry.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interpedit.benchmarks.edit_types import edit_type_name
from interpedit.data.image_io import DataFileError, ImageLoadError, read_image_info
from interpedit.shapes.caption import strip_brackets
from interpedit.shapes.scene import Background, Scene, ShapeObject


class BenchmarkError(DataFileError):
    """A benchmark file, or one of its entries, that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class ShapesGroundTruth:
    """Exact ground truth of a shapes-world edit (see ``interpedit.shapes.export``).

    Attributes:
        target_image: the exact edited image.
        source_labels, target_labels: instance-label maps, 0 = background, ``i + 1`` = object ``i``.
        edit_name: the shapes edit (``"move"``, ``"recolour"``, ...).
        params: the edit's parameters, as exported.
        source_indices: edited objects in the source (empty for add).
        target_indices: the same objects in the target (empty for remove), in the same order.
        source_objects, target_objects: every object of each scene, in drawing order.
        source_footprints, target_footprints: each object's footprint as COCO RLE, same order.
        background: the scenes' background; with ``target_objects`` it re-renders the target exactly.
        supersample: the renderer's samples per pixel side the export used.
    """

    target_image: Path
    source_labels: Path
    target_labels: Path
    edit_name: str
    params: dict[str, Any]
    source_indices: tuple[int, ...]
    target_indices: tuple[int, ...]
    source_objects: tuple[ShapeObject, ...]
    target_objects: tuple[ShapeObject, ...]
    source_footprints: tuple[dict[str, Any], ...]
    target_footprints: tuple[dict[str, Any], ...]
    background: Background
    supersample: int

    @property
    def source_index(self) -> int | None:
        """The primary edited object in the source (the first one; a swap's other object mirrors it), or None."""
        return self.source_indices[0] if self.source_indices else None

    @property
    def target_index(self) -> int | None:
        """The primary edited object in the target, or None (remove)."""
        return self.target_indices[0] if self.target_indices else None

    @property
    def target_scene(self) -> Scene:
        """The scene after the edit, as rendered into the target image (``render(scene, side, supersample)``)."""
        return Scene(background=self.background, objects=self.target_objects)

    @property
    def source_scene(self) -> Scene:
        """The scene before the edit, as rendered into the source image."""
        return Scene(background=self.background, objects=self.source_objects)

    @property
    def edit(self) -> dict[str, Any]:
        """The exact edit as exported: ``type``, ``params``, ``objects`` (source indices), ``target_indices``."""
        return {
            "type": self.edit_name,
            "params": self.params,
            "objects": list(self.source_indices),
            "target_indices": list(self.target_indices),
        }

    @property
    def target_object(self) -> ShapeObject | None:
        """The primary edited object as it should look after the edit, or None (remove)."""
        index = self.target_index
        return None if index is None else self.target_objects[index]


@dataclass(frozen=True)
class EditSample:
    """One benchmark entry.

    Attributes:
        image_id: the entry's key in its file (PIE-Bench's 12-digit id, or the Learnable Regions file name).
        image_path: the source image.
        height, width: the source image's displayed size, read from its header.
        source_prompt_bracketed, target_prompt_bracketed: prompts with the edited words in ``[brackets]`` (as
            written in the file; Learnable Regions prompts have none).
        instruction: the edit as an instruction (``""`` when the benchmark has none).
        blended_word: PIE-Bench's local-blend words, ``"<source word> <target word>"`` (``""`` when absent).
        edit_type_id: a key of ``EDIT_TYPE_NAMES``.
        mask_rle: PIE-Bench RLE of the region to edit over the row-major ``height x width`` image, checked to be
            sorted, disjoint and inside the image; None when the benchmark has no masks.
        benchmark_file: the file the entry came from, named by errors raised while loading its pixels.
        shapes: exact ground truth, for shapes exports only.
    """

    image_id: str
    image_path: Path
    height: int
    width: int
    source_prompt_bracketed: str
    target_prompt_bracketed: str
    instruction: str
    blended_word: str
    edit_type_id: str
    mask_rle: tuple[int, ...] | None
    benchmark_file: Path
    shapes: ShapesGroundTruth | None = field(default=None)

    @property
    def source_prompt(self) -> str:
        """Source prompt without brackets."""
        return strip_brackets(self.source_prompt_bracketed)

    @property
    def target_prompt(self) -> str:
        """Target prompt without brackets."""
        return strip_brackets(self.target_prompt_bracketed)

    @property
    def edit_type(self) -> str:
        """Name of ``edit_type_id`` (``"change attribute color"``)."""
        return edit_type_name(self.edit_type_id)


def read_json_object(path: Path) -> dict[str, Any]:
    """Parse a benchmark JSON file whose top level is an object, refusing duplicate keys.

    Raises:
        BenchmarkError: missing, empty, malformed, not an object, or a key twice (JSON parsers keep the last one,
            which would drop an entry silently).
    """
    if not path.is_file():
        raise BenchmarkError(path, "benchmark file does not exist")
    raw = path.read_bytes()
    if not raw.strip():
        raise BenchmarkError(path, "empty benchmark file")

    def refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise BenchmarkError(path, f"malformed JSON: key {repeated[0]!r} appears more than once")
        return dict(pairs)

    try:
        data = json.loads(raw, object_pairs_hook=refuse_duplicates)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(path, f"malformed JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BenchmarkError(path, f"expected a JSON object at the top level, got {type(data).__name__}")
    if not data:
        raise BenchmarkError(path, "the benchmark has no entries")
    return data


def require(entry: Any, key: str, kind: type | tuple[type, ...], *, source: Path, where: str) -> Any:
    """``entry[key]``, checked to be present and of type ``kind`` (bools are not ints).

    Args:
        entry: the JSON object of one entry (or a part of it).
        key: the field.
        kind: accepted type(s).
        source: the benchmark file, named by the error.
        where: the entry in words, e.g. ``"entry '000000000012'"``.

    Raises:
        BenchmarkError: not an object, missing key, or wrong type.
    """
    if not isinstance(entry, dict):
        raise BenchmarkError(source, f"{where}: expected a JSON object, got {type(entry).__name__}")
    if key not in entry:
        raise BenchmarkError(source, f"{where}: missing key {key!r}")
    value = entry[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise BenchmarkError(source, f"{where}: {key!r} must be {names}, got {type(value).__name__}")
    return value


def resolve_inside(root: Path, relative: str, *, source: Path, where: str) -> Path:
    """``root / relative``, refusing absolute paths and ``..`` that leaves ``root``.

    The check is on the path as written: symbolic links inside ``root`` are followed, so a benchmark may link its
    image folder to another disk.

    Raises:
        BenchmarkError: empty path, or one that escapes ``root``.
    """
    if not relative.strip():
        raise BenchmarkError(source, f"{where}: empty path")
    posix = relative.replace("\\", "/")
    normalised = posixpath.normpath(posix)
    is_absolute = posix.startswith("/") or (len(posix) > 1 and posix[1] == ":")
    outside = is_absolute or normalised == ".." or normalised.startswith("../")
    if outside:
        raise BenchmarkError(source, f"{where}: path {relative!r} points outside {root}")
    return root / normalised


def image_size(path: Path, *, source: Path, where: str) -> tuple[int, int]:
    """Displayed ``(height, width)`` of an image file, from its header.

    Raises:
        BenchmarkError: the file is missing or unreadable; names the benchmark file and the entry.
    """
    try:
        info = read_image_info(path)
    except ImageLoadError as exc:
        raise BenchmarkError(source, f"{where}: {exc.reason}: {path}") from exc
    return info.height, info.width
