"""Text-to-image and inpainting samples from Stable Diffusion components, on the diffusion core's DDIM sampler.

The same computation as ``StableDiffusionPipeline.__call__`` / ``StableDiffusionInpaintPipeline.__call__`` with a
DDIM scheduler at eta 0 (CFG with the unconditional branch first, the empty prompt as negative prompt), written on
``interpedit.diffusion`` so that the editing methods can reuse and hook every piece: the denoiser, the sampler
callback, the guider. A test checks it against the pipelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from interpedit.diffusion import NoiseSchedule, ddim_sample, guided_denoiser, standard_normal_like
from interpedit.stable_diffusion.inpainting_unet import inpainting_model_input
from interpedit.stable_diffusion.latents import decode_latents
from interpedit.stable_diffusion.text_conditioning import encode_prompts


def text_unet_model(unet: torch.nn.Module, inpainting: tuple[Tensor, Tensor] | None = None):
    """``model(x, t, cond)`` for a text-conditioned UNet; with ``inpainting = (mask, masked_latents)`` the two extra
    inputs are concatenated to ``x`` (repeated over a CFG-doubled batch)."""

    def model(x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        inputs = x if inpainting is None else inpainting_model_input(x, *inpainting)
        return unet(inputs, t, encoder_hidden_states=cond).sample

    return model


@torch.no_grad()
def sample_latents(
    unet: torch.nn.Module,
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    scheduler: Any,
    prompts: Sequence[str],
    *,
    steps: int = 25,
    guidance_scale: float = 4.0,
    seed: int = 0,
    latent_size: int | None = None,
    negative_prompt: str = "",
    inpainting: tuple[Tensor, Tensor] | None = None,
    callback: Any = None,
) -> Tensor:
    """DDIM (eta 0) latents for ``prompts``, with classifier-free guidance against ``negative_prompt``.

    Args:
        unet: a ``UNet2DConditionModel`` (9 input channels with ``inpainting``).
        tokenizer, text_encoder: the pipeline's text side.
        scheduler: a scheduler whose config gives the training schedule and timestep spacing.
        prompts: B prompts.
        steps: DDIM steps.
        guidance_scale: CFG scale; 1 runs the conditional branch alone.
        seed: the starting noise is drawn for the whole batch from ``torch.Generator().manual_seed(seed)``, as a
            pipeline called with that generator draws it.
        latent_size: latent side; default ``unet.config.sample_size``.
        negative_prompt: the unconditional prompt.
        inpainting: ``(mask, masked_latents)`` from ``inpainting_conditioning``.
        callback: the sampler's step callback.

    Returns:
        (B, C, h, w) latents, scaled as the VAE's ``scaling_factor`` says.
    """
    schedule = NoiseSchedule.from_scheduler(scheduler)
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    side = latent_size or int(unet.config.sample_size)
    channels = int(unet.config.out_channels)
    noise_shape = torch.empty(len(prompts), channels, side, side, dtype=dtype)
    x = standard_normal_like(noise_shape, torch.Generator().manual_seed(seed)).to(device)
    cond = encode_prompts(tokenizer, text_encoder, prompts).to(dtype)
    uncond = encode_prompts(tokenizer, text_encoder, [negative_prompt]).to(dtype) if guidance_scale != 1 else None
    if uncond is not None:
        uncond = uncond.expand_as(cond)
    denoise = guided_denoiser(text_unet_model(unet, inpainting), cond, uncond, guidance_scale)
    timesteps = schedule.inference_timesteps(steps, device=device)
    return ddim_sample(denoise, x, timesteps, schedule, callback=callback)


@torch.no_grad()
def sample_images(
    unet: torch.nn.Module,
    vae: torch.nn.Module,
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    scheduler: Any,
    prompts: Sequence[str],
    **kwargs: Any,
) -> Tensor:
    """``sample_latents`` decoded with the VAE: (B, 3, H, W) float32 images in [0, 1]."""
    return decode_latents(vae, sample_latents(unet, tokenizer, text_encoder, scheduler, prompts, **kwargs))
