"""Images to Stable Diffusion latents and back, as the diffusers pipelines do it.

The pipelines feed the VAE images in [-1, 1] and multiply its latents by ``vae.config.scaling_factor``; decoding
divides by it. These two functions are that convention in one place, with images in [0, 1] as everywhere else in
interpedit.
"""

from __future__ import annotations

import torch
from torch import Tensor


def encode_images(
    vae: torch.nn.Module, images: Tensor, *, sample: bool = False, generator: torch.Generator | None = None
) -> Tensor:
    """Scaled latents of (B, 3, H, W) images in [0, 1] -> (B, 4, H / f, W / f).

    Args:
        vae: an ``AutoencoderKL``.
        images: (B, 3, H, W) in [0, 1].
        sample: draw from the posterior (training, as SD's trainers and the inpainting pipeline's masked-image
            latents do) rather than take its mean (inversion-based editors use the mean).
        generator: generator for the posterior sample.
    """
    dtype = next(vae.parameters()).dtype
    posterior = vae.encode(images.to(dtype) * 2.0 - 1.0).latent_dist
    latents = posterior.sample(generator) if sample else posterior.mode()
    return latents * vae.config.scaling_factor


def decode_latents(vae: torch.nn.Module, latents: Tensor) -> Tensor:
    """(B, 4, h, w) scaled latents -> (B, 3, h * f, w * f) float32 images in [0, 1]."""
    dtype = next(vae.parameters()).dtype
    decoded = vae.decode(latents.to(dtype) / vae.config.scaling_factor).sample
    return ((decoded.float() + 1.0) / 2.0).clamp(0.0, 1.0)
