"""DiffEdit (Couairon et al., ICLR 2023): a mask from noise-prediction differences, DDIM encoding, masked decoding.

Paper mode (the default), batched over the images of a batch:

1. **Mask.** Noise the source latent to strength ``mask_encode_strength`` (0.5) with ``num_maps_per_mask`` (n = 10)
   independent draws; predict the noise once with the target prompt and once with the source prompt, all 2n draws
   (4n with ``mask_guidance_scale`` != 1) in one UNet call; average ``|eps_target - eps_source|`` over channels and
   draws; clamp values above the ``mask_clamp_quantile`` quantile of each map ("remove extreme values"); rescale
   each map to [0, 1]; threshold at ``mask_threshold`` (0.5).
2. **Encoding.** DDIM-invert the source latent (posterior mean) with the source prompt at guidance 1 to the encoding
   ratio r = ``inpaint_strength`` (0.5): the last ``int(r * num_inference_steps)`` of the sampling timesteps.
3. **Decoding.** DDIM-sample from there with the target prompt and classifier-free guidance; after every step the
   region outside the mask is replaced by the encoded latent of the level just reached (the sampler's callback),
   so the last step restores the source latent outside the mask exactly:
   ``y_{t-1} = M * y_{t-1} + (1 - M) * x_{t-1}``.

``diffusers_compat=True`` reproduces ``diffusers.StableDiffusionDiffEditPipeline`` on the same components: for each
image, one CPU ``torch.Generator().manual_seed(seed)`` feeds ``generate_mask``, then ``invert``, then ``__call__``:

- the mask: posterior samples of the image (one per map), CFG at ``guidance_scale`` on both prompts (4n samples in
  one call), clamped at ``mask_thresholding_ratio`` times the map's mean and binarised at 0.5;
- the inversion: a posterior sample, DDIM inversion *with* CFG at ``guidance_scale`` on the source prompt;
- the decoding blends each step's result with the inverted latent of the level the step *started from* (one step
  noisier), so the last step blends with the level-1 latent rather than the source latent.

Either way ``edit_region`` is the mask at image resolution (nearest-neighbour upsampling), which the harness measures
against the true changed region. The method reads only the source image and the two prompts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from interpedit.diffusion import ddim_invert, ddim_sample
from interpedit.diffusion.ddim import standard_normal_like
from interpedit.editing.editing_method import EditOutput
from interpedit.editing.stable_diffusion_method import StableDiffusionMethod
from interpedit.user_errors import OptionError

PAPER_INPAINT_STRENGTH = 0.5
"""The paper's encoding ratio r."""
DIFFUSERS_INPAINT_STRENGTH = 0.8
"""``StableDiffusionDiffEditPipeline``'s default ``inpaint_strength``."""


def strength_timesteps(timesteps: Tensor, strength: float) -> Tensor:
    """The last ``int(strength * N)`` of N descending sampling timesteps (diffusers' ``get_timesteps``)."""
    count = min(int(len(timesteps) * strength), len(timesteps))
    if count < 1:
        raise ValueError(f"strength {strength} leaves no step of {len(timesteps)}")
    return timesteps[len(timesteps) - count:]


def difference_mask(difference: Tensor, clamp_quantile: float, threshold: float) -> Tensor:
    """The paper's binarisation of (B, h, w) noise-difference maps: clamp each map at its ``clamp_quantile``
    quantile, rescale it to [0, 1] by its minimum and maximum, keep what exceeds ``threshold``."""
    flat = difference.float().flatten(1)
    high = torch.quantile(flat, clamp_quantile, dim=1, keepdim=True)
    clamped = torch.minimum(flat, high)
    low = clamped.min(dim=1, keepdim=True).values
    scaled = (clamped - low) / (high - low).clamp(min=torch.finfo(torch.float32).tiny)
    return (scaled > threshold).reshape(difference.shape)


