"""One loader for Stable Diffusion pipelines: SD 1.5, SD 2.1, SD inpainting and the shapes pipelines.

``load_stable_diffusion`` returns the components a method needs (VAE, text encoder, tokenizer, UNet, scheduler),
each loaded with its library's own ``from_pretrained`` through ``interpedit.backbones.loading``, so a missing repo
or folder gives the project's ``PretrainedWeightsNotFoundError``. Methods are written once against these
components and run on any of the pipelines, by hub id or folder.

Three lines from a notebook::

    sd = load_stable_diffusion("pretrained/shapes_stable_diffusion")          # or "stable-diffusion-v1-5/stable-diffusion-v1-5"
    pipe = sd.pipeline()                                                        # a diffusers StableDiffusionPipeline
    image = pipe("a large red circle at the center", num_inference_steps=25).images[0]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from interpedit.backbones.loading import load_diffusers_model, load_scheduler, load_transformers_model

SD_COMPONENTS: tuple[str, ...] = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
"""The parts of a Stable Diffusion repo that ``load_stable_diffusion`` reads, each from its own subfolder."""

INPAINTING_IN_CHANNELS = 9
"""An inpainting UNet's input: 4 noisy-latent channels, 1 mask channel, 4 masked-image-latent channels."""


@dataclass
class StableDiffusionComponents:
    """The loaded parts of a Stable Diffusion pipeline; a part that was not asked for is None.

    Attributes:
        vae: ``AutoencoderKL``; its ``config.scaling_factor`` scales the latents.
        text_encoder: ``CLIPTextModel``; the UNet cross-attends to its ``last_hidden_state``.
        tokenizer: the text encoder's tokenizer (``CLIPTokenizer`` for SD, a word-level fast tokenizer for shapes).
        unet: ``UNet2DConditionModel`` (4 input channels, or 9 for inpainting).
        scheduler: a diffusers scheduler built from the repo's scheduler config (DDIM by default).
        source: the hub id or folder it came from.
    """

    vae: Any = None
    text_encoder: Any = None
    tokenizer: Any = None
    unet: Any = None
    scheduler: Any = None
    source: str = ""

    @property
    def is_inpainting(self) -> bool:
        """Whether the UNet takes the 9 inpainting input channels."""
        return self.unet is not None and self.unet.config.in_channels == INPAINTING_IN_CHANNELS

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel along a side (8 for SD, 4 for the shapes pipeline)."""
        if self.vae is None:
            raise ValueError(f"{self.source}: the VAE was not loaded")
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_scaling_factor(self) -> float:
        """``vae.config.scaling_factor`` (0.18215 for SD 1.x and 2.x)."""
        if self.vae is None:
            raise ValueError(f"{self.source}: the VAE was not loaded")
        return float(self.vae.config.scaling_factor)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> StableDiffusionComponents:
        """Move the networks (not the tokenizer or the scheduler) in place; returns self."""
        for part in (self.vae, self.text_encoder, self.unet):
            if part is not None:
                part.to(device=device, dtype=dtype)
        return self

    def pipeline(self, cls: type | str | None = None, **kwargs: Any):
        """A diffusers pipeline over these components (no safety checker, no feature extractor).

        Args:
            cls: the pipeline class or its name in ``diffusers``; default ``StableDiffusionInpaintPipeline`` for an
                inpainting UNet, else ``StableDiffusionPipeline``.
            **kwargs: further constructor arguments of that pipeline.
        """
        import diffusers

        missing = [name for name in SD_COMPONENTS if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.source}: a pipeline needs every component; not loaded: {', '.join(missing)}")
        if cls is None:
            cls = "StableDiffusionInpaintPipeline" if self.is_inpainting else "StableDiffusionPipeline"
        if isinstance(cls, str):
            cls = getattr(diffusers, cls)
        return cls(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=self.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            **kwargs,
        )


def load_stable_diffusion(
    id_or_path: str | os.PathLike,
    *,
    torch_dtype: torch.dtype | None = None,
    components: Sequence[str] = SD_COMPONENTS,
    scheduler: str = "DDIMScheduler",
    inpainting: bool | None = None,
    **kwargs: Any,
) -> StableDiffusionComponents:
    """Load the components of a Stable Diffusion repo or pipeline folder.

    Args:
        id_or_path: hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``,
            ``stabilityai/stable-diffusion-2-1-base``, ``stabilityai/stable-diffusion-2-inpainting``) or a folder in the
            same layout (``pretrained/shapes_stable_diffusion``).
        torch_dtype: dtype of the networks; None keeps the stored one.
        components: which parts to load (any of ``SD_COMPONENTS``); the others stay None.
        scheduler: scheduler class name in ``diffusers``, built from the repo's scheduler config (an SD repo ships
            PNDM; DDIM is what the editing methods sample with).
        inpainting: True requires a 9-channel inpainting UNet, False a 4-channel one, None accepts either.
        **kwargs: passed to every ``from_pretrained`` (``revision``, ``variant``, ``local_files_only``).

    Raises:
        PretrainedWeightsNotFoundError: a part is neither in the folder nor downloadable.
        ValueError: an unknown component name, or a UNet of the wrong kind for ``inpainting``.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    unknown = [name for name in components if name not in SD_COMPONENTS]
    if unknown:
        raise ValueError(f"load_stable_diffusion: unknown components {unknown}; choose from {', '.join(SD_COMPONENTS)}")
    source = str(id_or_path)
    loaded = StableDiffusionComponents(source=source)
    if "vae" in components:
        loaded.vae = load_diffusers_model(AutoencoderKL, id_or_path, subfolder="vae", torch_dtype=torch_dtype, **kwargs)
    if "text_encoder" in components:
        loaded.text_encoder = load_transformers_model(
            CLIPTextModel, id_or_path, subfolder="text_encoder", torch_dtype=torch_dtype, **kwargs
        )
    if "tokenizer" in components:
        loaded.tokenizer = load_transformers_model(AutoTokenizer, id_or_path, subfolder="tokenizer", **kwargs)
    if "unet" in components:
        loaded.unet = load_diffusers_model(
            UNet2DConditionModel, id_or_path, subfolder="unet", torch_dtype=torch_dtype, **kwargs
        )
        channels = loaded.unet.config.in_channels
        if inpainting is True and channels != INPAINTING_IN_CHANNELS:
            raise ValueError(
                f"'{source}' (subfolder 'unet') holds a UNet with in_channels={channels}; an inpainting UNet takes "
                f"{INPAINTING_IN_CHANNELS} (4 latent + 1 mask + 4 masked-image latent channels). Pass an inpainting "
                "pipeline such as stabilityai/stable-diffusion-2-inpainting or pretrained/shapes_stable_diffusion_inpainting."
            )
        if inpainting is False and channels == INPAINTING_IN_CHANNELS:
            raise ValueError(
                f"'{source}' (subfolder 'unet') holds an inpainting UNet (in_channels=9); this method needs a "
                "text-to-image pipeline such as stable-diffusion-v1-5/stable-diffusion-v1-5 or "
                "pretrained/shapes_stable_diffusion."
            )
    if "scheduler" in components:
        loaded.scheduler = load_scheduler(scheduler, id_or_path, **kwargs)
    return loaded

