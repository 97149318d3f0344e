"""The soft-mask estimator: a gradient for the size choice through a relaxed box and the last inpainting steps.

Around one anchor the S candidate boxes are nested, with masks M_1..M_S. Under AnchorNet's size probabilities p,
a pixel is repainted with probability ``m = sum_s p_s M_s``, the *soft mask*. The inpainting UNet is conditioned on
m itself: its mask channel is m averaged over each latent cell, and its masked-image latents encode
``x (1 - m) + 0.5 m`` (the pipeline's grey blank, weighted). The last ``backprop_steps`` DDIM steps and the VAE
decoder run with gradients, and the candidate is the soft composite ``m * decoded + (1 - m) * x``.

A reward computed differentiably from that candidate (``EditReward.losses(..., differentiable=True)``) then has a
gradient in p, hence in AnchorNet, along two paths: through the composite (which pixels are repainted) and through
the tracked sampler steps (what is painted there). It is a pathwise estimate, biased by the relaxation where
REINFORCE is unbiased but noisy, and it needs one inpainting per anchor and step where REINFORCE needs one per draw,
plus the backward passes through the tracked steps.

With a one-hot p and masks on latent-cell boundaries, ``soft_mask_inpaint`` is ``inpaint_images(...,
composite=True)`` exactly: the same noise, the same posterior sample, the same conditioning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from interpedit.diffusion import NoiseSchedule, ddim_sample, guided_denoiser, standard_normal_like
from interpedit.stable_diffusion.latents import decode_latents, encode_images
from interpedit.stable_diffusion.sampling import text_unet_model
from interpedit.stable_diffusion.text_conditioning import encode_prompts


def expected_mask(probabilities: Tensor, masks: Tensor) -> Tensor:
    """The soft mask ``sum_s p_s M_s``: (N, S) probabilities and (N, S, H, W) masks -> (N, H, W) in [0, 1]."""
    if probabilities.shape != masks.shape[:2]:
        raise ValueError(f"expected_mask: probabilities {tuple(probabilities.shape)} do not match masks "
                         f"{tuple(masks.shape)} (N, S, H, W)")
    return torch.einsum("ns,nshw->nhw", probabilities, masks.to(probabilities.dtype))


def soft_inpainting_conditioning(vae: torch.nn.Module, images: Tensor, soft_masks: Tensor, *,
                                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``inpainting_conditioning`` for a soft mask, differentiable in it.

    Args:
        vae: the pipeline's ``AutoencoderKL``.
        images: (N, 3, H, W) in [0, 1].
        soft_masks: (N, H, W) in [0, 1], the probability of repainting each pixel.
        generator: generator of the masked image's posterior sample.

    Returns:
        ``(mask (N, 1, h, w), masked_image_latents (N, 4, h, w))``: the mask averaged over each latent cell (for a
        binary mask on cell boundaries, the pipeline's nearest resize), and the latents of the weighted blank.
    """
    masks = soft_masks[:, None].float()
    masked_images = images.float() * (1 - masks) + 0.5 * masks
    masked_latents = encode_images(vae, masked_images, sample=True, generator=generator)
    latent_masks = F.adaptive_avg_pool2d(masks, masked_latents.shape[-2:]).to(masked_latents.dtype)
    return latent_masks, masked_latents


def soft_mask_inpaint(components: Any, images: Tensor, soft_masks: Tensor, prompts: Sequence[str], *,
                      steps: int = 25, guidance_scale: float = 7.5, seed: int = 0, backprop_steps: int = 1,
                      negative_prompt: str = "") -> Tensor:
    """Inpaint under soft masks and composite softly, with the gradient of the soft masks kept.

    Args:
        components: ``StableDiffusionComponents`` of an inpainting pipeline.
        images: (N, 3, H, W) in [0, 1].
        soft_masks: (N, H, W) in [0, 1] (with grad).
        prompts: N prompts.
        steps, guidance_scale, negative_prompt: the DDIM sampler's, as in ``inpaint_images``.
        seed: the one generator's seed (starting noise first, then the posterior sample, as the pipeline draws).
        backprop_steps: the last sampler steps that run with gradients (0: the gradient reaches the soft masks
            through the composite alone).

    Returns:
        (N, 3, H, W) float32 candidates ``m * decoded + (1 - m) * images``.
    """
    if not components.is_inpainting:
        raise ValueError("soft_mask_inpaint needs an inpainting pipeline (a UNet with 9 input channels)")
    if len(prompts) != images.shape[0] or soft_masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"soft_mask_inpaint: {len(prompts)} prompts and masks {tuple(soft_masks.shape)} for images "
                         f"{tuple(images.shape)}; expected one prompt and one (H, W) mask per image")
    if not 0 <= backprop_steps <= steps:
        raise ValueError(f"soft_mask_inpaint: backprop_steps must be in [0, {steps}], got {backprop_steps}")
    vae, unet = components.vae, components.unet
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    images, soft_masks = images.to(device), soft_masks.to(device)
    factor = components.vae_scale_factor
    latent_shape = (images.shape[0], int(unet.config.out_channels), images.shape[-2] // factor,
                    images.shape[-1] // factor)
    generator = torch.Generator().manual_seed(seed)
    x = standard_normal_like(torch.empty(latent_shape, dtype=dtype), generator).to(device)
    conditioning = soft_inpainting_conditioning(vae, images, soft_masks, generator=generator)
    with torch.no_grad():
        cond = encode_prompts(components.tokenizer, components.text_encoder, list(prompts)).to(dtype)
        uncond = None
        if guidance_scale != 1:
            uncond = encode_prompts(components.tokenizer, components.text_encoder, [negative_prompt]).to(dtype)
            uncond = uncond.expand_as(cond)
    guided = guided_denoiser(text_unet_model(unet, conditioning), cond, uncond, guidance_scale)
    schedule = NoiseSchedule.from_scheduler(components.scheduler)
    timesteps = schedule.inference_timesteps(steps, device=device)
    tracked = {int(t) for t in timesteps[len(timesteps) - backprop_steps:]} if backprop_steps else set()

    def denoise(latents: Tensor, t: Tensor) -> Tensor:
        # Untracked steps build no graph: their inputs do not require grad and the UNet runs without it.
        with torch.set_grad_enabled(torch.is_grad_enabled() and int(t.flatten()[0]) in tracked):
            return guided(latents, t)

    latents = ddim_sample(denoise, x, timesteps, schedule)
    decoded = decode_latents(vae, latents)
    keep = soft_masks[:, None].float()
    return keep * decoded + (1 - keep) * images.float()
