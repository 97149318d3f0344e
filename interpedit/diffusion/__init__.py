"""The diffusion core: noise schedule, training loss, DDIM sampling and inversion, guidance, EMA.

Plain PyTorch, one concept per module:

- ``noise_schedule``: ``NoiseSchedule``, a typed view over a diffusers scheduler's ``alphas_cumprod`` (noising,
  ``epsilon``/``v_prediction``/``sample`` conversions, training timesteps, inference timesteps).
- ``denoising_loss``: ``training_target``, ``diffusion_loss`` (per-pixel mask, per-sample weights),
  ``min_snr_weights``.
- ``ddim``: ``ddim_sample``/``ddim_invert`` with the k-diffusion signature ``(denoise, x, timesteps, schedule, *,
  callback)``, and the single steps ``ddim_step``/``ddim_inversion_step``.
- ``classifier_free_guidance``: the ``ClassifierFreeGuidance`` guider (with Lin et al.'s rescale) and
  ``guided_denoiser``, which builds ``denoise(x, t)`` from ``model(x, t, cond)``.
- ``unet_denoiser``: diffusers UNet -> ``model(x, t, cond)``.
- ``ema``: ``EMA`` of a module's parameters with ``swapped_in()``.
- ``unet_lora``: ``add_unet_lora`` (peft adapters through diffusers' ``add_adapter``) and ``unet_lora_settings``.

Three lines from a notebook (``repo`` a Stable Diffusion hub id or folder)::

    schedule = NoiseSchedule.from_scheduler(load_scheduler("DDIMScheduler", repo))
    denoise = guided_denoiser(unet_denoiser(unet), text_embeddings, empty_text_embeddings, scale=7.5)
    latents = ddim_sample(denoise, torch.randn(1, 4, 64, 64), schedule.inference_timesteps(50), schedule)
"""

from interpedit.diffusion.classifier_free_guidance import (
    ClassifierFreeGuidance,
    ConditionalModel,
    guided_denoiser,
    rescale_guidance,
)
from interpedit.diffusion.ddim import (
    DDIMInversion,
    DDIMStep,
    Denoiser,
    StepCallback,
    ddim_invert,
    ddim_inversion_step,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    standard_normal_like,
)
from interpedit.diffusion.denoising_loss import diffusion_loss, min_snr_weights, training_target
from interpedit.diffusion.ema import EMA
from interpedit.diffusion.noise_schedule import (
    PREDICTION_TYPES,
    NoiseSchedule,
    PredictionType,
    check_prediction_type,
    split_model_output,
)
from interpedit.diffusion.unet_denoiser import unet_denoiser
from interpedit.diffusion.unet_lora import DEFAULT_LORA_TARGETS, add_unet_lora, unet_lora_settings


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "EMA",
    "PREDICTION_TYPES",
    "ClassifierFreeGuidance",
    "ConditionalModel",
    "DDIMInversion",
    "DDIMStep",
    "Denoiser",
    "NoiseSchedule",
    "PredictionType",
    "StepCallback",
    "check_prediction_type",
    "ddim_invert",
    "ddim_inversion_step",
    "ddim_sample",
    "ddim_sigma",
    "ddim_step",
    "add_unet_lora",
    "diffusion_loss",
    "guided_denoiser",
    "min_snr_weights",
    "rescale_guidance",
    "split_model_output",
    "standard_normal_like",
    "training_target",
    "unet_denoiser",
    "unet_lora_settings",
]
