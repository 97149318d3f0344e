"""The baseline every text-driven editor is compared with: DDIM-invert the source, then sample with the target.

The source latent (VAE posterior mean) is DDIM-inverted with the source prompt at guidance 1 over all
``num_inference_steps`` steps, then sampled back with the target prompt and classifier-free guidance. At guidance 1
and with the source prompt this is the inversion round trip; with guidance the trajectory drifts from the
inversion's, which is the error Guide-and-Rescale and null-text inversion correct.
"""

from __future__ import annotations

from typing import Any

import torch

from interpedit.diffusion import ddim_invert, ddim_sample
from interpedit.editing.editing_method import EditOutput
from interpedit.editing.stable_diffusion_method import StableDiffusionMethod
from interpedit.user_errors import OptionError


class DDIMInversionEdit(StableDiffusionMethod):
    """DDIM inversion with the source prompt, then guided sampling with the target prompt.

    Args:
        pipeline: Stable Diffusion hub id or folder.
        num_inference_steps: DDIM steps of both the inversion and the sampling.
        guidance_scale: classifier-free guidance scale of the sampling (the inversion uses 1).
        torch_dtype: dtype of the networks; None keeps the stored one.
    """

    name = "ddim_inversion"

    def __init__(self, pipeline: str, num_inference_steps: int = 50, guidance_scale: float = 7.5,
                 torch_dtype: str | None = None) -> None:
        super().__init__(pipeline, torch_dtype)
        if num_inference_steps < 1:
            raise OptionError(f"DDIMInversionEdit.num_inference_steps: must be >= 1, got {num_inference_steps}")
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale

    @torch.no_grad()
    def forward(self, batch: dict[str, Any]) -> EditOutput:
        images = batch["source_image"]
        self.check_images(images)
        size = images.shape[0]
        timesteps = self.schedule.inference_timesteps(self.num_inference_steps, device=images.device)
        source = self.prompt_embeddings(batch["source_prompt"])
        target = self.prompt_embeddings(batch["target_prompt"])
        inverted = ddim_invert(self.denoiser(source, None, 1.0), self.encode(images), timesteps, self.schedule).x
        edited = ddim_sample(self.denoiser(target, self.empty_prompt(size), self.guidance_scale), inverted, timesteps,
                             self.schedule)
        return {"edited": self.decode(edited)}
