"""Which edit-benchmark format a folder holds, and reading it with the matching reader.

Auto-detection looks at the root only:

- ``mapping_file.json`` whose entries have ``target_image_path``: a shapes export (``"shapes"``);
- ``mapping_file.json`` otherwise: PIE-Bench (``"pie_bench"``);
- ``images.json``: Learnable Regions (``"learnable_regions"``);
- both index files, or neither: an error asking for an explicit ``format``.

A shapes export can also be read as ``"pie_bench"``, which ignores its ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from interpedit.benchmarks.edit_sample import BenchmarkError, EditSample, read_json_object
from interpedit.benchmarks.learnable_regions import IMAGES_JSON, read_learnable_regions
from interpedit.benchmarks.pie_bench import MAPPING_FILE, read_pie_bench
from interpedit.benchmarks.shapes_benchmark import is_shapes_mapping, read_shapes_benchmark

BENCHMARK_READERS: dict[str, Callable[[str | Path], list[EditSample]]] = {
    "pie_bench": read_pie_bench,
    "learnable_regions": read_learnable_regions,
    "shapes": read_shapes_benchmark,
}
"""Format name -> reader."""


def detect_benchmark_format(root: str | Path) -> str:
    """The format of a benchmark folder (see the module docstring).

    Raises:
        BenchmarkError: no root, no index file, both index files, or a mapping file that mixes shapes entries
            with plain ones.
    """
    root = Path(root)
    if not root.is_dir():
        raise BenchmarkError(root, "benchmark folder does not exist")
    mapping, images_json = root / MAPPING_FILE, root / IMAGES_JSON
    if mapping.is_file() and images_json.is_file():
        raise BenchmarkError(
            root,
            f"holds both {MAPPING_FILE} (PIE-Bench or shapes) and {IMAGES_JSON} (Learnable Regions); "
            "set format to pie_bench, shapes or learnable_regions",
        )
    if mapping.is_file():
        return "shapes" if is_shapes_mapping(read_json_object(mapping), mapping) else "pie_bench"
    if images_json.is_file():
        return "learnable_regions"
    raise BenchmarkError(
        root, f"no benchmark index: expected {MAPPING_FILE} (PIE-Bench or shapes) or {IMAGES_JSON} (Learnable Regions)"
    )


def read_edit_benchmark(root: str | Path, format: str = "auto") -> list[EditSample]:
    """Index a benchmark folder.

    Args:
        root: the benchmark folder.
        format: ``"auto"``, ``"pie_bench"``, ``"learnable_regions"`` or ``"shapes"``.

    Returns:
        The samples, in the index file's order.

    Raises:
        ValueError: unknown format.
        BenchmarkError: detection failed, or a bad entry (the message names the file and the entry).
    """
    if format == "auto":
        format = detect_benchmark_format(root)
    if format not in BENCHMARK_READERS:
        raise ValueError(f"format: unknown benchmark format {format!r}; choose auto, {', '.join(BENCHMARK_READERS)}")
    return BENCHMARK_READERS[format](root)
