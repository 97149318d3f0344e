"""The shapes Stable Diffusion stages through train.py (VAE, text-to-image UNet, inpainting), their exports, and the
evaluate command, on tiny random components."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline, StableDiffusionPipeline

from lightning_modules.autoencoder_kl import export_vae
from lightning_modules.stable_diffusion import InpaintingModule, TextToImageModule, export_pipeline, load_checkpoint_module
from tests.tiny_components import tiny_shapes_sd_dir  # noqa: F401  (a pytest fixture)
from train import cli_main as train_main

REPO = Path(__file__).resolve().parents[1]
TINY_UNET = json.dumps({
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "block_out_channels": [4, 8],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1, "cross_attention_dim": 16, "attention_head_dim": 2, "norm_num_groups": 2,
})
TINY_VAE = json.dumps({
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [4, 8, 8],
    "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
    "layers_per_block": 1, "norm_num_groups": 2, "sample_size": 64,
})
QUICK = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
         "--data.init_args.batch_size", "2", "--data.init_args.val_scenes", "2", "--trainer.enable_progress_bar",
         "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.chdir(REPO)


def fit(config: str, root: Path, *extra: str) -> Path:
    train_main(["fit", "--config", str(REPO / config), "--trainer.default_root_dir", str(root), *QUICK, *extra])
    return root / "checkpoints" / "last.ckpt"


def test_vae_stage_trains_and_exports_with_its_scaling_factor(tmp_path):
    checkpoint = fit("configs/shapes/stable_diffusion_vae.yaml", tmp_path / "vae", "--model.init_args.vae", TINY_VAE,
                     "--model.init_args.crop_size", "16")
    module_state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    std = float(module_state["state_dict"]["latent_std"])
    folder = export_vae(checkpoint, tmp_path / "vae_export")
    vae = AutoencoderKL.from_pretrained(folder)
    assert vae.config.scaling_factor == pytest.approx(1.0 / std, rel=1e-4)
    assert std != 1.0  # measured at validation, not the initial value
    # The EMA weights are what is exported.
    ema = {key[len("ema.shadow__"):].replace("__", "."): value for key, value in module_state["state_dict"].items()
           if key.startswith("ema.shadow__")}
    assert all(torch.equal(vae.state_dict()[name], value) for name, value in ema.items())


def test_decoder_only_fine_tuning_keeps_the_encoder(tmp_path, tiny_shapes_sd_dir):
    from lightning_modules.autoencoder_kl import AutoencoderKLModule

    module = AutoencoderKLModule(vae=str(tiny_shapes_sd_dir), trainable="decoder")
    trainable = {name for name, p in module.vae.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("decoder.", "post_quant_conv.")) for name in trainable)
    with pytest.raises(ValueError, match="trainable: 'encoder' is not one of all, decoder"):
        AutoencoderKLModule(vae=str(tiny_shapes_sd_dir), trainable="encoder")


def test_unet_and_inpainting_stages_train_export_and_load_with_plain_diffusers(tmp_path, tiny_shapes_sd_dir):
    components = str(tiny_shapes_sd_dir)  # a full pipeline folder also serves as the components folder
    checkpoint = fit("configs/shapes/stable_diffusion_unet.yaml", tmp_path / "unet",
                     "--model.init_args.components", components, "--model.init_args.unet", TINY_UNET,
                     "--model.init_args.val_steps", "2", "--model.init_args.val_samples", "2")
    module = load_checkpoint_module(checkpoint)
    assert isinstance(module, TextToImageModule) and module.trained_steps == 2
    pipeline_dir = export_pipeline(checkpoint, tmp_path / "t2i")
    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    with module.averaged():  # the exported UNet is the EMA one
        assert all(torch.equal(pipe.unet.state_dict()[k], v) for k, v in module.unet.state_dict().items())
    assert pipe("a small red circle at the center", num_inference_steps=2, output_type="pt").images.shape == (1, 3, 64, 64)
    # The TensorBoard run holds the validation sample grid.
    events = glob.glob(str(tmp_path / "unet/lightning_logs/version_0/events.*"))
    assert events

    inpaint_ckpt = fit("configs/shapes/stable_diffusion_inpainting.yaml", tmp_path / "inpaint",
                       "--model.init_args.components", str(pipeline_dir), "--model.init_args.unet", str(pipeline_dir),
                       "--model.init_args.val_steps", "2", "--model.init_args.val_samples", "2")
    assert isinstance(load_checkpoint_module(inpaint_ckpt), InpaintingModule)
    inpaint_dir = export_pipeline(inpaint_ckpt, tmp_path / "inpainting")
    inpaint = StableDiffusionInpaintPipeline.from_pretrained(inpaint_dir)
    assert inpaint.unet.config.in_channels == 9


def test_caption_dropout_uses_the_empty_prompt(tiny_shapes_sd_dir, monkeypatch):
    module = TextToImageModule(components=str(tiny_shapes_sd_dir), unet=json.loads(TINY_UNET), caption_dropout=1.0,
                               ema_decay=None)
    seen = []
    original = module.prompt_embeddings
    monkeypatch.setattr(module, "prompt_embeddings", lambda prompts: seen.append(list(prompts)) or original(prompts))
    batch = {"image": torch.rand(3, 3, 64, 64), "caption": ["a small red circle at the top"] * 3}
    loss = module.denoising_loss(batch, torch.Generator().manual_seed(0))
    assert seen == [["", "", ""]] and loss.ndim == 0 and loss.requires_grad


def test_bad_settings_are_refused(tiny_shapes_sd_dir, tmp_path):
    with pytest.raises(ValueError, match="caption_dropout: 1.5 is outside"):
        TextToImageModule(components=str(tiny_shapes_sd_dir), unet=json.loads(TINY_UNET), caption_dropout=1.5)
    with pytest.raises(ValueError, match="snr_floor: 0.1 needs min_snr_gamma"):
        TextToImageModule(components=str(tiny_shapes_sd_dir), unet=json.loads(TINY_UNET), min_snr_gamma=None,
                          snr_floor=0.1)
    with pytest.raises(ValueError, match="an inpainting UNet; use InpaintingModule"):
        TextToImageModule(components=str(tiny_shapes_sd_dir),
                          unet={**json.loads(TINY_UNET), "in_channels": 9})
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        export_pipeline(tmp_path / "missing.ckpt", tmp_path / "out")
    junk = tmp_path / "junk.ckpt"
    torch.save({"hyper_parameters": {"nonsense": 1}, "state_dict": {}}, junk)
    with pytest.raises(ValueError, match="junk.ckpt: not a checkpoint of a Stable Diffusion system"):
        export_pipeline(junk, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written half-way
