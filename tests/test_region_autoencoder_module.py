"""The region autoencoder's Lightning system: unpaired training wiring and logging."""

from __future__ import annotations

import glob
import sys
from pathlib import Path
from unittest.mock import patch

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from interpedit.region import region_positions
from train import cli_main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = str(REPO / "configs/shapes/region_autoencoder.yaml")
TINY = str(REPO / "tests/configs/tiny_region_autoencoder.yaml")


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rae")
    with patch.object(sys, "argv", ["train.py"]):
        cli = cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, "--trainer.default_root_dir", str(root)])
    return cli, root


def test_training_logs_losses_and_reconstruction_grids(trained):
    cli, root = trained
    events = EventAccumulator(glob.glob(str(root / "lightning_logs/version_0/events.out.tfevents.*"))[0])
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/diffusion_loss", "train/consistency_loss", "train/consistency_weight", "val/diffusion_loss"):
        assert tag in scalars, tag
    weights = [e.value for e in events.Scalars("train/consistency_weight")]
    assert weights[0] == 0.0 and weights[-1] == 1.0  # linear warm-up over 2 steps
    assert any("reconstruct | move | remove | swap" in tag for tag in events.Tags()["images"])
    assert (root / "checkpoints/last.ckpt").exists()
    state = torch.load(root / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert any(key.startswith("ema.") for key in state)  # the EMA weights are checkpointed
    assert int(cli.model.ema.num_updates) == cli.trainer.global_step == 4


def test_accumulated_micro_batches_draw_differently_and_update_the_ema_once_per_step(tmp_path):
    with patch.object(sys, "argv", ["train.py"]):
        cli = cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, "--trainer.default_root_dir", str(tmp_path),
                        "--trainer.accumulate_grad_batches", "2", "--trainer.max_steps", "2",
                        "--trainer.limit_val_batches", "0"])
    assert cli.trainer.global_step == 2 and int(cli.model.ema.num_updates) == 2
    first, second = cli.model.step_generator(0), cli.model.step_generator(1)
    assert not torch.equal(torch.rand(4, generator=first), torch.rand(4, generator=second))


def test_decoder_is_conditioned_on_target_view_positions(trained, monkeypatch):
    # The original code decoded the target view with source-view positions; here positions come from the target.
    cli, _ = trained
    module = cli.model
    batch = next(iter(cli.datamodule.train_dataloader()))
    seen = {}
    condition = module.model.condition

    def spy(token_set):
        seen.setdefault("positions", token_set.positions)
        seen.setdefault("valid", token_set.valid)
        return condition(token_set)

    monkeypatch.setattr(module.model, "condition", spy)
    module.losses(batch, torch.Generator().manual_seed(0))
    valid = seen["valid"]
    assert valid.any()
    expected = region_positions(batch["target_masks"])
    torch.testing.assert_close(seen["positions"][valid], expected[valid])
    assert not (valid & ~batch["target_region_valid"]).any()  # regions cropped out of the target get no token


def test_both_encodings_are_one_batched_call_equal_to_two_separate_ones(trained, monkeypatch):
    from lightning_modules.region_autoencoder import centred_cosine_distance

    cli, _ = trained
    module = cli.model
    batch = next(iter(cli.datamodule.train_dataloader()))
    size = batch["source_image"].shape[0]
    encode, calls = module.model.encode, []

    def spy(images, masks, valid, positions=None):
        calls.append((images, masks, valid))
        return encode(images, masks, valid, positions)

    monkeypatch.setattr(module.model, "encode", spy)
    with torch.no_grad():
        losses = module.losses(batch, torch.Generator().manual_seed(0))
        assert len(calls) == 1
        images, masks, valid = calls[0]
        assert images.shape[0] == 2 * size
        assert torch.equal(masks[:size], batch["source_masks"]) and torch.equal(masks[size:], batch["target_masks"])
        assert not (valid[:size] & ~batch["source_region_valid"]).any()
        assert not (valid[size:] & ~batch["target_region_valid"]).any()
        first = encode(images[:size], masks[:size], valid[:size]).appearance
        second = encode(images[size:], masks[size:], valid[size:]).appearance
    expected = centred_cosine_distance(first, second, valid[:size] & valid[size:])
    torch.testing.assert_close(losses["consistency"], expected, atol=1e-5, rtol=1e-4)


