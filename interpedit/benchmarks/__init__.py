"""Edit benchmarks: PIE-Bench, Learnable Regions' images.json, and shapes-world exports with exact ground truth.

Three lines from a notebook::

    samples = read_edit_benchmark("data/PIE-Bench")          # format detected; bad entries raise BenchmarkError
    dataset = EditBenchmarkDataset(samples, resolution=512)
    item = dataset[0]  # item["source_image"], item["edit_mask"], item["target_prompt"], ...
"""

from interpedit.benchmarks.benchmark_format import BENCHMARK_READERS, detect_benchmark_format, read_edit_benchmark
from interpedit.benchmarks.edit_benchmark_dataset import EditBenchmarkDataset, collate_edit_samples
from interpedit.benchmarks.edit_sample import BenchmarkError, EditSample, ShapesGroundTruth
from interpedit.benchmarks.edit_types import (
    EDIT_TYPE_NAMES,
    LEARNABLE_REGIONS_EDIT_TYPE_ID,
    PIE_BENCH_EDIT_TYPES,
    edit_type_name,
    resolve_edit_type,
)
from interpedit.benchmarks.learnable_regions import read_learnable_regions
from interpedit.benchmarks.pie_bench import check_pie_rle, decode_mask, read_pie_bench
from interpedit.benchmarks.shapes_benchmark import is_shapes_mapping, read_shapes_benchmark

__all__ = [
    "BENCHMARK_READERS",
    "EDIT_TYPE_NAMES",
    "LEARNABLE_REGIONS_EDIT_TYPE_ID",
    "PIE_BENCH_EDIT_TYPES",
    "BenchmarkError",
    "EditBenchmarkDataset",
    "EditSample",
    "ShapesGroundTruth",
    "check_pie_rle",
    "collate_edit_samples",
    "decode_mask",
    "detect_benchmark_format",
    "edit_type_name",
    "is_shapes_mapping",
    "read_edit_benchmark",
    "read_learnable_regions",
    "read_pie_bench",
    "read_shapes_benchmark",
    "resolve_edit_type",
]
