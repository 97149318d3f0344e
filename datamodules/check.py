"""Check a segmented-image folder before a long run: ``python -m datamodules.check DIR [--mask-format ...]``.

It runs the dataset's index checks (files exist, annotations parse, declared sizes match the image
headers, file names stay inside the root) and then decodes every image and every mask, which catches
truncated images and corrupt RLE that the index cannot see cheaply.

Output: a summary, then one line per problem, ``<file relative to DIR>: <reason>``, then one line per note
(conversions that will happen, images without regions), ``note: <file>: <reason>``. Exit code 0 when no
problem was found (notes are fine), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from interpedit.data.annotations import AnnotationError
from interpedit.data.image_io import ImageLoadError, load_image
from interpedit.data.segmented_folder import (
    MASK_FORMATS,
    FolderLayout,
    FolderProblem,
    index_segmented_folder,
)
from interpedit.user_errors import run_command


@dataclass
class CheckReport:
    """What ``check_folder`` found."""

    root: Path
    mask_format: str
    found: int = 0
    regions_per_image: list[int] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)
    problems: list[FolderProblem] = field(default_factory=list)
    notes: list[FolderProblem] = field(default_factory=list)

    @property
    def usable(self) -> int:
        return len(self.regions_per_image)

    def lines(self) -> list[str]:
        """The printed report, one string per line."""
        lines = [f"checked {self.root}: {self.found} images, mask format {self.mask_format}"]
        lines.append(f"usable images: {self.usable}")
        if self.regions_per_image:
            counts = np.asarray(self.regions_per_image)
            lines.append(f"regions per image: min {counts.min()}, mean {counts.mean():.2f}, max {counts.max()}")
            lines.append(f"mean mask coverage: {100 * np.mean(self.coverage):.1f}% of the image (union of its masks)")
        else:
            lines.append("regions per image: none (no usable image)")
            lines.append("mean mask coverage: none (no usable image)")
        lines.append(f"problems: {len(self.problems)}")
        lines.append(f"notes: {len(self.notes)}")
        lines.extend(str(problem) for problem in sorted(self.problems, key=lambda p: p.file))
        lines.extend(f"note: {note}" for note in sorted(self.notes, key=lambda p: p.file))
        return lines


def check_folder(layout: FolderLayout, mask_format: str = "auto", *, include_crowd: bool = False) -> CheckReport:
    """Index a folder and decode every usable image and mask.

    Raises:
        ValueError: the folder or its images folder is missing, or the mask format cannot be determined.
    """
    index = index_segmented_folder(layout, mask_format, include_crowd=include_crowd)
    report = CheckReport(layout.root, index.mask_format, found=index.found)
    report.problems.extend(index.problems)
    report.notes.extend(index.notes)
    for entry in index.images:
        image_name = f"{layout.images_dir}/{entry.path}"
        try:
            image = load_image(entry.file)
        except ImageLoadError as exc:
            report.problems.append(FolderProblem(layout.relative(exc.path), exc.reason))
            continue
        if tuple(image.shape[1:]) != entry.info.size:
            report.problems.append(FolderProblem(
                layout.relative(entry.file),
                f"decodes to {image.shape[1]}x{image.shape[2]} but its header says "
                f"{entry.info.height}x{entry.info.width} (EXIF stored after the pixel data?)",
            ))
            continue
        union = np.zeros(entry.info.size, dtype=bool)
        count = 0
        try:
            for mask in entry.regions.iter_masks(
                entry.info.size, image_name=image_name, stored_size=entry.info.stored_size
            ):
                union |= mask
                count += 1
        except AnnotationError as exc:
            report.problems.append(FolderProblem(layout.relative(exc.path), exc.reason))
            continue
        report.regions_per_image.append(count)
        report.coverage.append(float(union.mean()))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 clean, 1 problems found in files)."""
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.check",
        description="Check a segmented-image folder (images/ plus masks) before a long training run.",
    )
    parser.add_argument("root", metavar="DIR", type=Path, help="dataset folder")
    parser.add_argument("--mask-format", choices=MASK_FORMATS, default="auto", help="how masks are stored")
    parser.add_argument("--images-dir", default="images", help="images folder, relative to DIR")
    parser.add_argument("--masks-dir", default="masks", help="per-image SA-1B JSON / PNG folder, relative to DIR")
    parser.add_argument("--coco-annotations", default="annotations.json", help="COCO instances JSON, relative to DIR")
    parser.add_argument("--panoptic-json", default="panoptic.json", help="COCO panoptic JSON, relative to DIR")
    parser.add_argument("--panoptic-dir", default="panoptic", help="COCO panoptic PNG folder, relative to DIR")
    parser.add_argument("--include-crowd", action="store_true", help="count COCO crowd annotations as regions")
    args = parser.parse_args(argv)
    layout = FolderLayout(
        args.root, args.images_dir, args.masks_dir, args.coco_annotations, args.panoptic_json, args.panoptic_dir
    )
    # A folder that cannot be checked at all (missing, no images/, unknown mask format) is a user error: run_command
    # reports it as one ``error:`` line with exit status 2. Problems with single files are listed in the report.
    report = check_folder(layout, args.mask_format, include_crowd=args.include_crowd)
    print("\n".join(report.lines()))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(run_command(main))
