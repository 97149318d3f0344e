"""Callbacks of the training harness."""

import random
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from callbacks.effective_batch_size import EffectiveBatchSize
from callbacks.rng_state import RNGStateCheckpoint
from train import cli_main


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    callback = RNGStateCheckpoint()
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    torch.save({"rng": callback.state_dict()}, tmp_path / "state.pt")
    expected = draws()
    assert draws() != expected
    callback.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    assert draws() == expected


def test_effective_batch_size_sets_accumulation_from_the_world_size():
    callback = EffectiveBatchSize(64)
    for world_size, expected in ((1, 8), (2, 4), (8, 1)):
        trainer = SimpleNamespace(datamodule=SimpleNamespace(batch_size=8), world_size=world_size,
                                  accumulate_grad_batches=1)
        callback.setup(trainer, None, "fit")
        assert trainer.accumulate_grad_batches == expected
        assert 8 * world_size * trainer.accumulate_grad_batches == 64
    trainer = SimpleNamespace(datamodule=SimpleNamespace(batch_size=12), world_size=1, accumulate_grad_batches=1)
    with pytest.raises(ValueError, match="not a multiple of the per-device batch size 12"):
        callback.setup(trainer, None, "fit")


def test_effective_batch_size_in_a_real_run(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.chdir(repo)
    cli = cli_main(["fit", "--config", "configs/shapes/clip.yaml", "--config", "tests/configs/tiny_shapes_clip.yaml",
                    "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path),
                    "--trainer.callbacks+=callbacks.effective_batch_size.EffectiveBatchSize",
                    "--trainer.callbacks.effective_batch_size", "32"])
    # 64 scenes in batches of 16, 2 batches per optimiser step: 2 steps.
    assert cli.trainer.accumulate_grad_batches == 2 and cli.trainer.global_step == 2


def test_progress_log_prints_whole_lines_with_losses_and_eta(capsys):
    from types import SimpleNamespace

    from callbacks.progress_log import ProgressLog

    callback = ProgressLog(every_n_steps=2, only_when_not_a_terminal=False)
    trainer = SimpleNamespace(global_step=0, max_steps=10, callback_metrics={"train/loss": torch.tensor(0.25), "val/x": 1.0})
    callback.on_train_start(trainer, None)
    for step in (1, 2, 2, 3, 4):  # step 2 twice: accumulated micro-batches of one optimiser step print once
        trainer.global_step = step
        callback.on_train_batch_end(trainer, None, None, None, 0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("step 2/10 | train/loss 0.2500 | ") and "ETA" in lines[1]
    assert "val/x" not in lines[0]
