"""train.py on LightningCLI: complete configs, TensorBoard logging, checkpoints, DDP, resume after SIGKILL."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from eval import cli_main as eval_main
from train import cli_main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = str(REPO / "configs/shapes/clip.yaml")
TINY = str(REPO / "tests/configs/tiny_shapes_clip.yaml")


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    # LightningCLI warns when both `args` and pytest's own sys.argv are present.
    monkeypatch.setattr(sys, "argv", ["train.py"])


def scalar_tags(run_dir: Path) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for events in glob.glob(str(run_dir / "**/events.out.tfevents.*"), recursive=True):
        accumulator = EventAccumulator(events)
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in accumulator.Scalars(tag))
    return values


def test_print_config_is_complete_and_reruns(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", EXPERIMENT, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    assert config["model"]["class_path"] == "lightning_modules.shapes_clip.ShapesCLIPModule"
    assert config["data"]["class_path"] == "datamodules.shapes.ShapesDataModule"
    # Every init argument is spelled out, defaults included, so the printed file is the whole experiment.
    assert {"learning_rate", "retrieval_group_size", "vision_config"} <= set(config["model"]["init_args"])
    assert {"resolution", "batch_size", "train_scenes", "seed"} <= set(config["data"]["init_args"])
    callbacks = {c["class_path"] for c in config["trainer"]["callbacks"]}
    assert "lightning.pytorch.callbacks.ModelCheckpoint" in callbacks
    printed_file = tmp_path / "printed.yaml"
    printed_file.write_text(printed)
    cli_main(["fit", "--config", str(printed_file), "--config", TINY, "--trainer.fast_dev_run", "1",
              "--trainer.default_root_dir", str(tmp_path / "rerun")])


def test_fit_logs_to_tensorboard_saves_config_checkpoint_and_export(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    root = tmp_path / "run"
    cli = cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, "--trainer.default_root_dir", str(root)])
    tags = scalar_tags(root)
    assert "train/loss" in tags and len(tags["train/loss"]) >= 4
    assert "val/retrieval_image_to_text_top1_of16" in tags
    assert all(0.0 <= v <= 1.0 for v in tags["val/retrieval_image_to_text_top1_of16"])
    saved = glob.glob(str(root / "lightning_logs/version_*/config.yaml"))
    assert len(saved) == 1 and yaml.safe_load(Path(saved[0]).read_text())["trainer"]["default_root_dir"] == str(root)
    assert (root / "checkpoints/last.ckpt").exists()
    export = Path(cli.trainer.log_dir) / "pretrained"
    assert (export / "model.safetensors").exists() and (export / "config.json").exists()
    from interpedit.clip import ShapesCLIP

    reloaded = ShapesCLIP.load(str(export))
    trained = cli.model.model
    for (name, a), (_, b) in zip(trained.state_dict().items(), reloaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)

    # eval.py: the same config, the test split, the saved weights.
    evaluated = eval_main(["--config", EXPERIMENT, "--config", TINY, "--ckpt_path", str(root / "checkpoints/last.ckpt"),
                           "--trainer.default_root_dir", str(tmp_path / "eval")])
    test_metrics = evaluated.trainer.callback_metrics
    assert 0.0 <= float(test_metrics["test/retrieval_image_to_text_top1_of16"]) <= 1.0
    assert "test/retrieval_image_to_text_top1_of16" in scalar_tags(tmp_path / "eval")
    for (name, a), (_, b) in zip(trained.state_dict().items(), evaluated.model.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.slow
def test_ddp_spawn_bf16_logs_metrics_synced_over_both_processes(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    common = ["--config", EXPERIMENT, "--config", TINY, "--data.init_args.val_scenes", "64"]
    trained = cli_main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "fit")])
    ckpt = str(tmp_path / "fit/checkpoints/last.ckpt")

    def validate(*extra: str) -> dict[str, float]:
        cli = cli_main(["validate", *common, "--ckpt_path", ckpt, *extra])
        return {k: float(v) for k, v in cli.trainer.callback_metrics.items()}

    name = "val/retrieval_image_to_text_top1_of16"
    single = validate("--trainer.precision", "bf16-mixed", "--trainer.default_root_dir", str(tmp_path / "one"))
    ddp = validate("--config", str(REPO / "configs/trainer/ddp_sim.yaml"), "--trainer.default_root_dir",
                   str(tmp_path / "two"))
    # Each process sees half of the scenes (whole batches, so the retrieval groups are the same as in one
    # process); the logged values must be the ones over all of them, not rank 0's half.
    assert ddp[name] == pytest.approx(single[name], abs=1e-6)
    assert ddp["val/loss"] == pytest.approx(single["val/loss"], rel=2e-2)
    assert trained.trainer.global_step > 0


@pytest.mark.slow
def test_train_py_with_ddp_strategy_as_subprocess(tmp_path):
    root = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "train.py", "fit", "--config", EXPERIMENT, "--config", TINY, "--trainer.accelerator=cpu",
         "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.precision=bf16-mixed",
         "--trainer.default_root_dir", str(root)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (root / "checkpoints/last.ckpt").exists()
    assert "train/loss" in scalar_tags(root)


def final_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_sigkill_and_resume_ends_with_the_same_weights(tmp_path):
    args = ["fit", "--config", EXPERIMENT, "--config", TINY, "--trainer.max_epochs", "6",
            "--trainer.deterministic", "true", "--trainer.limit_val_batches", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def train(root: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "train.py", *args, "--trainer.default_root_dir", str(root), *extra],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    reference = train(tmp_path / "reference")
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]

    interrupted = tmp_path / "interrupted"
    process = train(interrupted)
    last = interrupted / "checkpoints/last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    time.sleep(0.5)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert killed_at < 5

    resumed = train(interrupted, "--ckpt_path", "last")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    log = resumed.stderr.read()
    assert "Restored all states from the checkpoint" in log, log[-3000:]  # resumed, not restarted from scratch
    expected = final_weights(tmp_path / "reference/checkpoints/last.ckpt")
    actual = final_weights(last)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
