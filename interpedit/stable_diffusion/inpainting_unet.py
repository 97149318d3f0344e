"""The inpainting UNet of Stable Diffusion's inpainting models, made from a text-to-image UNet, and its inputs.

SD-inpainting's UNet reads 9 channels: the 4 noisy latents, the mask at latent resolution (1 = repaint), and the 4
latents of the image with the repainted region blanked. SD-2-inpainting was fine-tuned from SD-2-base with the five
new input channels of ``conv_in`` zero-initialised, so that training starts from the text-to-image model's
behaviour; ``inpainting_unet_from`` does the same. ``inpainting_conditioning`` builds the two extra inputs exactly
as ``diffusers.StableDiffusionInpaintPipeline`` does (``prepare_mask_latents``), so training and the pipeline agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from interpedit.backbones.stable_diffusion import INPAINTING_IN_CHANNELS
from interpedit.stable_diffusion.latents import encode_images


def inpainting_unet_from(unet: torch.nn.Module) -> torch.nn.Module:
    """A 9-channel copy of a text-to-image ``UNet2DConditionModel``: same weights, new input channels at zero.

    Args:
        unet: a UNet with 4 input channels.

    Returns:
        A new ``UNet2DConditionModel`` with ``in_channels=9``; the first 4 input channels of ``conv_in`` carry the
        old weights, so at initialisation it predicts what ``unet`` predicts whatever the mask inputs are.
    """
    from diffusers import UNet2DConditionModel

    latent_channels = unet.config.in_channels
    if latent_channels == INPAINTING_IN_CHANNELS:
        raise ValueError("inpainting_unet_from: the UNet already has 9 input channels")
    config = dict(unet.config)
    config["in_channels"] = 2 * latent_channels + 1
    new = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    old_weight = state.pop("conv_in.weight")
    missing, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"conv_in.weight"}:
        raise RuntimeError(f"inpainting_unet_from: unexpected state mismatch ({missing}, {unexpected})")
    with torch.no_grad():
        new.conv_in.weight.zero_()
        new.conv_in.weight[:, :latent_channels] = old_weight
    return new.to(dtype=old_weight.dtype, device=old_weight.device)


def inpainting_conditioning(
    vae: torch.nn.Module,
    images: Tensor,
    masks: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The mask and masked-image-latent inputs of an inpainting UNet, as ``StableDiffusionInpaintPipeline`` makes them.

    The pipeline binarises the mask at 0.5, blanks the masked pixels of the [-1, 1] image to 0 (grey), encodes it with
    a posterior sample, and resizes the mask to latent size with ``F.interpolate``'s default (nearest).

    Args:
        vae: the pipeline's ``AutoencoderKL``.
        images: (B, 3, H, W) in [0, 1].
        masks: (B, H, W) or (B, 1, H, W), 1 (or > 0.5) where the model repaints.
        generator: generator of the posterior sample.

    Returns:
        ``(mask (B, 1, h, w), masked_image_latents (B, 4, h, w))``, both in the VAE's dtype.
    """
    if masks.ndim == 3:
        masks = masks[:, None]
    binary = (masks.float() >= 0.5).float()
    # The pipeline blanks to 0 in [-1, 1]: 0.5 in [0, 1].
    masked_images = images.float() * (binary < 0.5) + 0.5 * (binary >= 0.5)
    masked_latents = encode_images(vae, masked_images, sample=True, generator=generator)
    height, width = masked_latents.shape[-2:]
    latent_masks = F.interpolate(binary, size=(height, width)).to(masked_latents.dtype)
    return latent_masks, masked_latents


def inpainting_model_input(latents: Tensor, latent_masks: Tensor, masked_latents: Tensor) -> Tensor:
    """The 9-channel UNet input ``[latents, mask, masked-image latents]``; the conditioning is repeated to the
    latents' batch (the doubled batch of a classifier-free-guidance call)."""
    repeats = latents.shape[0] // latent_masks.shape[0]
    if repeats * latent_masks.shape[0] != latents.shape[0]:
        raise ValueError(
            f"{latents.shape[0]} latents for a conditioning of {latent_masks.shape[0]} samples: not a multiple"
        )
    if repeats > 1:
        latent_masks = latent_masks.repeat(repeats, 1, 1, 1)
        masked_latents = masked_latents.repeat(repeats, 1, 1, 1)
    return torch.cat([latents, latent_masks.to(latents.dtype), masked_latents.to(latents.dtype)], dim=1)
