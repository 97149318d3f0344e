"""The denoising loss: regression targets per parameterisation, a masked and weighted squared error, Min-SNR weights.

A training step reads::

    t = schedule.sample_timesteps(len(x0), generator=generator, device=x0.device)
    noise = torch.randn_like(x0)
    model_output = model(schedule.add_noise(x0, noise, t), t, cond)
    loss = diffusion_loss(model_output, training_target(schedule, x0, noise, t), mask=region_union)
"""

from __future__ import annotations

import torch
from torch import Tensor

from interpedit.diffusion.noise_schedule import NoiseSchedule, PredictionType, check_prediction_type


def training_target(
    schedule: NoiseSchedule,
    x0: Tensor,
    noise: Tensor,
    t: Tensor | int,
    prediction_type: PredictionType | None = None,
) -> Tensor:
    """What the network should output for ``x_t = schedule.add_noise(x0, noise, t)``.

    Args:
        schedule: the noise schedule.
        x0: clean samples (B, C, H, W).
        noise: the noise used to make ``x_t``, shaped like ``x0``.
        t: timesteps, an int or (B,).
        prediction_type: overrides ``schedule.prediction_type``.

    Returns:
        ``noise`` for ``epsilon``, ``x0`` for ``sample``, ``sqrt(a_t) noise - sqrt(1 - a_t) x0`` for ``v_prediction``.
    """
    prediction_type = check_prediction_type(prediction_type or schedule.prediction_type)
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x0 has shape {tuple(x0.shape)}")
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    return schedule.velocity(x0, noise, t)


def min_snr_weights(
    schedule: NoiseSchedule,
    t: Tensor,
    gamma: float = 5.0,
    prediction_type: PredictionType | None = None,
    floor: float | None = None,
) -> Tensor:
    """Min-SNR-gamma loss weights (Hang et al., ICCV 2023, Sec. 3.4), for ``diffusion_loss(weights=...)``.

    The weight of the x0-space loss is ``min(SNR(t), gamma)``; expressed for the loss on the network's own output it
    becomes ``min(SNR, gamma) / SNR`` for ``epsilon``, ``min(SNR, gamma) / (SNR + 1)`` for ``v_prediction`` and
    ``min(SNR, gamma)`` for ``sample``.

    With ``floor``, the x0-space weight is ``clamp(SNR, floor, gamma)``: at the noisiest timesteps, where the
    epsilon loss weighs an error in the predicted image only by SNR (about 0.005 at SD's last step), the image error
    keeps at least the weight ``floor``, as the truncated-SNR weighting ``max(SNR, 1)`` of Salimans & Ho (2022) does.
    Those are the timesteps at which a sample's layout is decided.

    Args:
        schedule: the noise schedule.
        t: timesteps (B,).
        gamma: the SNR clamp; 5 in the paper.
        prediction_type: overrides ``schedule.prediction_type``.
        floor: lower clamp of the x0-space weight (below ``gamma``); None for none (the paper's weighting).

    Returns:
        (B,) float32 weights on ``t``'s device.
    """
    prediction_type = check_prediction_type(prediction_type or schedule.prediction_type)
    if gamma <= 0:
        raise ValueError(f"gamma must be positive; got {gamma}")
    if floor is not None and not 0 < floor < gamma:
        raise ValueError(f"floor must lie in (0, gamma={gamma}); got {floor}")
    snr = schedule.signal_to_noise_ratio(t)
    clamped = snr.clamp(min=floor, max=gamma)
    if prediction_type == "epsilon":
        weights = clamped / snr
    elif prediction_type == "v_prediction":
        weights = clamped / (snr + 1)
    else:
        weights = clamped
    return weights.float()


def diffusion_loss(
    model_output: Tensor,
    target: Tensor,
    weights: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    reduction: str = "mean",
) -> Tensor:
    """Mean squared error per sample, optionally over a pixel mask, then a weighted mean over the batch.

    The per-sample loss is the mean of ``(model_output - target)^2`` over channels and the pixels where ``mask`` is
    set (a soft mask weights the pixels), so every sample counts equally however large its mask. Samples whose mask
    is empty have nothing to learn from: they are left out of the batch mean (the loss is 0 if all are empty).

    Args:
        model_output: network output (B, C, H, W) (or any (B, ...)).
        target: regression target, same shape (see ``training_target``).
        weights: per-sample weights (B,) (e.g. ``min_snr_weights``); None for 1.
        mask: pixels that count, bool or float in [0, 1], (B, H, W), (B, 1, H, W) or (B, C, H, W); e.g. the union
            of the conditioned regions. None for all pixels.
        reduction: ``"mean"`` for a scalar, ``"none"`` for the (B,) weighted per-sample losses.

    Returns:
        A scalar, or (B,) with ``reduction="none"``.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")
    if model_output.shape != target.shape:
        raise ValueError(f"model output has shape {tuple(model_output.shape)} but target has {tuple(target.shape)}")
    batch = model_output.shape[0]
    # At least float32, also under bf16 autocast; float64 inputs stay float64.
    dtype = torch.promote_types(model_output.dtype, torch.float32)
    squared_error = (model_output.to(dtype) - target.to(dtype)).pow(2)
    if mask is None:
        per_sample = squared_error.flatten(1).mean(dim=1)
        counted = torch.ones(batch, dtype=torch.bool, device=model_output.device)
    else:
        pixel_weights = _broadcast_mask(mask, squared_error).expand_as(squared_error)
        mass = pixel_weights.flatten(1).sum(dim=1)
        counted = mass > 0
        per_sample = (squared_error * pixel_weights).flatten(1).sum(dim=1) / mass.clamp(min=torch.finfo(dtype).tiny)
    if weights is not None:
        if weights.shape != (batch,):
            raise ValueError(f"weights must have shape ({batch},), one per sample; got {tuple(weights.shape)}")
        per_sample = per_sample * weights.to(per_sample)
    if reduction == "none":
        return per_sample
    # Summing the zeros of empty-mask samples keeps the graph connected when every mask is empty.
    return per_sample.sum() / counted.sum().clamp(min=1)


def _broadcast_mask(mask: Tensor, like: Tensor) -> Tensor:
    """A (B, H, W), (B, 1, H, W) or (B, C, H, W) mask in ``like``'s dtype, broadcastable over it (B, C, H, W)."""
    given_shape = tuple(mask.shape)
    if mask.ndim == like.ndim - 1:
        mask = mask.unsqueeze(1)
    spatial_ok = mask.ndim == like.ndim and mask.shape[0] == like.shape[0] and mask.shape[2:] == like.shape[2:]
    if not spatial_ok or mask.shape[1] not in (1, like.shape[1]):
        raise ValueError(
            f"mask has shape {given_shape}; for outputs of shape {tuple(like.shape)} it must be "
            f"(B, H, W), (B, 1, H, W) or (B, C, H, W)"
        )
    mask = mask.to(device=like.device, dtype=like.dtype)
    if bool(((mask < 0) | (mask > 1)).any()):
        raise ValueError("mask values must lie in [0, 1]")
    return mask
