"""One loader for Stable Diffusion pipelines: tiny random SD, SD-inpainting and shapes folders, reloaded through it."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

from interpedit.backbones import PretrainedWeightsNotFoundError
from interpedit.backbones.stable_diffusion import SD_COMPONENTS, load_stable_diffusion
from tests.tiny_components import (  # noqa: F401  (pytest fixtures)
    tiny_inpainting_dir,
    tiny_sd_dir,
    tiny_shapes_inpainting_dir,
    tiny_shapes_sd_dir,
)


def test_loads_every_component_of_a_tiny_sd_folder(tiny_sd_dir):
    sd = load_stable_diffusion(tiny_sd_dir)
    assert all(getattr(sd, name) is not None for name in SD_COMPONENTS)
    assert type(sd.scheduler).__name__ == "DDIMScheduler"
    assert not sd.is_inpainting and sd.vae_scale_factor == 2
    assert sd.latent_scaling_factor == sd.vae.config.scaling_factor
    # The components are the ones diffusers' own pipeline loads from the same folder.
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(sd, name).state_dict(), getattr(pipe, name).state_dict()
        assert all(torch.equal(mine[key], theirs[key]) for key in theirs), name


def test_dtype_and_a_subset_of_components(tiny_sd_dir):
    sd = load_stable_diffusion(tiny_sd_dir, torch_dtype=torch.float16, components=("unet", "scheduler"))
    assert sd.vae is None and sd.text_encoder is None and sd.tokenizer is None
    assert next(sd.unet.parameters()).dtype == torch.float16


def test_inpainting_folder_and_its_checks(tiny_sd_dir, tiny_inpainting_dir):
    assert load_stable_diffusion(tiny_inpainting_dir, inpainting=True).is_inpainting
    with pytest.raises(ValueError, match="in_channels=4.*inpainting UNet takes 9"):
        load_stable_diffusion(tiny_sd_dir, inpainting=True, components=("unet",))
    with pytest.raises(ValueError, match="inpainting UNet.*text-to-image pipeline"):
        load_stable_diffusion(tiny_inpainting_dir, inpainting=False, components=("unet",))


def test_shapes_folders_load_with_plain_diffusers_and_through_the_loader(tiny_shapes_sd_dir, tiny_shapes_inpainting_dir):
    index = json.loads((tiny_shapes_sd_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["safety_checker"] == [None, None]
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]  # portable across transformers 4 and 5
    sd = load_stable_diffusion(tiny_shapes_sd_dir, inpainting=False)
    assert sd.vae_scale_factor == 4 and sd.tokenizer.model_max_length == 64
    pipe = StableDiffusionPipeline.from_pretrained(tiny_shapes_sd_dir)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a small red circle at the top left", num_inference_steps=2, output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 3, 64, 64)
    inpaint = StableDiffusionInpaintPipeline.from_pretrained(tiny_shapes_inpainting_dir)
    inpaint.set_progress_bar_config(disable=True)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    out = inpaint("a large blue square at the center", image=torch.rand(1, 3, 64, 64), mask_image=mask,
                  num_inference_steps=2, output_type="pt").images
    assert out.shape == (1, 3, 64, 64)
    assert load_stable_diffusion(tiny_shapes_inpainting_dir, inpainting=True).is_inpainting


def test_missing_folder_and_missing_part_name_the_path(tmp_path, tiny_sd_dir):
    with pytest.raises(PretrainedWeightsNotFoundError, match="no such file or directory"):
        load_stable_diffusion(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "unet").symlink_to(tiny_sd_dir / "unet")
    with pytest.raises(PretrainedWeightsNotFoundError, match="subfolder 'vae'"):
        load_stable_diffusion(partial)


def test_missing_hub_repo_offline_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(PretrainedWeightsNotFoundError, match="hf download stable-diffusion-v1-5/stable-diffusion-v1-5"):
        load_stable_diffusion("stable-diffusion-v1-5/stable-diffusion-v1-5", components=("vae",))


def test_unknown_component_is_refused(tiny_sd_dir):
    with pytest.raises(ValueError, match="unknown components.*'safety_checker'"):
        load_stable_diffusion(tiny_sd_dir, components=("unet", "safety_checker"))


def test_pipeline_needs_every_component(tiny_sd_dir):
    with pytest.raises(ValueError, match="not loaded: vae"):
        load_stable_diffusion(tiny_sd_dir, components=("unet", "text_encoder", "tokenizer", "scheduler")).pipeline()
