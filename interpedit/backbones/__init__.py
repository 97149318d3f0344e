"""Pretrained parts by hub id or local path (``loading``) and tiny random versions of them (``tiny_presets``).

Three lines from a notebook::

    from interpedit.backbones import load_diffusers_model, load_timm_vit
    from diffusers import UNet2DConditionModel
    unet = load_diffusers_model(UNet2DConditionModel, "stable-diffusion-v1-5/stable-diffusion-v1-5", subfolder="unet")
"""

from interpedit.backbones.loading import (
    DINO_VIT_ALIASES,
    PretrainedWeightsNotFoundError,
    hub_offline,
    load_diffusers_model,
    load_hub_mixin_model,
    load_inpainting_unet,
    load_scheduler,
    load_timm_vit,
    load_transformers_model,
    looks_like_local_path,
    resolve_vit_name,
    scheduler_from_config,
)
from interpedit.backbones.tiny_presets import (
    TINY_CLIP_BOS_TOKEN_ID,
    TINY_CLIP_EOS_TOKEN_ID,
    TINY_CLIP_VOCAB_SIZE,
    sd_ddim_scheduler,
    tiny_clip,
    tiny_clip_processor,
    tiny_clip_text,
    tiny_clip_tokenizer,
    tiny_clip_vision,
    tiny_inpainting_unet,
    tiny_sam,
    tiny_sam_processor,
    tiny_unet2d,
    tiny_unet2d_condition,
    tiny_vae,
    tiny_vit,
)


__all__ = [
    "DINO_VIT_ALIASES",
    "PretrainedWeightsNotFoundError",
    "TINY_CLIP_BOS_TOKEN_ID",
    "TINY_CLIP_EOS_TOKEN_ID",
    "TINY_CLIP_VOCAB_SIZE",
    "hub_offline",
    "load_diffusers_model",
    "load_hub_mixin_model",
    "load_inpainting_unet",
    "load_scheduler",
    "load_timm_vit",
    "load_transformers_model",
    "looks_like_local_path",
    "resolve_vit_name",
    "scheduler_from_config",
    "sd_ddim_scheduler",
    "tiny_clip",
    "tiny_clip_processor",
    "tiny_clip_text",
    "tiny_clip_tokenizer",
    "tiny_clip_vision",
    "tiny_inpainting_unet",
    "tiny_sam",
    "tiny_sam_processor",
    "tiny_unet2d",
    "tiny_unet2d_condition",
    "tiny_vae",
    "tiny_vit",
]
