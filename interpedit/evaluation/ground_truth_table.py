"""The shapes-world ground-truth table of region edits: one row per evaluated method, the quantities the region
autoencoder is judged by as columns, and a row of targets.

    python -m interpedit.evaluation.ground_truth_table RUN [RUN ...] [--out table.md]

``RUN`` is an ``eval.py`` run directory (holding ``per_image.csv``) or its ``default_root_dir`` (the newest
``lightning_logs/version_*`` inside is used); ``NAME=RUN`` labels its row NAME instead of the method's class name. Columns, each a mean over the benchmark images where it is defined:

- reconstruction PSNR: ``reconstruction/psnr`` over all images (methods that re-encode the source);
- move IoU, move centroid error (pixels), move found: ``gt/object_iou``, ``gt/centroid_error``, ``gt/object_found``
  over the move edits;
- resize IoU: ``gt/object_iou`` over the resize edits;
- swap colour accuracy: ``gt/colour_accuracy`` over the swap edits;
- remove-region PSNR: ``gt/psnr_edited`` over the remove edits (the infilled pixels against the true background);
- untouched PSNR: ``gt/psnr_unedited`` over all images (outside the true changed region).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from interpedit.evaluation.report import _atomic_write, _format, markdown_table
from interpedit.shapes import EDIT_TYPE_IDS
from interpedit.user_errors import MissingFileError, run_command

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


def run_directory(path: str | os.PathLike[str]) -> Path:
    """The run directory holding ``per_image.csv``: ``path`` itself or its newest ``lightning_logs/version_*``."""
    path = Path(path)
    if (path / "per_image.csv").is_file():
        return path
    versions = sorted(path.glob("lightning_logs/version_*/per_image.csv"), key=lambda p: p.stat().st_mtime)
    if not versions:
        raise MissingFileError(f"{path}: no per_image.csv here or in lightning_logs/version_*; did eval.py finish?")
    return versions[-1].parent


def column_means(run_dir: Path) -> tuple[str, int, dict[str, float | None]]:
    """(method, images, header -> mean) of one run."""
    with open(run_dir / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    method = json.loads((run_dir / "metrics.json").read_text()).get("method", run_dir.name)
    means: dict[str, float | None] = {}
    for header, metric, edit in COLUMNS:
        wanted = None if edit is None else EDIT_TYPE_IDS[edit]
        values = [
            float(row[metric])
            for row in rows
            if (wanted is None or row["edit_type_id"] == wanted) and row.get(metric) not in (None, "")
            and not math.isnan(float(row[metric]))
        ]
        means[header] = sum(values) / len(values) if values else None
    return method, len(rows), means


def labelled_run(argument: str | os.PathLike[str]) -> tuple[str | None, Path]:
    """``"NAME=RUN"`` -> (NAME, RUN); a plain ``RUN`` -> (None, RUN)."""
    text = os.fspath(argument)
    name, separator, run = text.partition("=")
    if separator and name and not os.path.exists(text):
        return name, Path(run)
    return None, Path(text)


def ground_truth_table(run_dirs: Sequence[str | os.PathLike[str]]) -> str:
    """The markdown table (see the module docstring); each entry is a ``RUN`` or ``NAME=RUN``."""
    rows = []
    for argument in run_dirs:
        name, path = labelled_run(argument)
        method, count, means = column_means(run_directory(path))
        rows.append([name or method, str(count), *[_format(means[h]) for h, _, _ in COLUMNS]])
    rows.append(["target", "", *[TARGETS.get(h, "") for h, _, _ in COLUMNS]])
    return markdown_table(["method", "images", *[h for h, _, _ in COLUMNS]], rows)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m interpedit.evaluation.ground_truth_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="eval.py run directories or default_root_dirs, each RUN or NAME=RUN")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    table = ground_truth_table(args.runs)
    if args.out:
        _atomic_write(Path(args.out), table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    run_command(main)
