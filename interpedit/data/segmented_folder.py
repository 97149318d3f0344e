"""A folder of real images with region masks (SA-1B JSON, COCO, COCO panoptic or PNG label maps).

Layout (every name configurable through ``FolderLayout``)::

    root/images/**/<name>.<ext>      the images, found recursively
    root/masks/**/<name>.json        SA-1B per-image JSON    (mask_format "sa1b")
    root/masks/**/<name>.png         instance label maps     (mask_format "png")
    root/annotations.json            COCO instances          (mask_format "coco")
    root/panoptic.json, panoptic/    COCO panoptic           (mask_format "coco_panoptic")

Everything cheap is checked when the index is built (files exist, annotations parse, sizes from the image
headers and annotations agree), so a long run fails at start-up instead of at step 10,000. Pixel-level
problems (truncated images, corrupt RLE) surface when an item is loaded; ``python -m datamodules.check``
decodes everything ahead of time.

A sample is resized so that its shorter side equals ``resolution`` (image bilinear with antialiasing, masks
nearest-exact, which samples the same pixel centres), masks are filtered at that size, ``region_budget``
regions are drawn with probability proportional to area and padded, and the result is centre-cropped to a
square. With ``paired_views`` the two augmented views are cut from the resized, uncropped image.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as nnf
from torch.utils.data import Dataset, DistributedSampler

from interpedit.data.annotations import (
    AnnotationError,
    FolderAnnotations,
    ImageRegions,
    LabelMapRegions,
    read_coco_instances,
    read_coco_panoptic,
    read_sa1b_json,
    safe_relative_path,
)
from interpedit.data.image_io import WHITE, DataFileError, ImageInfo, ImageLoadError, load_image, read_image_info
from interpedit.data.paired_views import PairedViews
from interpedit.data.regions import boxes_from_masks, pad_regions, sample_regions_by_area
from interpedit.masks.filtering import MaskFilter
from interpedit.user_errors import OptionError

logger = logging.getLogger(__name__)

MaskFormat = Literal["auto", "sa1b", "coco", "coco_panoptic", "png"]
MASK_FORMATS: tuple[str, ...] = ("auto", "sa1b", "coco", "coco_panoptic", "png")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class FolderLayout:
    """Where images and masks live, relative to ``root``."""

    root: Path
    images_dir: str = "images"
    masks_dir: str = "masks"
    coco_annotations: str = "annotations.json"
    panoptic_json: str = "panoptic.json"
    panoptic_dir: str = "panoptic"

    @property
    def images(self) -> Path:
        return self.root / self.images_dir

    def relative(self, path: Path) -> str:
        """``path`` relative to the root when inside it (POSIX), else as given."""
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class FolderProblem:
    """One problem (or note) about a file of the folder: ``file`` is relative to the root."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass
class IndexedImage:
    """An image that passed the index checks, with its not-yet-decoded regions."""

    path: str
    file: Path
    info: ImageInfo
    regions: ImageRegions


@dataclass
class FolderIndex:
    """Result of indexing a folder.

    Attributes:
        layout: where things are.
        mask_format: the format used (resolved from ``"auto"``).
        images: the usable images.
        found: number of images found (usable or not).
        problems: every problem, in file order.
        notes: conversions and other things worth knowing that are not problems.
        skipped: image path (relative to the images folder) -> the first problem that made it unusable.
    """

    layout: FolderLayout
    mask_format: str
    images: list[IndexedImage] = field(default_factory=list)
    found: int = 0
    problems: list[FolderProblem] = field(default_factory=list)
    notes: list[FolderProblem] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def detect_mask_format(layout: FolderLayout) -> str:
    """Resolve ``"auto"``: a COCO file, a panoptic file, or the kind of files in the masks folder.

    Raises:
        ValueError: none of them, or a masks folder holding both JSON and PNG files.
    """
    candidates = []
    if (layout.root / layout.coco_annotations).is_file():
        candidates.append("coco")
    if (layout.root / layout.panoptic_json).is_file():
        candidates.append("coco_panoptic")
    masks = layout.root / layout.masks_dir
    if masks.is_dir():
        suffixes = {p.suffix.lower() for p in masks.rglob("*") if p.is_file() and not p.name.startswith(".")}
        if ".json" in suffixes:
            candidates.append("sa1b")
        if ".png" in suffixes:
            candidates.append("png")
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DataFileError(
            layout.root,
            f"cannot tell the mask format: no {layout.coco_annotations}, no {layout.panoptic_json} "
            f"and no JSON or PNG files under {layout.masks_dir}/",
        )
    raise DataFileError(layout.root, f"found masks of several formats ({', '.join(candidates)}); set mask_format")


def _find_images(layout: FolderLayout) -> list[str]:
    found = []
    for path in layout.images.rglob("*"):
        relative = path.relative_to(layout.images)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(relative.as_posix())
    return sorted(found)


