"""The closing summary of ``make demo``: where each file is, with each model's headline ground-truth figures.

    python -m interpedit.evaluation.demo_summary --table runs/demo/ground_truth.md \\
        --entry "fresh region autoencoder" runs/demo/eval/region_autoencoder runs/demo/edit_grid.png \\
        --entry "committed region autoencoder" runs/demo/eval/committed_region_autoencoder runs/demo/committed_grid.png \\
        [--skipped "shapes Stable Diffusion methods: pretrained/shapes_stable_diffusion is not there"]

Each ``--entry LABEL RUN GRID`` names an ``eval.py`` run (its directory or ``default_root_dir``) and its edit grid
(``-`` for none). The headline figures are the ground-truth table's columns that have a target
(``interpedit.evaluation.ground_truth_table``), means over the same benchmark for every entry. ``--skipped`` lines
say what the demo did not run and why.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from interpedit.evaluation.ground_truth_table import COLUMNS, TARGETS, column_means, run_directory
from interpedit.evaluation.report import _format
from interpedit.user_errors import MissingFileError, run_command

def headline(run: str | Path) -> str:
    """``reconstruction 27.3 dB (>= 24) | move IoU 0.84 (>= 0.6) | ...`` for one run; n/a where undefined."""
    _, count, means = column_means(run_directory(run))
    parts = []
    for header, _, _ in COLUMNS:
        if header not in TARGETS:
            continue
        name = header.replace(" (dB)", "").replace(" PSNR", "")
        value = means[header]
        shown = "n/a" if value is None else _format(value) + (" dB" if header.endswith("(dB)") else "")
        parts.append(f"{name} {shown} (target {TARGETS[header]})")
    return f"{count} images: " + " | ".join(parts)


def demo_summary(table: str | Path, entries: Sequence[tuple[str, str, str]], skipped: Sequence[str] = ()) -> str:
    """The summary text (see the module docstring)."""
    table = Path(table)
    if not table.is_file():
        raise MissingFileError(f"{table}: no such ground-truth table (--table)")
    lines = ["", "=== demo summary ===", f"ground-truth table (every model below, one benchmark): {table}"]
    for label, run, grid in entries:
        run_dir = run_directory(run)
        lines.append(f"{label}")
        if grid != "-":
            if not Path(grid).is_file():
                raise MissingFileError(f"{grid}: no such edit grid (--entry {label!r})")
            lines.append(f"  edit grid: {grid}")
        lines.append(f"  metrics: {run_dir / 'metrics.md'}")
        lines.append(f"  {headline(run_dir)}")
    lines.extend("not run: " + " ".join(reason.split()) for reason in skipped)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m interpedit.evaluation.demo_summary",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="the ground-truth table the demo wrote")
    parser.add_argument("--entry", nargs=3, action="append", default=[], metavar=("LABEL", "RUN", "GRID"),
                        help="a model: its label, its eval.py run, and its edit grid (- for none); repeatable")
    parser.add_argument("--skipped", action="append", default=[], help="something the demo did not run, and why")
    args = parser.parse_args(argv)
    text = demo_summary(args.table, [tuple(entry) for entry in args.entry], args.skipped)
    print(text)
    return text


if __name__ == "__main__":
    run_command(main)
