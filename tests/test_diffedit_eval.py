"""DiffEdit and the DDIM-inversion baseline through eval.py, with every shipped config, on tiny random pipelines."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from eval import cli_main as eval_main
from interpedit.shapes import export_benchmark
from tests.tiny_components import tiny_sd_dir, tiny_shapes_sd_dir  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[1]
FAST = {"num_inference_steps": "4", "guidance_scale": "3.0"}
FAST_DIFFEDIT = {**FAST, "num_maps_per_mask": "2"}


@pytest.fixture(scope="module")
def text_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-text")
    export_benchmark(root, 4, seed=5, resolution=64, edits=("recolour", "reshape"))
    return root


def run_eval(config, pipeline, bench, out, overrides, stacked=()):
    args = ["--config", str(REPO / config)]
    for extra in stacked:
        args += ["--config", str(REPO / extra)]
    args += ["--data.init_args.root", str(bench), "--data.init_args.batch_size", "2", "--data.init_args.num_workers",
             "0", "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
             "--trainer.accelerator", "cpu", "--model.init_args.method.init_args.pipeline", str(pipeline)]
    for key, value in overrides.items():
        args += [f"--model.init_args.method.init_args.{key}", value]
    eval_main(args)
    (run_dir,) = glob.glob(str(Path(out) / "lightning_logs/version_*"))
    return json.loads((Path(run_dir) / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("config", "overrides", "has_region"),
    [
        ("configs/eval/shapes/diffedit.yaml", FAST_DIFFEDIT, True),
        ("configs/eval/shapes/diffedit_diffusers_compat.yaml", FAST_DIFFEDIT, True),
        ("configs/eval/shapes/ddim_inversion.yaml", FAST, False),
    ],
)
def test_shapes_configs_run_through_eval_py(config, overrides, has_region, tiny_shapes_sd_dir, text_bench, tmp_path,
                                            monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    metrics = run_eval(config, tiny_shapes_sd_dir, text_bench, tmp_path / "out", overrides)
    assert metrics["cost/unet_forwards"] > 0 and metrics["gt/psnr_unedited"] > 0
    # The evaluation's edit grid is saved beside its metrics, with its column names (the demo points at it).
    (run_dir,) = glob.glob(str(tmp_path / "out" / "lightning_logs/version_*"))
    grid = Image.open(Path(run_dir) / "test_grid_0.png")
    columns = (Path(run_dir) / "test_grid_0.txt").read_text().strip().split(" | ")
    assert columns[:2] == ["source", "edited"] and grid.width > len(columns) * 32
    assert metrics["gt/colour_accuracy"] >= 0 and metrics["gt/shape_accuracy"] >= 0
    region = metrics.get("gt/region_iou")
    assert (region is not None and region == region) if has_region else region is None or region != region


@pytest.mark.parametrize("config", ["configs/eval/diffedit.yaml", "configs/eval/diffedit_sd21.yaml",
                                    "configs/eval/ddim_inversion.yaml", "configs/eval/ddim_inversion_sd21.yaml"])
def test_hub_configs_run_on_a_local_folder_with_the_shapes_metrics(config, tiny_sd_dir, text_bench, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    overrides = {**(FAST_DIFFEDIT if "diffedit" in config else FAST), "torch_dtype": "float32"}
    metrics = run_eval(config, tiny_sd_dir, text_bench, tmp_path / "out", overrides,
                       stacked=["configs/eval/metrics/shapes.yaml"])
    assert metrics["cost/unet_forwards"] > 0 and "clip/directional" in metrics


@pytest.mark.parametrize(("config", "pipeline_fixture"), [
    ("configs/eval/shapes/guide_and_rescale.yaml", "tiny_shapes_sd_dir"),
    ("configs/eval/shapes/guide_and_rescale_fast.yaml", "tiny_shapes_sd_dir"),
    ("configs/eval/guide_and_rescale.yaml", "tiny_sd_dir"),
    ("configs/eval/guide_and_rescale_style.yaml", "tiny_sd_dir"),
])
def test_guide_and_rescale_configs_run_through_eval_py(config, pipeline_fixture, text_bench, tmp_path, monkeypatch,
                                                       request):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    folder = request.getfixturevalue(pipeline_fixture)
    stacked = [] if "shapes" in config else ["configs/eval/metrics/shapes.yaml"]
    metrics = run_eval(config, folder, text_bench, tmp_path / "out", {**FAST, "guided_steps": "2"}, stacked=stacked)
    # 2 guided steps with a gradient pass per image: of cur_src (non-style), of cur_src and cur_trg (style), of
    # cur_trg (fast).
    assert metrics["cost/unet_backwards"] == 2 * (2 if "style" in config else 1)
    if "fast" in config:  # FAST's steps: uncond + cur_trg at every step, the inversion, no inv_src pass
        steps = int(FAST["num_inference_steps"])
        assert metrics["cost/unet_forwards"] == steps + 2 * steps
    assert metrics["cost/unet_forwards"] > 4
    assert metrics["gt/psnr_unedited"] > 0
