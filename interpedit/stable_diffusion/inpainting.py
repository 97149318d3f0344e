"""Inpainting with a Stable Diffusion inpainting pipeline's components, on the diffusion core's DDIM sampler.

``inpaint_images`` is ``StableDiffusionInpaintPipeline.__call__`` at ``strength=1`` with a DDIM scheduler, one
generator seeded with ``seed`` giving first the starting noise and then the masked image's posterior sample (the
pipeline's order), so that a batch of many masks runs as one sampler call. ``composite`` pastes the source back
outside the mask, which the pipeline leaves to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from interpedit.diffusion import standard_normal_like
from interpedit.stable_diffusion.inpainting_unet import inpainting_conditioning
from interpedit.stable_diffusion.sampling import sample_images


@torch.no_grad()
def inpaint_images(components: Any, images: Tensor, masks: Tensor, prompts: Sequence[str], *, steps: int = 50,
                   guidance_scale: float = 7.5, seed: int = 0, negative_prompt: str = "",
                   composite: bool = False) -> Tensor:
    """Repaint ``masks`` of ``images`` following ``prompts``.

    Args:
        components: ``StableDiffusionComponents`` of an inpainting pipeline (a 9-channel UNet).
        images: (B, 3, H, W) in [0, 1].
        masks: (B, H, W) or (B, 1, H, W), true (or > 0.5) where the model repaints.
        prompts: B prompts.
        steps, guidance_scale, negative_prompt: as the pipeline's arguments.
        seed: seed of the one generator the pipeline would be given.
        composite: keep the source pixels outside the mask.

    Returns:
        (B, 3, H, W) float32 in [0, 1].
    """
    if not components.is_inpainting:
        raise ValueError("inpaint_images needs an inpainting pipeline (a UNet with 9 input channels)")
    if len(prompts) != images.shape[0]:
        raise ValueError(f"{len(prompts)} prompts for {images.shape[0]} images")
    vae, unet = components.vae, components.unet
    factor = components.vae_scale_factor
    side = images.shape[-1] // factor
    generator = torch.Generator().manual_seed(seed)
    # The pipeline draws the starting noise first (sample_latents redraws it from the same seed), then the masked
    # image's posterior sample.
    standard_normal_like(torch.empty(images.shape[0], int(unet.config.out_channels), images.shape[-2] // factor, side),
                         generator)
    device = next(unet.parameters()).device
    conditioning = inpainting_conditioning(vae, images.to(device), masks.to(device), generator=generator)
    out = sample_images(unet, vae, components.tokenizer, components.text_encoder, components.scheduler, list(prompts),
                        steps=steps, guidance_scale=guidance_scale, seed=seed, latent_size=side,
                        negative_prompt=negative_prompt, inpainting=conditioning)
    if composite:
        keep = masks if masks.ndim == 4 else masks[:, None]
        keep = (keep.float() < 0.5).float().to(out.device)
        out = out * (1 - keep) + images.to(out.device).float() * keep
    return out
