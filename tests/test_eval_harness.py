"""eval.py over edit benchmarks: reference methods bound the metrics, reports are written, DDP agrees with 1 process."""

from __future__ import annotations

import csv
import glob
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from eval import cli_main as eval_main
from interpedit.masks.rle import mask_to_pie_rle
from interpedit.shapes import export_benchmark

REPO = Path(__file__).resolve().parents[1]
SHAPES_IDENTITY = str(REPO / "configs/eval/shapes/identity.yaml")
SHAPES_ORACLE = str(REPO / "configs/eval/shapes/oracle.yaml")
IDEAL_GROUND_TRUTH = {
    "gt/psnr_edited": 100.0,
    "gt/psnr_unedited": 100.0,
    "gt/ssim_edited": 1.0,
    "gt/ssim_unedited": 1.0,
    "gt/region_iou": 1.0,
    "gt/colour_accuracy": 1.0,
    "gt/shape_accuracy": 1.0,
    "gt/object_iou": 1.0,
    "gt/object_found": 1.0,
    "gt/centroid_error": 0.0,
}


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)


def write_pie_bench(root: Path, count: int = 6, size: int = 64) -> None:
    """A PIE-Bench-layout folder of random 'photographs' with rectangular edit masks."""
    rng = np.random.default_rng(0)
    mapping = {}
    for i in range(count):
        image_id = f"{i:012d}"
        relative = f"{i % 3}_type/{image_id}.jpg"
        path = root / "annotation_images" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=95)
        mask = np.zeros((size, size), dtype=bool)
        mask[8 + i : 30 + i, 10 : 40 - i] = True
        mapping[image_id] = {
            "image_path": relative,
            "original_prompt": "a photo of a [cat]",
            "editing_prompt": "a photo of a [dog]",
            "editing_instruction": "turn the cat into a dog",
            "editing_type_id": str(i % 3),
            "blended_word": "cat dog",
            "mask": mask_to_pie_rle(mask),
        }
    (root / "mapping_file.json").write_text(json.dumps(mapping))


def run_eval(config: str, root: Path, out: Path, *extra: str) -> Path:
    eval_main(["--config", config, "--data.init_args.root", str(root), "--trainer.default_root_dir", str(out),
               "--trainer.enable_progress_bar", "false", *extra])
    (run_dir,) = glob.glob(str(out / "lightning_logs/version_*"))
    return Path(run_dir)


def test_identity_on_pie_bench_layout_is_ideal_for_preservation(tmp_path):
    write_pie_bench(tmp_path / "pie")
    run_dir = run_eval(SHAPES_IDENTITY, tmp_path / "pie", tmp_path / "out", "--data.init_args.batch_size", "4")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == "identity" and metrics["num_images"] == 6
    assert metrics["structure/distance"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["background/mse"] == 0.0
    assert metrics["background/psnr"] == 100.0  # the documented cap for identical backgrounds
    assert metrics["background/ssim"] == pytest.approx(1.0, abs=1e-6)
    # The shapes CLIP knows no "cat" or "dog": both prompts embed alike, so the text direction is undefined and
    # directional CLIP is left out, never reported as a number.
    assert "clip/directional" not in metrics
    assert not any(key.startswith("gt/") for key in metrics)  # no ground truth in PIE-Bench
    assert metrics["config"]["model"]["init_args"]["method"]["class_path"] == "interpedit.editing.IdentityEdit"
    rows = list(csv.DictReader((run_dir / "per_image.csv").open()))
    assert [r["image_id"] for r in rows] == [f"{i:012d}" for i in range(6)]
    table = (run_dir / "metrics.md").read_text()
    assert "| all | 6 |" in table and "| change object | 2 |" in table  # split by edit type
    saved = np.asarray(Image.open(run_dir / "images/000000000003.png"))
    source = np.asarray(Image.open(tmp_path / "pie/annotation_images/0_type/000000000003.jpg").convert("RGB"))
    assert np.array_equal(saved, source)


def test_oracle_is_ideal_on_ground_truth_and_the_comparison_table_has_both(tmp_path, capsys):
    export_benchmark(tmp_path / "shapes", 16, seed=5)
    oracle = run_eval(SHAPES_ORACLE, tmp_path / "shapes", tmp_path / "oracle")
    identity = run_eval(SHAPES_IDENTITY, tmp_path / "shapes", tmp_path / "identity")
    metrics = json.loads((oracle / "metrics.json").read_text())
    for name, ideal in IDEAL_GROUND_TRUTH.items():
        assert metrics[name] == pytest.approx(ideal, abs=1e-6), name
    assert json.loads((identity / "metrics.json").read_text())["gt/psnr_edited"] < 40.0
    events = EventAccumulator(glob.glob(str(oracle / "events.out.tfevents.*"))[0])
    events.Reload()
    assert any(tag.startswith("test/grid_0") for tag in events.Tags()["images"])
    assert "test/gt/psnr_edited" in events.Tags()["scalars"]

    table = eval_main(["compare", str(identity), str(oracle), "--out", str(tmp_path / "table.md")])
    lines = table.splitlines()
    assert lines[2].startswith("| identity | 16 |") and lines[3].startswith("| oracle | 16 |")
    assert (tmp_path / "table.md").read_text().strip() == table


def test_bad_benchmark_entry_is_named(tmp_path):
    write_pie_bench(tmp_path / "pie", count=2)
    mapping = json.loads((tmp_path / "pie/mapping_file.json").read_text())
    mapping["000000000001"]["mask"] = [0, 10**6]
    (tmp_path / "pie/mapping_file.json").write_text(json.dumps(mapping))
    with pytest.raises(Exception, match="000000000001"):
        run_eval(SHAPES_IDENTITY, tmp_path / "pie", tmp_path / "out")


@pytest.mark.slow
def test_two_process_bf16_evaluation_matches_one_process(tmp_path):
    export_benchmark(tmp_path / "shapes", 13, seed=9)  # odd: ranks get different numbers of images
    common = ["--data.init_args.batch_size", "2"]
    single = run_eval(SHAPES_ORACLE, tmp_path / "shapes", tmp_path / "one", *common)
    double = run_eval(SHAPES_ORACLE, tmp_path / "shapes", tmp_path / "two", *common,
                      "--config", str(REPO / "configs/trainer/ddp_sim.yaml"))
    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((double / "metrics.json").read_text())
    assert one["num_images"] == two["num_images"] == 13  # no image counted twice, none dropped
    metric_names = [k for k in one if "/" in k]
    assert metric_names == [k for k in two if "/" in k]
    timed = {"cost/seconds", "cost/seconds_count"}  # wall time differs between runs; the counts do not
    for name in metric_names:
        if name not in timed:
            assert two[name] == pytest.approx(one[name], rel=1e-5, abs=1e-6), name
    rows_one = sorted(csv.DictReader((single / "per_image.csv").open()), key=lambda row: row["image_id"])
    rows_two = sorted(csv.DictReader((double / "per_image.csv").open()), key=lambda row: row["image_id"])
    assert [r["image_id"] for r in rows_one] == [r["image_id"] for r in rows_two]
    columns = [name for name in rows_one[0] if "/" in name and name != "cost/seconds"]

    def values(rows):
        return torch.tensor([[float(r[c]) if r[c] else float("nan") for c in columns] for r in rows])

    torch.testing.assert_close(values(rows_one), values(rows_two), equal_nan=True, rtol=1e-5, atol=1e-6)
