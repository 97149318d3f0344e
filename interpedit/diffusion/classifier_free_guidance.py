"""Classifier-free guidance (Ho & Salimans 2022) as a guider, and the denoiser that applies it to a model.

The guider only combines two predictions; ``guided_denoiser`` turns a conditional model
``model(x, t, cond) -> output`` into the ``denoise(x, t)`` callable that samplers take, running the conditional and
the unconditional branch in one forward pass. Samplers never see the guidance.

Three lines from a notebook::

    denoise = guided_denoiser(unet_denoiser(unet), text_embeddings, empty_text_embeddings, scale=7.5)
    x0 = ddim_sample(denoise, noise, schedule.inference_timesteps(50), schedule)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from interpedit.diffusion.ddim import Denoiser


ConditionalModel = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``model(x (B, ...), t (B,), cond (B, ...)) -> output (B, ...)``, e.g. ``unet_denoiser(unet)``."""


def rescale_guidance(guided: Tensor, conditional: Tensor, guidance_rescale: float) -> Tensor:
    """Lin et al. 2023 (Sec. 3.4): match the guided prediction's std to the conditional one's, then blend.

    ``rescaled = guided * std(conditional) / std(guided)`` per sample, and the result is
    ``guidance_rescale * rescaled + (1 - guidance_rescale) * guided``, as diffusers' ``rescale_noise_cfg`` (applied
    to the model output in whatever parameterisation it is; the paper uses v-prediction). Stds are unbiased, over
    all but the batch dimension.

    Args:
        guided: the guided prediction (B, ...).
        conditional: the conditional prediction (B, ...).
        guidance_rescale: blend factor phi in [0, 1]; 0 returns ``guided``, the paper uses 0.7.
    """
    if not 0 <= guidance_rescale <= 1:
        raise ValueError(f"guidance_rescale must lie in [0, 1]; got {guidance_rescale}")
    dims = list(range(1, guided.ndim))
    rescaled = guided * (conditional.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return guidance_rescale * rescaled + (1 - guidance_rescale) * guided


@dataclass(frozen=True)
class ClassifierFreeGuidance:
    """Combine a conditional and an unconditional prediction: ``uncond + scale * (cond - uncond)``.

    Attributes:
        scale: guidance scale w (Ho & Salimans 2022, Eq. 6 with w + 1 = scale, as diffusers' ``guidance_scale``);
            1 is the conditional prediction alone, 0 the unconditional one.
        guidance_rescale: Lin et al.'s rescale factor (``rescale_guidance``); 0 turns it off.
    """

    scale: float = 7.5
    guidance_rescale: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.guidance_rescale <= 1:
            raise ValueError(f"guidance_rescale must lie in [0, 1]; got {self.guidance_rescale}")

    @property
    def needs_unconditional(self) -> bool:
        """Whether the unconditional prediction changes the result (``scale != 1``)."""
        return self.scale != 1

    def __call__(self, conditional: Tensor, unconditional: Tensor) -> Tensor:
        """The guided prediction (B, ...) from the conditional and unconditional ones (B, ...)."""
        if conditional.shape != unconditional.shape:
            raise ValueError(
                f"conditional prediction has shape {tuple(conditional.shape)} but the unconditional one has "
                f"{tuple(unconditional.shape)}"
            )
        guided = unconditional + self.scale * (conditional - unconditional)
        if self.guidance_rescale > 0:
            guided = rescale_guidance(guided, conditional, self.guidance_rescale)
        return guided


def guided_denoiser(
    model: ConditionalModel,
    cond: Tensor,
    uncond: Tensor | None,
    scale: float = 7.5,
    *,
    guidance_rescale: float = 0.0,
) -> Denoiser:
    """The ``denoise(x, t)`` callable applying classifier-free guidance to ``model``.

    Each call runs ``model`` once on the batch ``[x, x]`` with conditioning ``[uncond, cond]`` (unconditional
    first, as diffusers pipelines do), or once on ``x`` with ``cond`` alone when ``scale == 1``.

    Args:
        model: ``model(x, t, cond) -> output``.
        cond: conditioning (B, ...), e.g. text embeddings (B, L, D) or region tokens (B, K, D).
        uncond: unconditional conditioning, (B, ...) or (1, ...) for all samples (e.g. the empty prompt's
            embeddings); may be None when ``scale == 1``.
        scale: guidance scale (see ``ClassifierFreeGuidance``).
        guidance_rescale: Lin et al.'s rescale factor; 0 turns it off.
    """
    guider = ClassifierFreeGuidance(scale, guidance_rescale)
    if not guider.needs_unconditional:

        def conditional_only(x: Tensor, t: Tensor) -> Tensor:
            return model(x, t, cond)

        return conditional_only
    if uncond is None:
        raise ValueError(f"guidance scale {scale} needs an unconditional conditioning; pass uncond")
    if uncond.shape[1:] != cond.shape[1:] or uncond.shape[0] not in (1, cond.shape[0]):
        raise ValueError(
            f"uncond has shape {tuple(uncond.shape)}; for cond of shape {tuple(cond.shape)} it must be "
            f"{tuple(cond.shape)} or {(1, *cond.shape[1:])}"
        )
    both_conditions = torch.cat([uncond.expand_as(cond), cond])

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        if x.shape[0] != cond.shape[0]:
            raise ValueError(
                f"the denoiser was built for {cond.shape[0]} conditionings but x has {x.shape[0]} samples"
            )
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        unconditional, conditional = model(torch.cat([x, x]), torch.cat([t, t]), both_conditions).chunk(2)
        return guider(conditional, unconditional)

    return denoise
