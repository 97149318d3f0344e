"""The committed shapes Stable Diffusion folder loads with plain diffusers and through the project's loader, and
generates through the pipeline's own ``__call__``."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from interpedit.backbones.stable_diffusion import load_stable_diffusion

FOLDER = Path(__file__).resolve().parents[1] / "pretrained" / "shapes_stable_diffusion"


def test_the_committed_pipeline_loads_with_plain_diffusers_and_generates():
    pipe = StableDiffusionPipeline.from_pretrained(FOLDER)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.safety_checker is None
    assert pipe.unet.config.sample_size == 16 and pipe.vae_scale_factor == 4
    images = pipe(["a large red circle at the center"], num_inference_steps=2, guidance_scale=4.0,
                  generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()
    components = load_stable_diffusion(str(FOLDER), inpainting=False)
    assert not components.is_inpainting
    assert type(components.scheduler).__name__ == "DDIMScheduler"
