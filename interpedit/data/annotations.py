"""Region annotations of four formats, read into boolean masks checked against their image.

Formats:

- **SA-1B** per-image JSON (what SAM's automatic mask generator writes): ``{"image": {"file_name", "width",
  "height", ...}, "annotations": [{"segmentation": <COCO RLE>, ...}]}``; ``file_name`` is relative to the
  images folder. Segmentations may also be uncompressed RLE or polygons.
- **COCO instances** JSON for a whole folder (``images``, ``annotations``); crowd annotations (``iscrowd``
  1, one mask over many objects) are left out unless asked for, since a region is meant to be one thing.
- **COCO panoptic** JSON plus one PNG per image whose pixel ids are ``R + 256 * G + 256**2 * B``.
- **Instance label maps**: one 8- or 16-bit single-channel PNG per image, 0 = unlabelled, every other
  value one region.

Reading happens in two steps so that a dataset index fails early but stays cheap: ``read_*`` parse the
structure (keys, types, declared sizes, file names) and return ``ImageRegions``; their ``check_size`` compares
the declared sizes with the image's header, and ``iter_masks``/``decode`` decode the pixels, one mask at a
time, checking each against the image size. Masks are expected in the image's *displayed* orientation
(after EXIF rotation); a mask that only fits the stored, unrotated pixels is reported as such.
"""

from __future__ import annotations

import json
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from interpedit.data.image_io import DataFileError
from interpedit.masks.rle import coco_rle_to_mask

# A polygon vertex may sit on the far edge of the last pixel (x == width); one more pixel of slack
# tolerates rounding in exporters while still catching polygons drawn for another image size.
POLYGON_TOLERANCE = 1.0
# pycocotools' C decoder accumulates each run length in a 32-bit int: six 5-bit digits is the most it
# parses correctly, and far more than any real image needs (2**30 pixels).
_MAX_RLE_DIGITS = 6


class AnnotationError(DataFileError):
    """An annotation file (or one of its entries) that cannot be used."""


