"""The committed shapes inpainting folder loads with plain diffusers and through the project's loader, and inpaints
through the pipeline's own ``__call__`` in SD-inpainting's layout (4 latent + 1 mask + 4 masked-image channels)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionInpaintPipeline

from interpedit.backbones.stable_diffusion import load_stable_diffusion

FOLDER = Path(__file__).resolve().parents[1] / "pretrained" / "shapes_stable_diffusion_inpainting"


def test_the_committed_inpainting_pipeline_loads_with_plain_diffusers_and_inpaints():
    pipe = StableDiffusionInpaintPipeline.from_pretrained(FOLDER)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.safety_checker is None
    assert pipe.unet.config.in_channels == 9 and pipe.unet.config.sample_size == 16 and pipe.vae_scale_factor == 4
    image = torch.full((1, 3, 64, 64), 0.5)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1.0
    out = pipe(["a large red circle at the center"], image=image, mask_image=mask, num_inference_steps=2,
               guidance_scale=6.0, strength=1.0, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    components = load_stable_diffusion(str(FOLDER), inpainting=True)
    assert components.is_inpainting and components.unet.config.in_channels == 9
    assert type(components.scheduler).__name__ == "DDIMScheduler"
