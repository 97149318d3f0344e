"""The common base of editing methods that run on a Stable Diffusion pipeline (by hub id or folder).

It loads the components once with ``interpedit.backbones.stable_diffusion.load_stable_diffusion``, keeps the
networks frozen as submodules (so they move with the evaluation system), and offers the pieces every such method
needs: prompt embeddings as the pipelines compute them, VAE encoding and decoding, and a classifier-free-guidance
denoiser for the diffusion core's samplers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from interpedit.backbones.stable_diffusion import load_stable_diffusion
from interpedit.diffusion import Denoiser, NoiseSchedule, guided_denoiser
from interpedit.editing.editing_method import EditingMethod
from interpedit.stable_diffusion.latents import decode_latents, encode_images
from interpedit.stable_diffusion.sampling import text_unet_model
from interpedit.stable_diffusion.text_conditioning import encode_prompts
from interpedit.user_errors import OptionError

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class StableDiffusionMethod(EditingMethod):
    """Base class: a frozen Stable Diffusion pipeline's VAE, text encoder, tokenizer, UNet and scheduler.

    Args:
        pipeline: Stable Diffusion hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``) or folder
            (``pretrained/shapes_stable_diffusion``).
        torch_dtype: ``float32``, ``float16`` or ``bfloat16`` for the networks; None keeps the stored dtype.
    """

    def __init__(self, pipeline: str, torch_dtype: str | None = None) -> None:
        super().__init__()
        if torch_dtype is not None and torch_dtype not in TORCH_DTYPES:
            raise OptionError(f"{type(self).__name__}.torch_dtype: {torch_dtype!r} is not one of {', '.join(TORCH_DTYPES)}")
        sd = load_stable_diffusion(pipeline, torch_dtype=TORCH_DTYPES.get(torch_dtype), inpainting=False)
        self.pipeline_source = str(pipeline)
        self.vae = sd.vae.eval().requires_grad_(False)
        self.text_encoder = sd.text_encoder.eval().requires_grad_(False)
        self.unet = sd.unet.eval().requires_grad_(False)
        self.tokenizer = sd.tokenizer
        self.scheduler = sd.scheduler
        self.schedule = NoiseSchedule.from_scheduler(sd.scheduler)

    def train(self, mode: bool = True) -> StableDiffusionMethod:
        super().train(mode)
        for part in (self.vae, self.text_encoder, self.unet):
            part.eval()  # frozen pretrained parts stay in inference behaviour
        return self

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @torch.no_grad()
    def prompt_embeddings(self, prompts: Sequence[str]) -> Tensor:
        """(B, L, D) embeddings, as ``StableDiffusionPipeline.encode_prompt`` computes them."""
        return encode_prompts(self.tokenizer, self.text_encoder, list(prompts)).to(self.dtype)

    def encode(self, images: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Scaled latents of (B, 3, H, W) images in [0, 1] (posterior mean unless ``sample``)."""
        return encode_images(self.vae, images, sample=sample, generator=generator).to(self.dtype)

    def decode(self, latents: Tensor) -> Tensor:
        """(B, 3, H, W) float32 images in [0, 1]."""
        return decode_latents(self.vae, latents)

    def denoiser(self, cond: Tensor, uncond: Tensor | None, guidance_scale: float) -> Denoiser:
        """``denoise(x, t)`` with classifier-free guidance (one batched UNet call per step; none when scale is 1)."""
        return guided_denoiser(text_unet_model(self.unet), cond, uncond, guidance_scale)

    def empty_prompt(self, batch_size: int) -> Tensor:
        """The unconditional embeddings (the empty prompt), (B, L, D)."""
        return self.prompt_embeddings([""]).expand(batch_size, -1, -1)

    def check_images(self, images: Tensor) -> None:
        """Fail early, naming the pipeline, when the images' size does not fit the VAE and UNet."""
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        height, width = images.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(
                f"{type(self).__name__}: images of {height}x{width} px do not divide into the latent grid of "
                f"'{self.pipeline_source}' (its VAE downsamples by {factor}); resize the benchmark "
                "(data.init_args.resolution)"
            )
