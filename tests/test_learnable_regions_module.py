"""The AnchorNet per-image optimiser as a LightningModule: train.py fit trains the shared AnchorNet, eval.py starts
each batch from it, optimises, edits, and logs curves and images to TensorBoard."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import torch

from eval import cli_main as eval_main
from interpedit.shapes import export_benchmark
from tests.tiny_components import tiny_shapes_inpainting_dir  # noqa: F401  (pytest fixture)
from train import cli_main as train_main

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs/shapes/learnable_regions.yaml")


def overrides(folder, bench, out):
    clip = str(folder.parent / "clip")
    args = {"inpainting": str(folder), "backbone": clip, "clip": clip, "num_anchors": "2", "half_sizes": "[0, 1]",
            "optimisation_steps": "2", "inpainting_steps": "2", "num_views": "2", "log_batches": "1"}
    flat = ["--config", CONFIG, "--data.init_args.root", str(bench), "--data.init_args.batch_size", "2",
            "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu"]
    for key, value in args.items():
        flat += [f"--model.init_args.{key}", value]
    return flat


def scalar_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return set(events.Tags()["scalars"]), set(events.Tags()["images"])


def test_fit_trains_the_shared_anchor_net_and_eval_optimises_from_it(tiny_shapes_inpainting_dir, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.chdir(REPO)
    export_benchmark(tmp_path / "train", 4, seed=7, resolution=64, edits=("recolour", "reshape"))
    export_benchmark(tmp_path / "test", 2, seed=8, resolution=64, edits=("recolour", "reshape"))
    fit_args = overrides(tiny_shapes_inpainting_dir, tmp_path / "train", tmp_path / "fit")
    train_main(["fit", *fit_args, "--trainer.max_steps", "3"])
    (checkpoint,) = glob.glob(str(tmp_path / "fit/checkpoints/last.ckpt"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["global_step"] == 3
    fit_scalars, _ = scalar_tags(tmp_path / "fit/lightning_logs/version_0")
    assert {"train/reward", "train/clip", "train/directional", "train/structure", "train/entropy"} <= fit_scalars

    from lightning_modules.learnable_regions import LearnableRegionsModule

    fresh = LearnableRegionsModule.load_from_checkpoint(checkpoint, map_location="cpu")
    initial = {k: v for k, v in fresh.method.initial_state.items()}
    trained = fresh.shared_anchor_net
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)  # the shared AnchorNet learned

    eval_args = overrides(tiny_shapes_inpainting_dir, tmp_path / "test", tmp_path / "eval")
    eval_main([*eval_args, "--ckpt_path", checkpoint])
    (run_dir,) = glob.glob(str(tmp_path / "eval/lightning_logs/version_*"))
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    # (2 steps x 2 anchors x 2 draws + 2 final candidates) x 2 sampler steps x 2 CFG branches per image.
    assert metrics["cost/unet_forwards"] == (2 * 4 + 2) * 2 * 2
    assert metrics["gt/region_iou"] == metrics["gt/region_iou"]
    scalars, images = scalar_tags(run_dir)
    assert {"test/optimisation/batch0000/reward", "test/optimisation/mean_reward",
            "test/optimisation/mean_structure"} <= scalars
    assert {"test/optimisation/batch0000/boxes", "test/optimisation/batch0000/candidates",
            "test/optimisation/batch0000/chosen"} <= images