def _size_text(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def check_mask_size(
    mask_size: tuple[int, int],
    image_size: tuple[int, int],
    *,
    source: Path,
    what: str,
    image_name: str,
    stored_size: tuple[int, int] | None = None,
) -> None:
    """Raise unless a mask's ``(height, width)`` equals the image's displayed size.

    Args:
        mask_size: the mask's ``(height, width)``.
        image_size: the image's displayed ``(height, width)``.
        source: annotation file, named by the error.
        what: the mask in words, e.g. ``"mask 3"``.
        image_name: the image in words, e.g. its relative path.
        stored_size: the image's size before EXIF orientation, to explain the usual cause of a mismatch.

    Raises:
        AnnotationError: ``"mask 3 is 512x512 but the image a.jpg is 480x640 (height x width)"``.
    """
    mask_size = (int(mask_size[0]), int(mask_size[1]))
    if mask_size == tuple(image_size):
        return
    reason = (
        f"{what} is {_size_text(mask_size)} but the image {image_name} is {_size_text(image_size)} "
        "(height x width)"
    )
    if stored_size is not None and tuple(stored_size) != tuple(image_size) and mask_size == tuple(stored_size):
        reason += (
            "; that is the image's size before its EXIF orientation is applied, so the masks were made "
            "from the unrotated pixels: regenerate them from the displayed image"
        )
    raise AnnotationError(source, reason)


def safe_relative_path(file_name: Any, *, source: Path, entry: str) -> str:
    """Normalise a ``file_name`` from an annotation and refuse one that leaves its folder.

    Args:
        file_name: the value read from the annotation.
        source: annotation file, named by the error.
        entry: the entry in words, e.g. ``'"image"'`` or ``"images[3] (id 17)"``.

    Returns:
        The normalised POSIX relative path.

    Raises:
        AnnotationError: not a string, absolute, or escaping with ``..``.
    """
    if not isinstance(file_name, str) or not file_name.strip():
        raise AnnotationError(source, f"malformed annotation file: {entry}: \"file_name\" must be a non-empty string")
    posix = file_name.replace("\\", "/")
    is_absolute = posix.startswith("/") or (len(posix) > 1 and posix[1] == ":")
    normalised = posixpath.normpath(posix)
    if is_absolute or normalised == ".." or normalised.startswith("../"):
        raise AnnotationError(
            source, f'{entry}: file_name "{file_name}" points outside the dataset root'
        )
    return normalised


def _malformed(source: Path, where: str, problem: str) -> AnnotationError:
    prefix = f"{where}: " if where else ""
    return AnnotationError(source, f"malformed annotation file: {prefix}{problem}")


def load_json(path: Path) -> Any:
    """Parse a JSON annotation file, with clear errors for missing, empty and malformed files."""
    if not path.is_file():
        raise AnnotationError(path, "annotation file does not exist")
    raw = path.read_bytes()
    if not raw.strip():
        raise AnnotationError(path, "empty annotation file")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(path, f"malformed annotation file: invalid JSON ({exc})") from exc


def _require(mapping: Any, key: str, source: Path, where: str) -> Any:
    if not isinstance(mapping, dict):
        raise _malformed(source, where, f"expected a JSON object, got {type(mapping).__name__}")
    if key not in mapping:
        raise _malformed(source, where, f'missing key "{key}"')
    return mapping[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_size(height: Any, width: Any, source: Path, where: str) -> tuple[int, int]:
    if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
        raise _malformed(source, where, f"height and width must be positive integers, got {height!r} and {width!r}")
    return height, width


def rle_run_lengths(counts: str | bytes) -> np.ndarray:
    """Run lengths of a COCO compressed RLE string (``pycocotools``' ``rleFrString``, vectorised).

    Each value is stored in 5-bit digits (+48, bit 0x20 = more digits follow, bit 0x10 of the last digit =
    negative); from the fourth value on, each is stored as the difference to the value two before it.

    Returns:
        (M,) int64 run lengths, alternating background and foreground, column-major, starting with background.

    Raises:
        ValueError: characters out of range, a truncated number, or a negative run length.
    """
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    digits = np.frombuffer(data, dtype=np.uint8).astype(np.int64) - 48
    if digits.size == 0:
        return np.zeros(0, dtype=np.int64)
    if (digits < 0).any() or (digits > 63).any():
        raise ValueError("RLE counts contain characters outside the encoding's range")
    more = (digits & 0x20) != 0
    if more[-1]:
        raise ValueError("RLE counts end in the middle of a number (truncated string)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > _MAX_RLE_DIGITS:
        raise ValueError(f"an RLE run length has more than {_MAX_RLE_DIGITS} digits")
    group = np.repeat(np.arange(starts.size), lengths)
    position = np.arange(digits.size) - starts[group]
    values = np.add.reduceat((digits & 0x1F) << (5 * position), starts)
    negative = (digits[ends] & 0x10) != 0
    values = np.where(negative, values - np.left_shift(1, 5 * lengths), values)
    run_lengths = values.copy()
    if values.size > 3:
        run_lengths[3::2] = values[1] + np.cumsum(values[3::2])
    if values.size > 4:
        run_lengths[4::2] = values[2] + np.cumsum(values[4::2])
    if (run_lengths < 0).any():
        raise ValueError("RLE counts decode to a negative run length")
    return run_lengths


def _segmentation_kind(segmentation: Any, source: Path, where: str) -> str:
    """Check a segmentation's structure: ``"rle"``, ``"uncompressed_rle"`` or ``"polygons"``."""
    if isinstance(segmentation, dict):
        size = _require(segmentation, "size", source, where)
        counts = _require(segmentation, "counts", source, where)
        if not (isinstance(size, list) and len(size) == 2):
            raise _malformed(source, where, f'RLE "size" must be [height, width], got {size!r}')
        _positive_size(size[0], size[1], source, f"{where} RLE size")
        if isinstance(counts, str):
            return "rle"
        if isinstance(counts, list) and all(_is_int(c) for c in counts):
            return "uncompressed_rle"
        raise _malformed(source, where, 'RLE "counts" must be a string or a list of integers')
    if isinstance(segmentation, list) and segmentation:
        for k, polygon in enumerate(segmentation):
            if not (isinstance(polygon, list) and all(_is_number(v) for v in polygon)):
                raise _malformed(source, where, f"polygon {k} must be a list of numbers x0, y0, x1, y1, ...")
            if len(polygon) < 6 or len(polygon) % 2:
                raise _malformed(source, where, f"polygon {k} has {len(polygon)} numbers; needs an even count >= 6")
        return "polygons"
    raise _malformed(source, where, "segmentation must be an RLE {\"size\", \"counts\"} or a list of polygons")


class ImageRegions(ABC):
    """The regions of one image, parsed but not decoded.

    Attributes:
        source: the file the regions come from (named by errors).
    """

    source: Path

    @abstractmethod
    def declared_sizes(self) -> list[tuple[str, tuple[int, int]]]:
        """``(what, (height, width))`` for every size known without decoding masks."""

    @abstractmethod
    def _iter_raw_masks(
        self, image_size: tuple[int, int], image_name: str
    ) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(what, mask)`` per region; polygon formats rasterise at ``image_size``."""

    def check_size(
        self, image_size: tuple[int, int], *, image_name: str, stored_size: tuple[int, int] | None = None
    ) -> None:
        """Compare every declared size with the image's displayed ``(height, width)``, without decoding.

        Raises:
            AnnotationError: a size differs.
        """
        for what, size in self.declared_sizes():
            check_mask_size(
                size, image_size, source=self.source, what=what, image_name=image_name, stored_size=stored_size
            )

    def iter_masks(
        self, image_size: tuple[int, int], *, image_name: str, stored_size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        """Decode the regions one at a time, each checked against the image size.

        Yields:
            (H, W) bool arrays.
        """
        self.check_size(image_size, image_name=image_name, stored_size=stored_size)
        for what, mask in self._iter_raw_masks(tuple(image_size), image_name):
            check_mask_size(
                mask.shape, image_size, source=self.source, what=what, image_name=image_name, stored_size=stored_size
            )
            yield mask

    def decode(
        self, image_size: tuple[int, int], *, image_name: str, stored_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """All regions as one stack.

        Returns:
            (N, H, W) bool.
        """
        masks = [
            torch.from_numpy(m)
            for m in self.iter_masks(image_size, image_name=image_name, stored_size=stored_size)
        ]
        if not masks:
            return torch.zeros(0, *image_size, dtype=torch.bool)
        return torch.stack(masks)


class EncodedRegions(ImageRegions):
    """Regions stored as COCO segmentations (compressed or uncompressed RLE, or polygons).

    Args:
        source: annotation file.
        segmentations: ``(what, segmentation)`` pairs, structure already checked.
        canvas: ``(what, (height, width))`` the annotation declares for its image, if any.
    """

    def __init__(
        self,
        source: Path,
        segmentations: Sequence[tuple[str, Any]],
        canvas: tuple[str, tuple[int, int]] | None = None,
    ) -> None:
        self.source = source
        self.segmentations = list(segmentations)
        self.canvas = canvas

    def __len__(self) -> int:
        return len(self.segmentations)

    def declared_sizes(self) -> list[tuple[str, tuple[int, int]]]:
        sizes = [self.canvas] if self.canvas is not None else []
        for what, segmentation in self.segmentations:
            if isinstance(segmentation, dict):
                sizes.append((what, (segmentation["size"][0], segmentation["size"][1])))
        return sizes

    def _iter_raw_masks(self, image_size: tuple[int, int], image_name: str) -> Iterator[tuple[str, np.ndarray]]:
        height, width = image_size
        for what, segmentation in self.segmentations:
            if isinstance(segmentation, list):
                yield what, self._rasterise_polygons(segmentation, height, width, what)
                continue
            rle_height, rle_width = segmentation["size"]
            counts = segmentation["counts"]
            try:
                run_lengths = rle_run_lengths(counts) if isinstance(counts, str) else np.asarray(counts, np.int64)
                if (run_lengths < 0).any():
                    raise ValueError("RLE counts contain a negative run length")
            except ValueError as exc:
                raise AnnotationError(self.source, f"malformed annotation file: {what}: {exc}") from exc
            # Checked here rather than left to pycocotools, which only says "Invalid RLE mask
            # representation" (and whose older releases wrote past the mask's end instead).
            if int(run_lengths.sum()) != rle_height * rle_width:
                raise AnnotationError(
                    self.source,
                    f"malformed annotation file: {what}: RLE counts cover {int(run_lengths.sum())} pixels "
                    f"but its size {rle_height}x{rle_width} has {rle_height * rle_width}",
                )
            try:
                yield what, coco_rle_to_mask(segmentation, where=what)
            except ValueError as exc:
                raise AnnotationError(self.source, f"malformed annotation file: {exc}") from exc

    def _rasterise_polygons(self, polygons: list[list[float]], height: int, width: int, what: str) -> np.ndarray:
        points = np.concatenate([np.asarray(p, dtype=np.float64) for p in polygons])
        xs, ys = points[0::2], points[1::2]
        if (
            xs.min() < -POLYGON_TOLERANCE
            or ys.min() < -POLYGON_TOLERANCE
            or xs.max() > width + POLYGON_TOLERANCE
            or ys.max() > height + POLYGON_TOLERANCE
        ):
            raise AnnotationError(
                self.source,
                f"{what}: polygon spans x {xs.min():g}..{xs.max():g}, y {ys.min():g}..{ys.max():g}, outside the "
                f"image of {height}x{width} (height x width)",
            )
        rles = coco_mask.frPyObjects([list(map(float, p)) for p in polygons], height, width)
        return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def _read_png_header(path: Path, what: str) -> tuple[tuple[int, int], str]:
    if not path.is_file():
        raise AnnotationError(path, f"{what} does not exist")
    try:
        with Image.open(path) as image:
            return (image.height, image.width), image.mode
    except (OSError, SyntaxError, ValueError) as exc:
        raise AnnotationError(path, f"corrupt {what} ({exc})") from exc


def _read_png_pixels(path: Path, what: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.verify()
        image = Image.open(path)
        image.load()
        return image
    except (OSError, SyntaxError, ValueError) as exc:
        raise AnnotationError(path, f"corrupt {what} ({exc})") from exc


class LabelMapRegions(ImageRegions):
    """Regions from an instance label map PNG: 0 is unlabelled, each other value is one region.

    Args:
        source: the PNG (8-bit ``L``/``P`` or 16-bit ``I;16``/``I``).
    """

    _MODES = {"L", "P", "I;16", "I;16B", "I;16L", "I"}

    def __init__(self, source: Path) -> None:
        self.source = source

    def declared_sizes(self) -> list[tuple[str, tuple[int, int]]]:
        size, mode = _read_png_header(self.source, "mask file")
        if mode not in self._MODES:
            raise AnnotationError(
                self.source, f"label map must be a single-channel 8- or 16-bit image, got mode {mode}"
            )
        return [("label map", size)]

    def labels(self) -> np.ndarray:
        """The label array, (H, W) int64."""
        image = _read_png_pixels(self.source, "mask file")
        if image.mode not in self._MODES:
            raise AnnotationError(
                self.source, f"label map must be a single-channel 8- or 16-bit image, got mode {image.mode}"
            )
        labels = np.asarray(image).astype(np.int64)
        if labels.min() < 0 or labels.max() > 65535:
            raise AnnotationError(self.source, f"label values {labels.min()}..{labels.max()} exceed 16 bits")
        return labels

    def _iter_raw_masks(self, image_size: tuple[int, int], image_name: str) -> Iterator[tuple[str, np.ndarray]]:
        labels = self.labels()
        for label in np.unique(labels):
            if label != 0:
                yield f"label {label}", labels == label


class PanopticRegions(ImageRegions):
    """Regions from a COCO panoptic PNG (pixel id ``R + 256 * G + 256**2 * B``) and its segments_info.

    Args:
        source: the panoptic PNG.
        json_path: the panoptic JSON, named by errors about the segment list.
        segments: ``(segment id, iscrowd)`` per entry of ``segments_info``.
        include_crowd: keep crowd segments as regions.
        canvas: ``(what, (height, width))`` from the JSON's image entry.
    """

    def __init__(
        self,
        source: Path,
        json_path: Path,
        segments: Sequence[tuple[int, bool]],
        include_crowd: bool = False,
        canvas: tuple[str, tuple[int, int]] | None = None,
    ) -> None:
        self.source = source
        self.json_path = json_path
        self.segments = list(segments)
        self.include_crowd = include_crowd
        self.canvas = canvas

    def __len__(self) -> int:
        return sum(1 for _, crowd in self.segments if self.include_crowd or not crowd)

    def declared_sizes(self) -> list[tuple[str, tuple[int, int]]]:
        size, _ = _read_png_header(self.source, "panoptic PNG")
        sizes = [("panoptic PNG", size)]
        if self.canvas is not None:
            sizes.insert(0, self.canvas)
        return sizes

    def _iter_raw_masks(self, image_size: tuple[int, int], image_name: str) -> Iterator[tuple[str, np.ndarray]]:
        image = _read_png_pixels(self.source, "panoptic PNG")
        if image.mode != "RGB":
            raise AnnotationError(self.source, f"panoptic PNG must be RGB, got mode {image.mode}")
        rgb = np.asarray(image).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        present = set(np.unique(ids).tolist()) - {0}
        listed = {segment_id for segment_id, _ in self.segments}
        # The same two checks as panopticapi's pq_compute: JSON and PNG must describe the same segments.
        if present - listed:
            raise AnnotationError(
                self.source,
                f"segment ids {sorted(present - listed)[:5]} are in the PNG but not in {self.json_path.name}",
            )
        if listed - present:
            raise AnnotationError(
                self.source, f"segment ids {sorted(listed - present)[:5]} of {self.json_path.name} are not in the PNG"
            )
        for segment_id, crowd in self.segments:
            if self.include_crowd or not crowd:
                yield f"segment {segment_id}", ids == segment_id


@dataclass
class Sa1bAnnotation:
    """One SA-1B per-image JSON, structure checked.

    Attributes:
        source: the JSON file.
        file_name: normalised ``image.file_name`` (relative to the images folder).
        size: ``(height, width)`` from the ``image`` entry.
        regions: the masks, not yet decoded.
    """

    source: Path
    file_name: str
    size: tuple[int, int]
    regions: EncodedRegions


def read_sa1b_json(path: str | Path) -> Sa1bAnnotation:
    """Parse an SA-1B per-image JSON (extra keys are ignored).

    Raises:
        AnnotationError: missing/empty/malformed file, missing keys, a bad segmentation, or a ``file_name``
            outside the dataset root.
    """
    path = Path(path)
    data = load_json(path)
    image = _require(data, "image", path, "")
    annotations = _require(data, "annotations", path, "")
    file_name = safe_relative_path(_require(image, "file_name", path, '"image"'), source=path, entry='"image"')
    size = _positive_size(_require(image, "height", path, '"image"'), _require(image, "width", path, '"image"'),
                          path, '"image"')
    if not isinstance(annotations, list):
        raise _malformed(path, '"annotations"', f"expected a list, got {type(annotations).__name__}")
    segmentations = []
    for i, annotation in enumerate(annotations):
        what = f"mask {i}"
        segmentation = _require(annotation, "segmentation", path, what)
        _segmentation_kind(segmentation, path, what)
        segmentations.append((what, segmentation))
    return Sa1bAnnotation(path, file_name, size, EncodedRegions(path, segmentations, ('the "image" entry', size)))


@dataclass
class CocoImageEntry:
    """One entry of a COCO ``images`` list."""

    image_id: int
    file_name: str
    size: tuple[int, int]
    entry: str


@dataclass
class FolderAnnotations:
    """A folder-wide annotation file (COCO instances or panoptic), split per image.

    Attributes:
        source: the JSON file.
        regions: normalised image ``file_name`` -> its regions.
        image_problems: image ``file_name`` -> problems that make that image unusable.
        problems: problems tied to no usable image (a ``file_name`` outside the root, an unknown image id).
    """

    source: Path
    regions: dict[str, ImageRegions] = field(default_factory=dict)
    image_problems: dict[str, list[AnnotationError]] = field(default_factory=dict)
    problems: list[AnnotationError] = field(default_factory=list)


def _read_coco_images(
    data: Any, path: Path
) -> tuple[dict[int, CocoImageEntry], list[Any], FolderAnnotations]:
    images = _require(data, "images", path, "")
    annotations = _require(data, "annotations", path, "")
    for key, value in (("images", images), ("annotations", annotations)):
        if not isinstance(value, list):
            raise _malformed(path, f'"{key}"', f"expected a list, got {type(value).__name__}")
    result = FolderAnnotations(path)
    by_id: dict[int, CocoImageEntry] = {}
    seen_names: set[str] = set()
    for i, image in enumerate(images):
        entry = f"images[{i}]"
        try:
            image_id = _require(image, "id", path, entry)
            if not _is_int(image_id):
                raise _malformed(path, entry, f'"id" must be an integer, got {image_id!r}')
            entry = f"images[{i}] (id {image_id})"
            file_name = safe_relative_path(_require(image, "file_name", path, entry), source=path, entry=entry)
            size = _positive_size(_require(image, "height", path, entry), _require(image, "width", path, entry),
                                  path, entry)
            if image_id in by_id:
                raise _malformed(path, entry, f"image id {image_id} appears twice")
            if file_name in seen_names:
                raise _malformed(path, entry, f'file_name "{file_name}" appears twice')
        except AnnotationError as exc:
            result.problems.append(exc)
            continue
        seen_names.add(file_name)
        by_id[image_id] = CocoImageEntry(image_id, file_name, size, entry)
    return by_id, annotations, result


def read_coco_instances(path: str | Path, *, include_crowd: bool = False) -> FolderAnnotations:
    """Parse a COCO instances JSON into regions per image.

    Args:
        path: the JSON (``images`` with ``id``, ``file_name``, ``height``, ``width``; ``annotations`` with
            ``image_id``, ``segmentation`` and optional ``iscrowd``, 0 when absent).
        include_crowd: keep ``iscrowd`` 1 annotations (one mask over a crowd of objects).

    Raises:
        AnnotationError: missing/empty/malformed file or missing top-level keys. Problems with single
            entries are collected in the result instead.
    """
    path = Path(path)
    by_id, annotations, result = _read_coco_images(load_json(path), path)
    segmentations: dict[int, list[tuple[str, Any]]] = {image_id: [] for image_id in by_id}
    for j, annotation in enumerate(annotations):
        entry = f"annotations[{j}]"
        try:
            image_id = _require(annotation, "image_id", path, entry)
            if "id" in annotation:
                entry = f"annotations[{j}] (id {annotation['id']})"
            if image_id not in by_id:
                raise _malformed(path, entry, f"image_id {image_id!r} is not in \"images\"")
        except AnnotationError as exc:
            result.problems.append(exc)
            continue
        file_name = by_id[image_id].file_name
        try:
            segmentation = _require(annotation, "segmentation", path, entry)
            _segmentation_kind(segmentation, path, entry)
            crowd = annotation.get("iscrowd", 0)
            if crowd not in (0, 1):
                raise _malformed(path, entry, f'"iscrowd" must be 0 or 1, got {crowd!r}')
        except AnnotationError as exc:
            result.image_problems.setdefault(file_name, []).append(exc)
            continue
        if crowd == 0 or include_crowd:
            segmentations[image_id].append((entry, segmentation))
    for image_id, image in by_id.items():
        result.regions[image.file_name] = EncodedRegions(
            path, segmentations[image_id], (f"{image.entry} height/width", image.size)
        )
    return result


def read_coco_panoptic(
    json_path: str | Path, png_dir: str | Path, *, include_crowd: bool = False
) -> FolderAnnotations:
    """Parse a COCO panoptic JSON; each image's regions come from ``png_dir/<annotation file_name>``.

    Raises:
        AnnotationError: missing/empty/malformed file or missing top-level keys. Problems with single
            entries (including a PNG ``file_name`` outside ``png_dir``) are collected in the result.
    """
    json_path, png_dir = Path(json_path), Path(png_dir)
    by_id, annotations, result = _read_coco_images(load_json(json_path), json_path)
    annotated: set[int] = set()
    for j, annotation in enumerate(annotations):
        entry = f"annotations[{j}]"
        try:
            image_id = _require(annotation, "image_id", json_path, entry)
            entry = f"annotations[{j}] (image_id {image_id})"
            if image_id not in by_id:
                raise _malformed(json_path, entry, f"image_id {image_id!r} is not in \"images\"")
            if image_id in annotated:
                raise _malformed(json_path, entry, f"image_id {image_id} has two annotation entries")
            png_name = safe_relative_path(_require(annotation, "file_name", json_path, entry),
                                          source=json_path, entry=entry)
        except AnnotationError as exc:
            result.problems.append(exc)
            continue
        image = by_id[image_id]
        annotated.add(image_id)
        try:
            segments_info = _require(annotation, "segments_info", json_path, entry)
            if not isinstance(segments_info, list):
                raise _malformed(json_path, entry, '"segments_info" must be a list')
            segments = []
            for k, segment in enumerate(segments_info):
                segment_id = _require(segment, "id", json_path, f"{entry} segments_info[{k}]")
                if not _is_int(segment_id) or segment_id <= 0:
                    raise _malformed(json_path, f"{entry} segments_info[{k}]", '"id" must be a positive integer')
                segments.append((segment_id, segment.get("iscrowd", 0) == 1))
        except AnnotationError as exc:
            result.image_problems.setdefault(image.file_name, []).append(exc)
            continue
        result.regions[image.file_name] = PanopticRegions(
            png_dir / png_name, json_path, segments, include_crowd, (f"{image.entry} height/width", image.size)
        )
    return result