def _folder_annotations(layout: FolderLayout, mask_format: str, include_crowd: bool) -> FolderAnnotations:
    if mask_format == "coco":
        return read_coco_instances(layout.root / layout.coco_annotations, include_crowd=include_crowd)
    return read_coco_panoptic(
        layout.root / layout.panoptic_json, layout.root / layout.panoptic_dir, include_crowd=include_crowd
    )


def index_segmented_folder(
    layout: FolderLayout,
    mask_format: str = "auto",
    *,
    images: Sequence[str] | None = None,
    include_crowd: bool = False,
) -> FolderIndex:
    """Find the images of a folder and check everything that is cheap to check; never raises for a bad file.

    Args:
        layout: where images and masks are.
        mask_format: one of ``MASK_FORMATS``.
        images: image paths relative to the images folder; default: every image found there recursively.
        include_crowd: keep COCO crowd annotations.

    Returns:
        The index, with every problem found (a problem makes its image unusable) and notes.

    Raises:
        ValueError: the root or images folder is missing, or the mask format is unknown or undetectable.
    """
    if mask_format not in MASK_FORMATS:
        raise OptionError(f"mask_format: must be one of {MASK_FORMATS}, got {mask_format!r}")
    if not layout.root.is_dir():
        raise DataFileError(layout.root, "dataset folder does not exist")
    if not layout.images.is_dir():
        raise DataFileError(layout.root, f"no {layout.images_dir}/ folder with the images")
    if mask_format == "auto":
        mask_format = detect_mask_format(layout)
    index = FolderIndex(layout, mask_format)
    image_label = layout.images_dir

    def add_problem(image: str | None, error: DataFileError) -> None:
        problem = FolderProblem(layout.relative(error.path), error.reason)
        if problem not in index.problems:
            index.problems.append(problem)
        if image is not None:
            index.skipped.setdefault(image, str(problem))

    if images is None:
        names = _find_images(layout)
    else:
        names = []
        for i, name in enumerate(images):
            try:
                names.append(safe_relative_path(str(name), source=layout.images, entry=f"image list entry {i}"))
            except AnnotationError as exc:
                add_problem(None, exc)
    index.found = len(names)

    folder: FolderAnnotations | None = None
    folder_error: AnnotationError | None = None
    if mask_format in ("coco", "coco_panoptic"):
        try:
            folder = _folder_annotations(layout, mask_format, include_crowd)
        except AnnotationError as exc:
            folder_error = exc
            add_problem(None, exc)
        if folder is not None:
            for exc in folder.problems:
                add_problem(None, exc)
            on_disk = set(names)
            for file_name in folder.regions:
                if images is None and file_name not in on_disk:
                    index.notes.append(FolderProblem(
                        layout.relative(folder.source),
                        f'an entry names "{file_name}", which is not under {image_label}/',
                    ))

    # Two images that differ only by extension would share one per-image mask file.
    stems = Counter(str(PurePosixPath(name).with_suffix("")) for name in names)

    for name in names:
        file = layout.images / name
        image_name = f"{image_label}/{name}"
        info: ImageInfo | None = None
        regions: ImageRegions | None = None
        try:
            info = read_image_info(file)
        except ImageLoadError as exc:
            add_problem(name, exc)
        try:
            stem = str(PurePosixPath(name).with_suffix(""))
            if mask_format == "sa1b":
                mask_file = layout.root / layout.masks_dir / f"{stem}.json"
                if stems[stem] > 1:
                    raise AnnotationError(mask_file, f"is the mask file of {stems[stem]} images named {stem}.*")
                annotation = read_sa1b_json(mask_file)
                if annotation.file_name != name:
                    raise AnnotationError(
                        mask_file,
                        f'"image"."file_name" is "{annotation.file_name}" but this mask file belongs to {image_name}',
                    )
                regions = annotation.regions
                if len(regions) == 0:
                    index.notes.append(FolderProblem(layout.relative(mask_file), "no regions (0 annotations)"))
            elif mask_format == "png":
                mask_file = layout.root / layout.masks_dir / f"{stem}.png"
                if stems[stem] > 1:
                    raise AnnotationError(mask_file, f"is the mask file of {stems[stem]} images named {stem}.*")
                regions = LabelMapRegions(mask_file)
            elif folder is None:
                raise folder_error  # the folder-wide annotation file could not be read
            else:
                for exc in folder.image_problems.get(name, []):
                    add_problem(name, exc)
                regions = folder.regions.get(name)
                if regions is None:
                    raise AnnotationError(folder.source, f"has no entry for the image {image_name}")
                if len(regions) == 0:
                    index.notes.append(FolderProblem(layout.relative(folder.source), f"no regions for {image_name}"))
            if info is not None:
                regions.check_size(info.size, image_name=image_name, stored_size=info.stored_size)
        except AnnotationError as exc:
            add_problem(name, exc)
            regions = None
        if info is not None:
            index.notes.extend(FolderProblem(layout.relative(file), note) for note in info.notes)
        if info is not None and regions is not None and name not in index.skipped:
            index.images.append(IndexedImage(name, file, info, regions))
    return index


