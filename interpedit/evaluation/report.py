"""Write an evaluation's results and compare several evaluations.

A run directory holds:

- ``per_image.csv``: one row per benchmark image: ``image_id``, ``edit_type_id``, ``edit_type``, then one column per
  metric (empty where a metric is undefined for that image, e.g. background metrics when the mask covers all).
- ``metrics.json``: one key per metric, ``<group>/<metric>`` (``background/psnr``, ``gt/psnr_edited``,
  ``clip/whole``), each the mean over the images where it is defined; plus ``method``, ``num_images``,
  ``unavailable`` (metrics that could not be computed, e.g. LPIPS without its backbone weights: never a number),
  and ``config`` (the resolved run config).
- ``metrics.md``: the same numbers as a table, overall and split by edit type.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from interpedit.user_errors import MissingFileError

ROW_KEYS = ("image_id", "edit_type_id", "edit_type")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _defined(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def mean_by_group(rows: Sequence[Mapping[str, Any]], metric_names: Sequence[str], key: str = "edit_type"
                  ) -> dict[str, dict[str, float | None]]:
    """Mean of each metric over the rows of each group (``key``), skipping rows where it is undefined."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row[key]), []).append(row)
    table = {}
    for group in sorted(groups):
        table[group] = {}
        for name in metric_names:
            values = [float(r[name]) for r in groups[group] if _defined(r.get(name))]
            table[group][name] = sum(values) / len(values) if values else None
    return table


def _format(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats get 4 decimals and undefined values read ``n/a``."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        cells = [cell if isinstance(cell, str) else _format(cell) for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    run_dir: str | os.PathLike[str],
    method: str,
    rows: Sequence[Mapping[str, Any]],
    overall: Mapping[str, float | None],
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``per_image.csv``, ``metrics.json`` and ``metrics.md`` into ``run_dir`` (each atomically).

    Args:
        run_dir: the evaluation's run directory.
        method: the method's name.
        rows: per-image rows with ``image_id``, ``edit_type_id``, ``edit_type`` and metric values.
        overall: metric name -> mean over all images (None where unavailable).
        config: the resolved run config.

    Returns:
        The ``metrics.json`` content.
    """
    run_dir = Path(run_dir)
    metric_names = sorted(overall)
    rows = sorted(rows, key=lambda r: str(r["image_id"]))

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*ROW_KEYS, *metric_names])
    for row in rows:
        writer.writerow([row[k] for k in ROW_KEYS] + [row.get(n) if _defined(row.get(n)) else "" for n in metric_names])
    _atomic_write(run_dir / "per_image.csv", buffer.getvalue())

    summary: dict[str, Any] = {
        name: (None if value is None else float(value)) for name, value in overall.items() if value is not None
    }
    summary.update(
        method=method,
        num_images=len(rows),
        unavailable=sorted(name for name, value in overall.items() if value is None),
        config=dict(config or {}),
    )
    _atomic_write(run_dir / "metrics.json", json.dumps(summary, indent=2, default=str) + "\n")

    available = [n for n in metric_names if overall[n] is not None]
    by_type = mean_by_group(rows, available)
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["edit_type"])] = counts.get(str(row["edit_type"]), 0) + 1
    table_rows = [["all", str(len(rows)), *[overall[n] for n in available]]]
    table_rows += [[group, str(counts[group]), *[by_type[group][n] for n in available]] for group in by_type]
    text = [f"# {method}: {len(rows)} images", "", markdown_table(["edit type", "images", *available], table_rows)]
    if summary["unavailable"]:
        text += ["", "Unavailable: " + ", ".join(summary["unavailable"]) + "."]
    _atomic_write(run_dir / "metrics.md", "\n".join(text) + "\n")
    return summary


def compare_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> str:
    """One markdown table comparing the ``metrics.json`` of several runs: a row per run, a column per metric.

    Raises:
        FileNotFoundError: a run directory has no metrics.json (it did not finish).
    """
    summaries = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise MissingFileError(f"{path}: no metrics.json; is {run_dir} the run directory of a finished eval.py?")
        summaries.append(json.loads(path.read_text()))
    reserved = {"method", "num_images", "unavailable", "config"}
    names = sorted({k for s in summaries for k in s if k not in reserved})
    rows = [[s["method"], str(s["num_images"]), *[s.get(n) for n in names]] for s in summaries]
    return markdown_table(["method", "images", *names], rows)
