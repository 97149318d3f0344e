"""Evaluation reports: per-image CSV, metrics.json, metrics.md, and comparison tables across runs."""

from interpedit.evaluation.report import (
    compare_runs,
    markdown_table,
    mean_by_group,
    write_report,
)

__all__ = ["compare_runs", "markdown_table", "mean_by_group", "write_report"]
