"""The Stable Diffusion + DINOv2 region-autoencoder experiments, run through train.py with tiny stand-ins.

The hub ids in the configs are replaced on the command line by tiny folders of the same classes in the same layout
(an SD repo with ``unet/ vae/ scheduler/``, a timm DINOv2 ViT with register tokens), loaded through the same
``from_pretrained`` / ``timm.create_model`` code; every other setting comes from the experiment.
"""

from __future__ import annotations

import glob
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.segmented_folder_builders import build_sa1b_folder
from tests.tiny_components import tiny_sd_dir, write_tiny_vit  # noqa: F401  (tiny_sd_dir is a fixture)
from train import cli_main

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests/configs/tiny_region_autoencoder_sd.yaml")
CPU = str(REPO / "configs/trainer/cpu.yaml")
DDP_BF16 = str(REPO / "configs/trainer/ddp_bf16.yaml")
# Experiment -> (the SD repo it decodes with, that UNet's cross-attention width, the ViT input side).
EXPERIMENTS = {
    "sd15_dinov2": ("stable-diffusion-v1-5/stable-diffusion-v1-5", 768, 224),
    "sd21_dinov2": ("stabilityai/stable-diffusion-2-1-base", 1024, 518),
}
DINOV2_PATCH = 14
SD_VAE_DOWNSAMPLING = 8


def experiment_path(name: str) -> str:
    return str(REPO / f"configs/region_autoencoder/{name}.yaml")


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    # LightningCLI warns when both `args` and pytest's own sys.argv are present.
    monkeypatch.setattr(sys, "argv", ["train.py"])


@pytest.fixture(scope="module", autouse=True)
def one_intra_op_thread():
    # The stand-ins are too small to gain from a second thread, and when another process holds a core the
    # threads' barrier waits made these runs 5x slower (76 s instead of 11 s on two cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dinov2_dir(tmp_path_factory) -> Path:
    """DINOv2's ViT-B/14-with-registers architecture, narrow: 12 blocks so the experiments' ``layers`` exist, and
    saved at 518 px like the released weights, so loading it at 224 px resamples the position embeddings."""
    return write_tiny_vit(
        tmp_path_factory.mktemp("tiny-dinov2"),
        architecture="vit_base_patch14_reg4_dinov2",
        img_size=518,
        patch_size=DINOV2_PATCH,
        embed_dim=16,
        depth=12,
        num_heads=2,
    )


@pytest.fixture(scope="module", params=sorted(EXPERIMENTS))
def trained(request, tmp_path_factory, tiny_sd_dir, tiny_dinov2_dir):  # noqa: F811  (pytest fixture argument)
    name = request.param
    data = tmp_path_factory.mktemp(f"{name}-data")
    build_sa1b_folder(data)
    root = tmp_path_factory.mktemp(f"{name}-run")
    with patch.object(sys, "argv", ["train.py"]):
        cli = cli_main([
            "fit", "--config", experiment_path(name), "--config", CPU, "--config", TINY,
            "--model.init_args.unet", str(tiny_sd_dir),
            "--model.init_args.scheduler", str(tiny_sd_dir),
            "--model.init_args.vae", str(tiny_sd_dir),
            "--model.init_args.encoder.init_args.features.init_args.model", str(tiny_dinov2_dir),
            "--data.init_args.root", str(data),
            "--trainer.default_root_dir", str(root),
        ])
    return name, cli, root


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_is_complete_and_consistent_with_its_stable_diffusion(name, capsys):
    repo_id, width, vit_side = EXPERIMENTS[name]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", experiment_path(name), "--config", DDP_BF16, "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)  # parsed against every class signature, nothing loaded
    model = config["model"]["init_args"]
    encoder = model["encoder"]["init_args"]
    features = encoder["features"]["init_args"]
    data = config["data"]["init_args"]
    trainer = config["trainer"]
    # One SD repo for the UNet, its noise schedule and its VAE; region tokens as wide as its text tokens.
    assert model["unet"] == model["scheduler"] == model["vae"] == repo_id
    assert encoder["token_dim"] == width
    assert (model["unet_training"], model["gradient_checkpointing"]) == ("full", True)
    assert model["ema_decay"] is not None
    assert (features["model"], features["pretrained"], features["trainable"]) == (
        "vit_base_patch14_reg4_dinov2.lvd142m", True, "frozen")
    assert features["model_kwargs"]["img_size"] == vit_side and vit_side % DINOV2_PATCH == 0
    assert len(features["layers"]) > 1 and max(features["layers"]) < 12  # intermediate blocks of ViT-B
    assert data["resolution"] % SD_VAE_DOWNSAMPLING == 0 and data["paired_views"] and data["mask_format"] == "sa1b"
    assert (trainer["strategy"], trainer["precision"]) == ("ddp", "bf16-mixed")
    callbacks = {callback["class_path"] for callback in trainer["callbacks"]}
    assert {"lightning.pytorch.callbacks.ModelCheckpoint", "callbacks.rng_state.RNGStateCheckpoint",
            "callbacks.image_grid.ImageGrid", "callbacks.run_summary.RunSummary"} <= callbacks
    checkpoint = next(c for c in trainer["callbacks"] if c["class_path"].endswith("ModelCheckpoint"))
    assert checkpoint["init_args"]["save_last"] is True


