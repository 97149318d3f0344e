"""A diffusion model for h-space work, by hub id or folder: an unconditional ``UNet2DModel`` (pixel space, e.g.
``google/ddpm-ema-celebahq-256``) or a Stable Diffusion pipeline's UNet with the empty prompt (latent space, e.g.
``pretrained/shapes_stable_diffusion`` or SD 1.5), with what turns images into its samples and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interpedit.diffusion import NoiseSchedule
from interpedit.hspace.h_space import HSpace


def _is_pipeline(source: str) -> bool:
    path = Path(source)
    if path.is_dir():
        return (path / "model_index.json").is_file() or (path / "text_encoder").is_dir()
    return "stable-diffusion" in source.lower()


class HSpaceModel:
    """``hspace`` (the denoiser with h hooks), ``schedule``, ``sample_shape`` and ``encode``/``decode``.

    Args:
        source: a ``UNet2DModel`` repo or folder (``unet/`` + ``scheduler/``, or both at the root), or a Stable
            Diffusion pipeline.
        place: the h-space place (``before``, ``middle``, ``after``).
        device: where the networks go.
    """

    def __init__(self, source: str, place: str = "after", device: torch.device | str = "cpu") -> None:
        from interpedit.backbones import load_diffusers_model, load_scheduler

        self.source = str(source)
        self.place = place
        self.vae: Any = None
        if _is_pipeline(self.source):
            from interpedit.backbones.stable_diffusion import load_stable_diffusion
            from interpedit.stable_diffusion.text_conditioning import encode_prompts

            sd = load_stable_diffusion(self.source, inpainting=False)
            self.unet = sd.unet.to(device).eval().requires_grad_(False)
            self.vae = sd.vae.to(device).eval().requires_grad_(False)
            with torch.no_grad():
                empty = encode_prompts(sd.tokenizer, sd.text_encoder.to(device), [""])
            self.hspace = HSpace(self.unet, place, encoder_hidden_states=empty)
            self.schedule = NoiseSchedule.from_scheduler(sd.scheduler)
            self.kind = "latent"
        else:
            from diffusers import UNet2DModel

            folder = Path(self.source)
            nested = (folder / "unet").is_dir() if folder.is_dir() else False
            self.unet = load_diffusers_model(UNet2DModel, self.source, subfolder="unet" if nested else None)
            self.unet = self.unet.to(device).eval().requires_grad_(False)
            scheduler = load_scheduler("DDIMScheduler", self.source, subfolder="scheduler" if nested else None,
                                       clip_sample=False)
            self.hspace = HSpace(self.unet, place)
            self.schedule = NoiseSchedule.from_scheduler(scheduler)
            self.kind = "pixel"
        side = int(self.unet.config.sample_size)
        self.sample_shape = (int(self.unet.config.in_channels), side, side)
        self.device = torch.device(device)

    def timesteps(self, steps: int) -> list[int]:
        return [int(t) for t in self.schedule.inference_timesteps(steps)]

    def noise(self, seeds: Tensor) -> Tensor:
        """x_T for each seed: (B, *sample_shape), one CPU generator per seed."""
        return torch.stack([torch.randn(self.sample_shape, generator=torch.Generator().manual_seed(int(s)))
                            for s in seeds.tolist()]).to(self.device)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> clean samples (VAE posterior mean for a pipeline, [-1, 1] pixels otherwise)."""
        if self.vae is not None:
            from interpedit.stable_diffusion.latents import encode_images

            return encode_images(self.vae, images.to(self.device))
        return images.to(self.device) * 2 - 1

    @torch.no_grad()
    def decode(self, samples: Tensor) -> Tensor:
        """Clean samples -> (B, 3, H, W) float32 images in [0, 1]."""
        if self.vae is not None:
            from interpedit.stable_diffusion.latents import decode_latents

            return decode_latents(self.vae, samples)
        return ((samples.float() + 1) / 2).clamp(0, 1)
