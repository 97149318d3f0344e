"""Learnable Regions through eval.py with its shipped configs, on tiny random components; the released layout;
a bad shared-AnchorNet file."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pytest
import torch

from eval import cli_main as eval_main
from interpedit.shapes import export_benchmark
from tests.tiny_components import (  # noqa: F401  (pytest fixtures)
    tiny_clip_dir,
    tiny_inpainting_dir,
    tiny_shapes_inpainting_dir,
    tiny_vit_dir,
)

REPO = Path(__file__).resolve().parents[1]
FAST = {"inpainting_steps": "2", "num_views": "2", "num_anchors": "2"}


@pytest.fixture(scope="module")
def text_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-lr")
    export_benchmark(root, 3, seed=6, resolution=64, edits=("recolour", "reshape"))
    return root


def run_eval(config, bench, out, overrides, stacked=()):
    args = ["--config", str(REPO / config)]
    for extra in stacked:
        args += ["--config", str(REPO / extra)]
    args += ["--data.init_args.root", str(bench), "--data.init_args.batch_size", "2", "--data.init_args.num_workers",
             "0", "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
             "--trainer.accelerator", "cpu"]
    for key, value in overrides.items():
        args += [f"--model.init_args.method.init_args.{key}", value]
    eval_main(args)
    (run_dir,) = glob.glob(str(Path(out) / "lightning_logs/version_*"))
    return json.loads((Path(run_dir) / "metrics.json").read_text()), Path(run_dir)


@pytest.mark.parametrize("config", ["configs/eval/shapes/learnable_regions.yaml",
                                    "configs/eval/shapes/learnable_regions_soft_mask.yaml",
                                    "configs/eval/shapes/learnable_regions_fixed_anchors.yaml"])
def test_shapes_configs_run_through_eval_py(config, tiny_shapes_inpainting_dir, text_bench, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    clip = str(tiny_shapes_inpainting_dir.parent / "clip")
    steps = 0 if "fixed" in config else 1  # the baseline config never updates AnchorNet
    overrides = {**FAST, "inpainting": str(tiny_shapes_inpainting_dir), "backbone": clip, "clip": clip,
                 "half_sizes": "[0, 1]", "released_layout_dir": str(tmp_path / "released")}
    if steps:
        overrides["optimisation_steps"] = str(steps)
    metrics, _ = run_eval(config, text_bench, tmp_path / "out", overrides)
    assert metrics["gt/region_iou"] == metrics["gt/region_iou"] and metrics["gt/psnr_unedited"] > 0
    # Per image: (steps x 2 anchors x 2 draws + 2 final candidates) x 2 sampler steps x 2 CFG branches; the soft
    # mask inpaints each anchor once per step and backpropagates through the last sampler step.
    soft = "soft_mask" in config
    assert metrics["cost/unet_forwards"] == (steps * (2 if soft else 4) + 2) * 2 * 2
    assert metrics["cost/unet_backwards"] == (steps * 2 * 1 * 2 if soft else 0)
    folders = sorted((tmp_path / "released").iterdir())
    assert len(folders) == 3 and all((f / "results/final_output.png").is_file() for f in folders)
    assert len(list((folders[0] / "results").glob("*anchor*.png"))) == 2
    assert len(list((folders[0] / "boxes").glob("*_ori_draw.png"))) == 2


def test_the_photograph_config_runs_on_local_folders(tiny_inpainting_dir, tiny_vit_dir, tiny_clip_dir, text_bench,
                                                    tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    overrides = {**FAST, "optimisation_steps": "1", "inpainting": str(tiny_inpainting_dir), "backbone": str(tiny_vit_dir),
                 "clip": str(tiny_clip_dir), "torch_dtype": "float32", "backbone_image_size": "64",
                 "half_sizes": "[1, 2]", "border": "3"}
    metrics, _ = run_eval("configs/eval/learnable_regions.yaml", text_bench, tmp_path / "out", overrides,
                          stacked=["configs/eval/metrics/shapes.yaml"])
    assert metrics["cost/unet_forwards"] > 0 and "clip/directional" in metrics


def test_a_shared_anchor_net_file_must_exist_and_fit(tiny_shapes_inpainting_dir, tmp_path):
    from interpedit.editing import LearnableRegionsEdit

    clip = str(tiny_shapes_inpainting_dir.parent / "clip")
    kwargs = dict(backbone=clip, clip=clip, backbone_image_size=64, num_anchors=2, half_sizes=(0, 1), border=1)
    with pytest.raises(FileNotFoundError, match="anchor_net: no file at"):
        LearnableRegionsEdit(str(tiny_shapes_inpainting_dir), anchor_net=str(tmp_path / "missing.ckpt"), **kwargs)
    torch.save({"anchor_net.size_head.weight": torch.zeros(7, 4)}, tmp_path / "wrong.ckpt")
    with pytest.raises(RuntimeError, match="size_head.weight"):
        LearnableRegionsEdit(str(tiny_shapes_inpainting_dir), anchor_net=str(tmp_path / "wrong.ckpt"), **kwargs)