class DiffEdit(StableDiffusionMethod):
    """DiffEdit on any Stable Diffusion pipeline (see the module docstring for both modes).

    Args:
        pipeline: Stable Diffusion hub id or folder.
        num_inference_steps: DDIM steps of the full schedule (the edit runs the last ``inpaint_strength`` of them).
        guidance_scale: classifier-free guidance scale of the decoding (and, in compat mode, of the mask and the
            inversion).
        mask_encode_strength: noise level of the mask's draws, as a fraction of the schedule (paper: 0.5).
        num_maps_per_mask: noise draws averaged into the mask (paper: n = 10).
        inpaint_strength: encoding ratio r; None for the mode's default (paper 0.5, diffusers 0.8).
        seed: seed of the mask's noise (and, in compat mode, of every random draw of the diffusers pipeline).
        diffusers_compat: reproduce ``StableDiffusionDiffEditPipeline`` instead of the paper.
        mask_thresholding_ratio: compat mode: clamp the map at this multiple of its mean before binarising.
        mask_clamp_quantile: paper mode: values above this quantile of a map are clamped to it.
        mask_threshold: paper mode: threshold of the rescaled map.
        mask_guidance_scale: paper mode: guidance of the mask's noise predictions (1: the prompts alone, as in the
            paper's description).
        torch_dtype: dtype of the networks; None keeps the stored one.
    """

    name = "diffedit"

    def __init__(
        self,
        pipeline: str,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        mask_encode_strength: float = 0.5,
        num_maps_per_mask: int = 10,
        inpaint_strength: float | None = None,
        seed: int = 0,
        diffusers_compat: bool = False,
        mask_thresholding_ratio: float = 3.0,
        mask_clamp_quantile: float = 0.99,
        mask_threshold: float = 0.5,
        mask_guidance_scale: float = 1.0,
        torch_dtype: str | None = None,
    ) -> None:
        super().__init__(pipeline, torch_dtype)
        for name, value in (("mask_encode_strength", mask_encode_strength), ("mask_clamp_quantile", mask_clamp_quantile),
                            ("mask_threshold", mask_threshold)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"DiffEdit.{name}: {value} is outside (0, 1]")
        if inpaint_strength is not None and not 0.0 < inpaint_strength <= 1.0:
            raise OptionError(f"DiffEdit.inpaint_strength: {inpaint_strength} is outside (0, 1]")
        if num_maps_per_mask < 1 or num_inference_steps < 1:
            raise ValueError("DiffEdit.num_maps_per_mask and num_inference_steps must be >= 1")
        if mask_thresholding_ratio <= 0:
            raise OptionError(f"DiffEdit.mask_thresholding_ratio: must be positive, got {mask_thresholding_ratio}")
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.mask_encode_strength = mask_encode_strength
        self.num_maps_per_mask = num_maps_per_mask
        default = DIFFUSERS_INPAINT_STRENGTH if diffusers_compat else PAPER_INPAINT_STRENGTH
        self.inpaint_strength = default if inpaint_strength is None else inpaint_strength
        self.seed = seed
        self.diffusers_compat = diffusers_compat
        self.mask_thresholding_ratio = mask_thresholding_ratio
        self.mask_clamp_quantile = mask_clamp_quantile
        self.mask_threshold = mask_threshold
        self.mask_guidance_scale = mask_guidance_scale
        if diffusers_compat:
            self.name = "diffedit_diffusers_compat"

    # ------------------------------------------------------------------ shared steps
    def timesteps(self, device: torch.device) -> Tensor:
        return self.schedule.inference_timesteps(self.num_inference_steps, device=device)

    def mask_timestep(self, timesteps: Tensor) -> int:
        """The noise level of the mask's draws: the first timestep of the ``mask_encode_strength`` schedule."""
        return int(strength_timesteps(timesteps, self.mask_encode_strength)[0])

    def noise_difference(self, noisy: Tensor, t: int, source: Tensor, target: Tensor, guidance_scale: float) -> Tensor:
        """``|eps(noisy, target) - eps(noisy, source)|`` averaged over channels, (N, h, w), from one UNet call.

        Args:
            noisy: (N, C, h, w) noised latents; ``source``, ``target``: (N, L, D) prompt embeddings.
            guidance_scale: CFG of both predictions (the batch is then [source uncond, source, target uncond,
                target], diffusers' order).
        """
        count = noisy.shape[0]
        timestep = torch.full((count,), t, device=noisy.device, dtype=torch.long)
        prompts = [source, target]
        if guidance_scale > 1.0:
            empty = self.empty_prompt(count)
            prompts = [empty, source, empty, target]
        predictions = self.unet(torch.cat([noisy] * len(prompts)), torch.cat([timestep] * len(prompts)),
                                encoder_hidden_states=torch.cat(prompts)).sample
        if guidance_scale > 1.0:
            uncond_source, eps_source, uncond_target, eps_target = predictions.chunk(4)
            eps_source = uncond_source + guidance_scale * (eps_source - uncond_source)
            eps_target = uncond_target + guidance_scale * (eps_target - uncond_target)
        else:
            eps_source, eps_target = predictions.chunk(2)
        return (eps_target - eps_source).abs().mean(dim=1)

    @staticmethod
    def image_region(latent_mask: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, h, w) latent mask -> (B, H, W) bool, nearest-neighbour."""
        return F.interpolate(latent_mask[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5

    @torch.no_grad()
    def forward(self, batch: dict[str, Any]) -> EditOutput:
        images = batch["source_image"]
        self.check_images(images)
        if self.diffusers_compat:
            results = [self.edit_like_diffusers(images[i:i + 1], batch["source_prompt"][i], batch["target_prompt"][i])
                       for i in range(images.shape[0])]
            edited = torch.cat([r[0] for r in results])
            latent_mask = torch.cat([r[1] for r in results])
        else:
            edited, latent_mask = self.edit(images, list(batch["source_prompt"]), list(batch["target_prompt"]))
        return {"edited": edited, "edit_region": self.image_region(latent_mask, tuple(images.shape[-2:]))}

    # ------------------------------------------------------------------ the paper
    def mask(self, latents: Tensor, source: Tensor, target: Tensor, generator: torch.Generator) -> Tensor:
        """The paper's mask (B, h, w) bool from source latents (B, C, h, w) and prompt embeddings (B, L, D)."""
        n, size = self.num_maps_per_mask, latents.shape[0]
        t = self.mask_timestep(self.timesteps(latents.device))
        noise = standard_normal_like(latents.repeat(n, 1, 1, 1), generator)
        noisy = self.schedule.add_noise(latents.repeat(n, 1, 1, 1), noise, t)
        difference = self.noise_difference(noisy, t, source.repeat(n, 1, 1), target.repeat(n, 1, 1),
                                           self.mask_guidance_scale)
        averaged = difference.unflatten(0, (n, size)).mean(dim=0)
        return difference_mask(averaged, self.mask_clamp_quantile, self.mask_threshold)

    def edit(self, images: Tensor, source_prompts: list[str], target_prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Paper mode on a batch: ``(edited (B, 3, H, W), latent mask (B, h, w))``."""
        size = images.shape[0]
        generator = torch.Generator().manual_seed(self.seed)
        source, target = self.prompt_embeddings(source_prompts), self.prompt_embeddings(target_prompts)
        latents = self.encode(images)
        mask = self.mask(latents, source, target, generator)
        timesteps = strength_timesteps(self.timesteps(images.device), self.inpaint_strength)
        encoded = ddim_invert(self.denoiser(source, None, 1.0), latents, timesteps, self.schedule)
        keep = (~mask)[:, None].to(latents.dtype)

        def outside_from_encoding(step: dict[str, Any]) -> Tensor:
            # latents[i + 1] is the encoding at the level this step reached (latents[N] is the source latent).
            return step["x_next"] * (1 - keep) + encoded.latents[step["i"] + 1] * keep

        decoded = ddim_sample(self.denoiser(target, self.empty_prompt(size), self.guidance_scale), encoded.x,
                              timesteps, self.schedule, callback=outside_from_encoding)
        return self.decode(decoded), mask

    # ------------------------------------------------------------------ diffusers' pipeline
    def edit_like_diffusers(self, image: Tensor, source_prompt: str, target_prompt: str) -> tuple[Tensor, Tensor]:
        """``generate_mask``, ``invert`` and ``__call__`` of ``StableDiffusionDiffEditPipeline`` for one image, with
        one generator: ``(edited (1, 3, H, W), latent mask (1, h, w))``."""
        generator = torch.Generator().manual_seed(self.seed)
        n = self.num_maps_per_mask
        source, target = self.prompt_embeddings([source_prompt]), self.prompt_embeddings([target_prompt])
        timesteps = self.timesteps(image.device)
        # generate_mask: one posterior sample per map, then the maps' noise, from the same generator.
        latents = self.encode(image.repeat(n, 1, 1, 1), sample=True, generator=generator)
        noise = standard_normal_like(latents, generator)
        t = self.mask_timestep(timesteps)
        noisy = self.scheduler.add_noise(latents, noise, torch.tensor([t]))  # diffusers' own arithmetic, bit for bit
        difference = self.noise_difference(noisy, t, source.repeat(n, 1, 1), target.repeat(n, 1, 1),
                                           self.guidance_scale).unflatten(0, (1, n)).mean(dim=1)
        magnitude = difference.mean() * self.mask_thresholding_ratio
        mask = (difference.clamp(0, magnitude) / magnitude) > 0.5
        # invert: a new posterior sample; DDIM inversion with CFG on the source prompt.
        latents = self.encode(image, sample=True, generator=generator)
        steps = strength_timesteps(timesteps, self.inpaint_strength)
        inverted = ddim_invert(self.denoiser(source, self.empty_prompt(1), self.guidance_scale), latents, steps,
                               self.schedule)
        keep = (~mask)[:, None].to(latents.dtype)

        def blend_with_level_stepped_from(step: dict[str, Any]) -> Tensor:
            return step["x_next"] * (1 - keep) + inverted.latents[step["i"]] * keep

        decoded = ddim_sample(self.denoiser(target, self.empty_prompt(1), self.guidance_scale), inverted.x, steps,
                              self.schedule, callback=blend_with_level_stepped_from)
        return self.decode(decoded), mask
