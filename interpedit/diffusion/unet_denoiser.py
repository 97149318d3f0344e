"""Adapter from a diffusers UNet to the ``model(x, t, cond) -> output`` convention of this package."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from interpedit.diffusion.classifier_free_guidance import ConditionalModel


def unet_denoiser(unet: torch.nn.Module, **unet_kwargs: Any) -> ConditionalModel:
    """Wrap a ``UNet2DConditionModel`` (or an unconditional ``UNet2DModel``) as ``model(x, t, cond) -> output``.

    The wrapped call is ``unet(x, t, encoder_hidden_states=cond, **unet_kwargs).sample``; with ``cond=None`` it is
    ``unet(x, t, **unet_kwargs).sample``, for unconditional UNets.

    Args:
        unet: the diffusers UNet.
        **unet_kwargs: passed on every call (``cross_attention_kwargs``, ``added_cond_kwargs``, ...).

    Returns:
        ``model(x (B, C, H, W), t (B,) or int, cond (B, L, D) or None) -> (B, C_out, H, W)``.
    """

    def model(x: Tensor, t: Tensor | int, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            return unet(x, t, **unet_kwargs).sample
        return unet(x, t, encoder_hidden_states=cond, **unet_kwargs).sample

    return model
