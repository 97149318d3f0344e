"""The shapes-world ground-truth tables: one row per evaluated method, the quantities its edits are judged by as
columns, and a row of targets.

    python -m interpedit.evaluation.ground_truth_table RUN [RUN ...] [--columns region|text] [--out table.md]

``RUN`` is an ``eval.py`` run directory (holding ``per_image.csv``) or its ``default_root_dir`` (the newest
``lightning_logs/version_*`` inside is used); ``NAME=RUN`` labels its row NAME instead of the method's class name. Columns, each a mean over the benchmark images where it is defined:

- reconstruction PSNR: ``reconstruction/psnr`` over all images (methods that re-encode the source);
- move IoU, move centroid error (pixels), move found: ``gt/object_iou``, ``gt/centroid_error``, ``gt/object_found``
  over the move edits;
- resize IoU: ``gt/object_iou`` over the resize edits;
- swap colour accuracy: ``gt/colour_accuracy`` over the swap edits;
- remove-region PSNR: ``gt/psnr_edited`` over the remove edits (the infilled pixels against the true background);
- untouched PSNR: ``gt/psnr_unedited`` over all images (outside the true changed region).

``--columns text`` gives the table of text-driven edits (recolour and reshape benchmarks; DiffEdit, DDIM inversion,
Guide-and-Rescale, Learnable Regions, h-space): edit-region IoU (``gt/region_iou``), attribute accuracy (colour
accuracy on recolour edits and shape accuracy on reshape edits, together and apart), untouched PSNR, structure
distance (``structure/distance``) and UNet forwards per image (``cost/unet_forwards``), with DiffEdit's targets.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interpedit.evaluation.report import _atomic_write, _format, markdown_table
from interpedit.shapes import EDIT_TYPE_IDS
from interpedit.user_errors import MissingFileError, OptionError, run_command

COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("reconstruction PSNR (dB)", "reconstruction/psnr", None),
    ("move IoU", "gt/object_iou", "move"),
    ("move centroid error (px)", "gt/centroid_error", "move"),
    ("move found", "gt/object_found", "move"),
    ("resize IoU", "gt/object_iou", "resize"),
    ("swap colour acc.", "gt/colour_accuracy", "swap"),
    ("remove-region PSNR (dB)", "gt/psnr_edited", "remove"),
    ("untouched PSNR (dB)", "gt/psnr_unedited", None),
)
"""(header, per-image metric, shapes edit type or None for all images)."""

TARGETS = {
    "reconstruction PSNR (dB)": ">= 24",
    "move IoU": ">= 0.6",
    "remove-region PSNR (dB)": ">= 22",
    "untouched PSNR (dB)": ">= 24",
}
"""Issue 4's targets for 32x32 scenes on solid or gradient backgrounds."""

TEXT_COLUMNS: tuple[tuple[str, str | dict[str, str], str | None], ...] = (
    ("edit-region IoU", "gt/region_iou", None),
    ("attribute acc.", {"recolour": "gt/colour_accuracy", "reshape": "gt/shape_accuracy"}, None),
    ("recolour colour acc.", "gt/colour_accuracy", "recolour"),
    ("reshape shape acc.", "gt/shape_accuracy", "reshape"),
    ("untouched PSNR (dB)", "gt/psnr_unedited", None),
    ("structure distance", "structure/distance", None),
    ("UNet forwards", "cost/unet_forwards", None),
)
"""Text-driven edits; a dict metric reads, for each image, the metric of its edit type."""

TEXT_TARGETS = {
    "edit-region IoU": ">= 0.5",
    "attribute acc.": ">= 0.7",
    "untouched PSNR (dB)": ">= 28",
}
"""DiffEdit's targets on 64 px recolour and reshape edits (issue 6)."""

COLUMN_SETS = {"region": (COLUMNS, TARGETS), "text": (TEXT_COLUMNS, TEXT_TARGETS)}
"""``--columns`` name -> (columns, targets)."""


def run_directory(path: str | os.PathLike[str]) -> Path:
    """The run directory holding ``per_image.csv``: ``path`` itself or its newest ``lightning_logs/version_*``."""
    path = Path(path)
    if (path / "per_image.csv").is_file():
        return path
    versions = sorted(path.glob("lightning_logs/version_*/per_image.csv"), key=lambda p: p.stat().st_mtime)
    if not versions:
        raise MissingFileError(f"{path}: no per_image.csv here or in lightning_logs/version_*; did eval.py finish?")
    return versions[-1].parent


def column_means(run_dir: Path, columns: Sequence[tuple[str, Any, str | None]] = COLUMNS,
                 ) -> tuple[str, int, dict[str, float | None]]:
    """(method, images, header -> mean) of one run."""
    with open(run_dir / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    method = json.loads((run_dir / "metrics.json").read_text()).get("method", run_dir.name)
    edit_names = {ident: name for name, ident in EDIT_TYPE_IDS.items()}
    means: dict[str, float | None] = {}
    for header, metric, edit in columns:
        wanted = None if edit is None else EDIT_TYPE_IDS[edit]
        values = []
        for row in rows:
            if wanted is not None and row.get("edit_type_id") != wanted:
                continue
            name = metric.get(edit_names.get(row.get("edit_type_id", ""), "")) if isinstance(metric, dict) else metric
            if name is None or row.get(name) in (None, "") or math.isnan(float(row[name])):
                continue
            values.append(float(row[name]))
        means[header] = sum(values) / len(values) if values else None
    return method, len(rows), means


def labelled_run(argument: str | os.PathLike[str]) -> tuple[str | None, Path]:
    """``"NAME=RUN"`` -> (NAME, RUN); a plain ``RUN`` -> (None, RUN)."""
    text = os.fspath(argument)
    name, separator, run = text.partition("=")
    if separator and name and not os.path.exists(text):
        return name, Path(run)
    return None, Path(text)


def ground_truth_table(run_dirs: Sequence[str | os.PathLike[str]], columns: str = "region") -> str:
    """The markdown table (see the module docstring); each entry is a ``RUN`` or ``NAME=RUN``; ``columns`` names a
    set of ``COLUMN_SETS``."""
    if columns not in COLUMN_SETS:
        raise OptionError(f"--columns: {columns!r} is not one of {', '.join(COLUMN_SETS)}")
    chosen, targets = COLUMN_SETS[columns]
    rows = []
    for argument in run_dirs:
        name, path = labelled_run(argument)
        method, count, means = column_means(run_directory(path), chosen)
        rows.append([name or method, str(count), *[_format(means[h]) for h, _, _ in chosen]])
    rows.append(["target", "", *[targets.get(h, "") for h, _, _ in chosen]])
    return markdown_table(["method", "images", *[h for h, _, _ in chosen]], rows)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m interpedit.evaluation.ground_truth_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="eval.py run directories or default_root_dirs, each RUN or NAME=RUN")
    parser.add_argument("--columns", default="region",
                        help="region (region-autoencoder edits, the default) or text (text-driven edits)")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    table = ground_truth_table(args.runs, args.columns)
    if args.out:
        _atomic_write(Path(args.out), table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    run_command(main)