def test_training_finishes_and_logs_losses_and_edit_grids(trained):
    name, cli, root = trained
    assert cli.trainer.global_step == 2
    events = EventAccumulator(glob.glob(str(root / "lightning_logs/version_0/events.out.tfevents.*"))[0])
    events.Reload()
    losses = [event.value for event in events.Scalars("train/diffusion_loss")]
    assert len(losses) == 2 and all(math.isfinite(value) for value in losses)
    assert "val/diffusion_loss" in events.Tags()["scalars"]
    assert any("reconstruct | move | remove | swap" in tag for tag in events.Tags()["images"])
    state = torch.load(root / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert any(key.startswith("ema.") for key in state)


def test_unet_is_fine_tuned_in_the_frozen_vae_latent_space(trained, tiny_sd_dir):  # noqa: F811
    name, cli, _ = trained
    model = cli.model.model
    assert isinstance(model.unet, UNet2DConditionModel) and isinstance(model.vae, AutoencoderKL)
    assert model.unet.config.in_channels == model.vae.config.latent_channels == 4
    assert model.unet.is_gradient_checkpointing
    saved_vae = load_file(tiny_sd_dir / "vae/diffusion_pytorch_model.safetensors")
    for key, value in model.vae.state_dict().items():  # loaded from the folder, untouched by training
        torch.testing.assert_close(value, saved_vae[key], rtol=0, atol=0, msg=key)
    assert not any(p.requires_grad for p in model.vae.parameters())
    saved_unet = load_file(tiny_sd_dir / "unet/diffusion_pytorch_model.safetensors")
    assert all(p.requires_grad for p in model.unet.parameters())
    assert not torch.equal(model.unet.conv_in.weight.detach(), saved_unet["conv_in.weight"])  # full fine-tuning

    # The UNet denoises VAE latents of the target view: (B, 4, R / f, R / f), f the VAE's downsampling.
    batch = next(iter(cli.datamodule.train_dataloader()))
    seen = []
    hook = model.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    try:
        with torch.no_grad():
            cli.model.losses(batch, torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    side = batch["target_image"].shape[-1] // model.vae_scale_factor
    assert model.vae_scale_factor > 1 and seen == [(batch["target_image"].shape[0], 4, side, side)]


def test_frozen_dinov2_tokens_reach_the_unet_at_its_cross_attention_width(trained, tiny_dinov2_dir):
    name, cli, _ = trained
    _, _, vit_side = EXPERIMENTS[name]
    model = cli.model.model
    features = model.encoder.features
    token_dim = cli.config.fit.model.init_args.encoder.init_args.token_dim
    assert model.unet.config.cross_attention_dim == token_dim == model.conditioning.projection[0].out_features
    # DINOv2 with 4 registers at the experiment's input size, its weights as saved and frozen.
    assert features.model.num_prefix_tokens == 1 + 4
    assert features.grid_size == (vit_side // DINOV2_PATCH,) * 2
    assert not any(p.requires_grad for p in features.parameters())
    saved = load_file(tiny_dinov2_dir / "model.safetensors")
    for key, value in features.model.state_dict().items():
        if key != "pos_embed":  # resampled to the experiment's input size where it differs from 518
            torch.testing.assert_close(value, saved[key], rtol=0, atol=0, msg=key)

    batch = next(iter(cli.datamodule.train_dataloader()))
    with torch.no_grad():
        encoded = model.encode(batch["image"], batch["masks"], batch["region_valid"])
        states = model.condition(encoded.token_set())
    slots = batch["masks"].shape[1]
    assert states.shape == (batch["image"].shape[0], slots + model.conditioning.num_extra_slots, token_dim)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_the_documented_command_trains_with_ddp_and_bf16(name, tmp_path, tiny_sd_dir, tiny_dinov2_dir):  # noqa: F811
    # The command of the config's header (the experiment, then configs/trainer/ddp_bf16.yaml), in two CPU processes:
    # DDP must find a gradient for every trainable parameter (frozen ViT and VAE, checkpointed UNet, EMA).
    build_sa1b_folder(tmp_path / "data")
    root = tmp_path / "run"
    command = [
        sys.executable, "train.py", "fit", "--config", experiment_path(name), "--config", DDP_BF16, "--config", TINY,
        "--trainer.accelerator=cpu", "--trainer.devices=2",
        "--model.init_args.unet", str(tiny_sd_dir),
        "--model.init_args.scheduler", str(tiny_sd_dir),
        "--model.init_args.vae", str(tiny_sd_dir),
        "--model.init_args.encoder.init_args.features.init_args.model", str(tiny_dinov2_dir),
        "--data.init_args.root", str(tmp_path / "data"),
        "--trainer.default_root_dir", str(root),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    assert (root / "checkpoints/last.ckpt").exists()
    events = EventAccumulator(glob.glob(str(root / "lightning_logs/version_0/events.out.tfevents.*"))[0])
    events.Reload()
    assert all(math.isfinite(event.value) for event in events.Scalars("train/diffusion_loss"))


def test_unet_lora_keeps_the_stable_diffusion_weights_and_trains_adapters(tmp_path, tiny_sd_dir, tiny_dinov2_dir):  # noqa: F811
    # unet_training: lora on the SD 1.5 experiment (gradient checkpointing and EMA on, as the experiment sets them).
    build_sa1b_folder(tmp_path / "data")
    with patch.object(sys, "argv", ["train.py"]):
        cli = cli_main([
            "fit", "--config", experiment_path("sd15_dinov2"), "--config", CPU, "--config", TINY,
            "--model.init_args.unet", str(tiny_sd_dir),
            "--model.init_args.scheduler", str(tiny_sd_dir),
            "--model.init_args.vae", str(tiny_sd_dir),
            "--model.init_args.encoder.init_args.features.init_args.model", str(tiny_dinov2_dir),
            "--model.init_args.unet_training", "lora", "--model.init_args.unet_lora_rank", "2",
            "--model.init_args.learning_rate", "1e-3",
            "--data.init_args.root", str(tmp_path / "data"),
            "--trainer.default_root_dir", str(tmp_path / "run"),
        ])
    assert cli.trainer.global_step == 2
    unet = cli.model.model.unet
    assert unet.is_gradient_checkpointing
    saved = load_file(tiny_sd_dir / "unet/diffusion_pytorch_model.safetensors")
    own = {name.replace(".base_layer", ""): value for name, value in unet.state_dict().items() if ".lora_" not in name}
    assert own.keys() == saved.keys()
    for key, value in own.items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0, msg=key)
    adapters = {name: p for name, p in unet.named_parameters() if p.requires_grad}
    assert adapters and all(".lora_" in name for name in adapters)
    assert any(".attn2.to_k.lora_B." in name for name in adapters)  # keys of the region tokens adapt
    assert all(p.abs().sum() > 0 for name, p in adapters.items() if ".lora_B." in name)
    ema = torch.load(tmp_path / "run/checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert any(key.startswith("ema.") and "lora_B" in key for key in ema)  # the EMA averages the adapters...
    assert not any(key.startswith("ema.") and "unet" in key and "lora" not in key for key in ema)  # ...not frozen weights