def test_unet_lora_trains_only_adapters_and_exports_them(tmp_path):
    from interpedit.region.pretrained import CONFIG_NAME, load_region_autoencoder
    from lightning_modules.region_autoencoder import main as export_main

    lora = ["--model.init_args.unet_training", "lora", "--model.init_args.unet_lora_rank", "4",
            "--model.init_args.gradient_checkpointing", "true", "--trainer.limit_val_batches", "0"]
    with patch.object(sys, "argv", ["train.py"]):
        start = cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, *lora, "--trainer.max_steps", "0",
                          "--trainer.default_root_dir", str(tmp_path / "start")])
        cli = cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, *lora,
                        "--trainer.default_root_dir", str(tmp_path / "run")])
    assert cli.trainer.global_step == 4
    unet, initial = cli.model.model.unet, start.model.model.unet.state_dict()
    trainable = {name for name, p in unet.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    optimised = {id(p) for group in cli.trainer.optimizers[0].param_groups for p in group["params"]}
    assert {id(p) for n, p in unet.named_parameters() if n in trainable} <= optimised
    assert all(p.requires_grad for p in cli.model.model.encoder.parameters())  # the shapes ViT trains in full
    for name, value in unet.state_dict().items():
        if ".lora_" not in name:
            assert torch.equal(value, initial[name]), name  # the UNet's own weights stay as loaded
    # B starts at zero; through gradient checkpointing the adapters received gradients and moved.
    assert all(p.abs().sum() > 0 for n, p in unet.named_parameters() if ".lora_B." in n)

    export_main(["export", "--ckpt", str(tmp_path / "run/checkpoints/last.ckpt"), "--out", str(tmp_path / "rae")])
    loaded = load_region_autoencoder(tmp_path / "rae")
    assert (tmp_path / "rae" / CONFIG_NAME).read_text().count('"rank": 4') == 1
    with cli.model.ema.swapped_in():
        expected = {k: v.clone() for k, v in cli.model.model.state_dict().items()}
    found = loaded.state_dict()
    assert expected.keys() == found.keys()
    for key in expected:
        torch.testing.assert_close(found[key], expected[key], msg=key)


def test_unknown_unet_training_mode_or_bad_lora_target_is_refused(tmp_path):
    for override, message in ((["--model.init_args.unet_training", "adapters"], "unet_training: 'adapters'"),
                              (["--model.init_args.unet_training", "lora",
                                "--model.init_args.unet_lora_modules", "[query]"], "unet_lora_.*'query'")):
        with patch.object(sys, "argv", ["train.py"]), pytest.raises(ValueError, match=message):
            cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, *override,
                      "--trainer.default_root_dir", str(tmp_path)])


SILHOUETTES = ["--model.init_args.layout_shape", "silhouette", "--model.init_args.silhouette_size", "16"]


def test_silhouette_layout_starts_from_a_checkpoint_and_paints_target_view_outlines(trained, tmp_path, monkeypatch):
    from interpedit.region.pretrained import CONFIG_NAME, load_region_autoencoder
    from interpedit.region.region_silhouettes import region_silhouettes
    from lightning_modules.region_autoencoder import main as export_main

    earlier, root = trained
    start_from = ["--model.init_args.init_from", str(root / "checkpoints/last.ckpt"), "--trainer.limit_val_batches", "0"]
    with patch.object(sys, "argv", ["train.py"]):
        start = cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, *SILHOUETTES, *start_from,
                          "--trainer.max_steps", "0", "--trainer.default_root_dir", str(tmp_path / "start")])
    # The run starts from the checkpoint's averaged weights, and its own EMA restarts there.
    with earlier.model.ema.swapped_in():
        averaged = {k: v.clone() for k, v in earlier.model.model.state_dict().items()}
    for key, value in start.model.model.state_dict().items():
        torch.testing.assert_close(value, averaged[key], msg=key)
    assert int(start.model.ema.num_updates) == 0

    module = start.model
    batch = next(iter(start.datamodule.train_dataloader()))
    seen = {}
    token_layout = module.model.token_layout

    def spy(token_set, height, width):
        seen["tokens"] = token_set
        return token_layout(token_set, height, width)

    monkeypatch.setattr(module.model, "token_layout", spy)
    module.losses(batch, torch.Generator().manual_seed(0))
    tokens = seen["tokens"]
    target = batch["target_masks"]
    expected = region_silhouettes(target, region_positions(target), 16, 1.5)
    torch.testing.assert_close(tokens.silhouettes[tokens.valid], expected[tokens.valid])

    with patch.object(sys, "argv", ["train.py"]):
        cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, *SILHOUETTES, *start_from,
                  "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path / "run")])
    export_main(["export", "--ckpt", str(tmp_path / "run/checkpoints/last.ckpt"), "--out", str(tmp_path / "rae")])
    assert '"layout_shape": "silhouette"' in (tmp_path / "rae" / CONFIG_NAME).read_text()
    assert load_region_autoencoder(tmp_path / "rae").uses_silhouettes


def test_init_from_a_missing_or_mismatched_checkpoint_is_refused(trained, tmp_path):
    _, root = trained
    with patch.object(sys, "argv", ["train.py"]), pytest.raises(ValueError, match="init_from: no checkpoint"):
        cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, "--model.init_args.init_from",
                  str(tmp_path / "missing.ckpt"), "--trainer.default_root_dir", str(tmp_path)])
    wider = ["--model.init_args.unet.block_out_channels", "[16, 16]"]
    with patch.object(sys, "argv", ["train.py"]), pytest.raises(ValueError, match="same architecture") as raised:
        cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, *wider, "--model.init_args.init_from",
                  str(root / "checkpoints/last.ckpt"), "--trainer.default_root_dir", str(tmp_path)])
    assert "last.ckpt" in str(raised.value)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with patch.object(sys, "argv", ["train.py"]), pytest.raises(ValueError, match="junk.ckpt: not a Lightning"):
        cli_main(["fit", "--config", EXPERIMENT, "--config", TINY, "--model.init_args.init_from",
                  str(tmp_path / "junk.ckpt"), "--trainer.default_root_dir", str(tmp_path)])