def shorter_side_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """``(height, width)`` scaled so that the shorter side equals ``resolution`` (aspect ratio kept)."""
    if height <= width:
        return resolution, max(resolution, round(width * resolution / height))
    return max(resolution, round(height * resolution / width)), resolution


def nearest_exact_indices(source: int, target: int) -> np.ndarray:
    """Source indices sampled by a nearest-exact resize: the pixel containing each output pixel's centre."""
    return np.minimum(((np.arange(target) + 0.5) * source / target).astype(np.int64), source - 1)


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a (3, H, W) float image to ``size``; returns it unchanged if equal."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    resized = nnf.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return resized.clamp_(0.0, 1.0)


class EpochIndexSampler(DistributedSampler):
    """``DistributedSampler`` that yields ``(index, epoch)``, so that per-sample randomness can change every
    epoch and stay reproducible, even in persistent workers that never see ``set_epoch``.

    Lightning calls ``set_epoch`` on it at each epoch and, because it is a ``DistributedSampler``, leaves it in
    place under DDP instead of wrapping it.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        for index in super().__iter__():
            yield index, epoch


class SegmentedImageFolder(Dataset):
    """Images with region masks from a folder, as samples in the ``interpedit.data`` batch convention.

    Args:
        root: dataset folder.
        mask_format: ``"sa1b"``, ``"coco"``, ``"coco_panoptic"``, ``"png"`` or ``"auto"`` (detected).
        images: image paths relative to ``images_dir``; default: every image found there, recursively.
        images_dir: images folder, relative to ``root``.
        masks_dir: folder of per-image SA-1B JSON or PNG label maps (same relative path, new extension).
        coco_annotations: COCO instances JSON, relative to ``root``.
        panoptic_json: COCO panoptic JSON, relative to ``root``.
        panoptic_dir: folder of panoptic PNGs, relative to ``root``.
        include_crowd: keep COCO crowd annotations as regions.
        resolution: training resolution: shorter side before cropping and the square output size; None
            keeps the original size (no crop; useful for inspection, not for batching).
        region_budget: number of region slots K per sample.
        mask_filter: cleaning and selection applied at the training resolution; default ``MaskFilter()``.
        paired_views: when given, adds ``source_*`` and ``target_*`` views.
        on_error: ``"raise"`` stops at the first bad file; ``"skip"`` leaves bad images out of the index,
            logs a summary and lists them in ``skipped``.
        seed: base of the per-sample seeds (region choice and views depend on seed, epoch and index).
        background: RGB colour that transparent pixels are composited over.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        mask_format: MaskFormat = "auto",
        images: Sequence[str] | None = None,
        images_dir: str = "images",
        masks_dir: str = "masks",
        coco_annotations: str = "annotations.json",
        panoptic_json: str = "panoptic.json",
        panoptic_dir: str = "panoptic",
        include_crowd: bool = False,
        resolution: int | None = 256,
        region_budget: int = 16,
        mask_filter: MaskFilter | None = None,
        paired_views: PairedViews | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        seed: int = 0,
        background: tuple[int, int, int] = WHITE,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if resolution is not None and resolution <= 0:
            raise ValueError(f"resolution must be positive or None, got {resolution}")
        if region_budget <= 0:
            raise ValueError(f"region_budget must be positive, got {region_budget}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.layout = FolderLayout(Path(root), images_dir, masks_dir, coco_annotations, panoptic_json, panoptic_dir)
        self.resolution = resolution
        self.region_budget = region_budget
        self.mask_filter = mask_filter if mask_filter is not None else MaskFilter()
        self.paired_views = paired_views
        self.on_error = on_error
        self.seed = seed
        self.background = background
        self.epoch = 0
        index = index_segmented_folder(self.layout, mask_format, images=images, include_crowd=include_crowd)
        self.mask_format = index.mask_format
        self.notes = index.notes
        self.problems = index.problems
        if index.problems and on_error == "raise":
            first = index.problems[0]
            more = len(index.problems) - 1
            suffix = (
                f" (and {more} more problem{'s' if more > 1 else ''}; `python -m datamodules.check {root}` lists "
                "them all, on_error='skip' leaves bad images out)"
                if more
                else ""
            )
            raise DataFileError(self.layout.root / first.file, first.reason + suffix)
        self.skipped: dict[str, str] = dict(index.skipped)
        if self.skipped:
            first_reason = next(iter(self.skipped.values()))
            logger.warning(
                "%s: skipped %d of %d images with problems (first: %s); "
                "`python -m datamodules.check %s` lists them all",
                root, len(self.skipped), index.found, first_reason, root,
            )
        if index.notes:
            logger.info(
                "%s: %d notes about conversions (grayscale, transparency, 16-bit, EXIF)", root, len(index.notes)
            )
        self.entries = index.images
        if not self.entries:
            raise DataFileError(root, f"no usable images ({index.found} found, {len(self.skipped)} skipped)")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def paths(self) -> list[str]:
        """Image paths relative to the images folder, in index order."""
        return [entry.path for entry in self.entries]

    def select(self, indices: Sequence[int]) -> SegmentedImageFolder:
        """A dataset over a subset of this index (no re-indexing), e.g. a train/val split."""
        subset = copy.copy(self)
        subset.entries = [self.entries[i] for i in indices]
        subset.skipped = dict(self.skipped)
        return subset

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for integer keys (``EpochIndexSampler`` passes it with each index instead)."""
        self.epoch = epoch

    def sample_generator(self, index: int, epoch: int) -> torch.Generator:
        """The generator for one sample's random choices, a function of ``(seed, epoch, index)`` only."""
        state = np.random.SeedSequence([self.seed, epoch, index]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and every annotated region at full resolution, unfiltered.

        Returns:
            (3, H, W) uint8 image and (N, H, W) bool masks.
        """
        entry = self.entries[index]
        image = self._load_checked_image(entry)
        masks = entry.regions.decode(
            entry.info.size, image_name=f"{self.layout.images_dir}/{entry.path}", stored_size=entry.info.stored_size
        )
        return image, masks

    def _load_checked_image(self, entry: IndexedImage) -> torch.Tensor:
        image = load_image(entry.file, self.background)
        if tuple(image.shape[1:]) != entry.info.size:
            raise ImageLoadError(
                entry.file,
                f"decodes to {image.shape[1]}x{image.shape[2]} but its header said {entry.info.height}x"
                f"{entry.info.width} when indexed (file changed, or EXIF stored after the pixel data)",
            )
        return image

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        if self.on_error == "raise":
            return self._sample(index, epoch)
        # on_error="skip": a file that passed the header checks can still fail to decode (truncated
        # data); the next image stands in, and the failure is logged and recorded in `skipped`.
        for attempt in range(len(self)):
            candidate = (index + attempt) % len(self)
            try:
                return self._sample(candidate, epoch)
            except DataFileError as exc:
                path = self.entries[candidate].path
                if path not in self.skipped:
                    self.skipped[path] = f"{self.layout.relative(exc.path)}: {exc.reason}"
                    logger.warning("skipping %s at load time: %s", path, self.skipped[path])
        raise DataFileError(self.layout.root, "no image of this dataset could be loaded")

    def _sample(self, index: int, epoch: int) -> dict[str, torch.Tensor | str]:
        entry = self.entries[index]
        image = self._load_checked_image(entry).float().div_(255.0)
        height, width = entry.info.size
        size = (height, width) if self.resolution is None else shorter_side_size(height, width, self.resolution)
        rows, cols = nearest_exact_indices(height, size[0]), nearest_exact_indices(width, size[1])
        # Masks are decoded and resized one at a time: a few hundred full-size SA-1B masks would not fit.
        resized_masks = [
            torch.from_numpy(np.ascontiguousarray(mask[np.ix_(rows, cols)]))
            for mask in entry.regions.iter_masks(
                entry.info.size,
                image_name=f"{self.layout.images_dir}/{entry.path}",
                stored_size=entry.info.stored_size,
            )
        ]
        masks = torch.stack(resized_masks) if resized_masks else torch.zeros(0, *size, dtype=torch.bool)
        image = resize_image(image, size)
        masks, _ = self.mask_filter(masks)
        generator = self.sample_generator(index, epoch)
        chosen = sample_regions_by_area(masks, self.region_budget, generator=generator)
        masks, region_valid = pad_regions(masks[chosen], self.region_budget)

        if self.resolution is None:
            base_image, base_masks = image, masks
        else:
            top = (size[0] - self.resolution) // 2
            left = (size[1] - self.resolution) // 2
            window = (slice(top, top + self.resolution), slice(left, left + self.resolution))
            base_image, base_masks = image[(slice(None), *window)], masks[(slice(None), *window)]
        base_valid = region_valid & base_masks.flatten(1).any(dim=1)
        sample: dict[str, torch.Tensor | str] = {
            "image": base_image.contiguous(),
            "masks": base_masks.contiguous(),
            "region_valid": base_valid,
            "boxes": boxes_from_masks(base_masks),
            "path": entry.path,
        }
        if self.paired_views is not None:
            sample.update(self.paired_views(image, masks, region_valid, generator=generator))
        return sample
