"""The closing summary of ``make demo``: where each file is, with each model's headline ground-truth figures.

    python -m interpedit.evaluation.demo_summary --table runs/demo/ground_truth.md \\
        --entry "fresh region autoencoder" runs/demo/eval/region_autoencoder runs/demo/edit_grid.png \\
        --entry "committed region autoencoder" runs/demo/eval/committed_region_autoencoder runs/demo/committed_grid.png \\
        [--text-table runs/demo/text_edits.md --text-entry "DiffEdit" runs/demo/eval/diffedit -] \\
        [--skipped "shapes Stable Diffusion methods: pretrained/shapes_stable_diffusion is not there"]

Each ``--entry LABEL RUN GRID`` names an ``eval.py`` run (its directory or ``default_root_dir``) and its edit grid
(``-`` for none). The headline figures are the ground-truth table's columns that have a target
(``interpedit.evaluation.ground_truth_table``), means over the same benchmark for every entry. ``--text-entry``
names a run on the text-edit benchmark, summarised by the text columns of ``--text-table``. ``--skipped`` lines
say what the demo did not run and why.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from interpedit.evaluation.ground_truth_table import COLUMN_SETS, column_means, run_directory
from interpedit.evaluation.report import _format
from interpedit.user_errors import MissingFileError, OptionError, run_command

def headline(run: str | Path, columns: str = "region") -> str:
    """``reconstruction 27.3 dB (>= 24) | move IoU 0.84 (>= 0.6) | ...`` for one run; n/a where undefined."""
    chosen, targets = COLUMN_SETS[columns]
    _, count, means = column_means(run_directory(run), chosen)
    parts = []
    for header, _, _ in chosen:
        if header not in targets:
            continue
        name = header.replace(" (dB)", "").replace(" PSNR", "")
        value = means[header]
        shown = "n/a" if value is None else _format(value) + (" dB" if header.endswith("(dB)") else "")
        parts.append(f"{name} {shown} (target {targets[header]})")
    return f"{count} images: " + " | ".join(parts)


def _entry_lines(entries: Sequence[tuple[str, str, str]], columns: str, option: str) -> list[str]:
    lines = []
    for label, run, grid in entries:
        run_dir = run_directory(run)
        lines.append(f"{label}")
        if grid != "-":
            if not Path(grid).is_file():
                raise MissingFileError(f"{grid}: no such edit grid ({option} {label!r})")
            lines.append(f"  edit grid: {grid}")
        lines.append(f"  metrics: {run_dir / 'metrics.md'}")
        lines.append(f"  {headline(run_dir, columns)}")
    return lines


def demo_summary(table: str | Path, entries: Sequence[tuple[str, str, str]], skipped: Sequence[str] = (),
                 text_table: str | Path | None = None, text_entries: Sequence[tuple[str, str, str]] = ()) -> str:
    """The summary text (see the module docstring)."""
    table = Path(table)
    if not table.is_file():
        raise MissingFileError(f"{table}: no such ground-truth table (--table)")
    if text_entries and text_table is None:
        raise OptionError("--text-entry needs --text-table (the table of the text-edit benchmark)")
    if text_table is not None and not Path(text_table).is_file():
        raise MissingFileError(f"{text_table}: no such ground-truth table (--text-table)")
    lines = ["", "=== demo summary ===", f"ground-truth table (every model below, one benchmark): {table}"]
    lines += _entry_lines(entries, "region", "--entry")
    if text_table is not None:
        lines.append(f"text-edit table (every method below, one recolour/reshape benchmark): {text_table}")
        lines += _entry_lines(text_entries, "text", "--text-entry")
    lines.extend("not run: " + " ".join(reason.split()) for reason in skipped)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m interpedit.evaluation.demo_summary",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="the ground-truth table the demo wrote")
    parser.add_argument("--entry", nargs=3, action="append", default=[], metavar=("LABEL", "RUN", "GRID"),
                        help="a model: its label, its eval.py run, and its edit grid (- for none); repeatable")
    parser.add_argument("--text-table", default=None, help="the table of the text-edit benchmark (--columns text)")
    parser.add_argument("--text-entry", nargs=3, action="append", default=[], metavar=("LABEL", "RUN", "GRID"),
                        help="a method on the text-edit benchmark, as --entry; repeatable")
    parser.add_argument("--skipped", action="append", default=[], help="something the demo did not run, and why")
    args = parser.parse_args(argv)
    text = demo_summary(args.table, [tuple(entry) for entry in args.entry], args.skipped, args.text_table,
                        [tuple(entry) for entry in args.text_entry])
    print(text)
    return text


if __name__ == "__main__":
    run_command(main)
