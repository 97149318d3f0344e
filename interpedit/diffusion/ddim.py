"""DDIM sampling and DDIM inversion (Song et al., ICLR 2021) with one k-diffusion-style signature.

A sampler takes a denoiser callable ``denoise(x, t) -> model output`` and knows nothing about the network, the
conditioning or the guidance behind it (see ``classifier_free_guidance.guided_denoiser``). ``x`` is (B, ...),
``t`` a (B,) int64 tensor of training timesteps on ``x``'s device, and the output is in the schedule's
parameterisation (``NoiseSchedule.prediction_type``). Gradients follow the caller's grad mode: wrap inference in
``torch.no_grad()``; a guider that needs gradients enables them inside its denoiser. The predicted clean sample is
never clipped (as in Guide-and-Rescale and h-space editing code).

Timesteps are one descending list ``t_0 > t_1 > ... > t_{N-1}`` (``NoiseSchedule.inference_timesteps``). Sampling
step ``i`` queries the model at ``t_i`` and moves from the noise level of ``t_i`` to that of ``t_{i+1}``; the last
step ends on ``final_alpha_cumprod``. This is ``diffusers.DDIMScheduler`` exactly for "leading" and "trailing"
spacing (diffusers steps to ``t - T // N``, which is the next timestep there). Inversion takes the same list and
runs the steps backwards, as ``diffusers.DDIMInverseScheduler`` does: the step to the level of ``t_i`` queries the
model at ``t_i`` on the latent of the level below, so at eta 0 sampling undoes inversion exactly when the
model output does not depend on ``x`` (for ``epsilon`` and ``sample`` prediction); with a real network the gap
is the inversion error that null-text and Direct Inversion correct.

The callback gets one dict per step::

    {"x": input latent, "i": step index, "t": timestep the model was queried at (int),
     "denoised": predicted x0, "model_output": the denoiser's output, "x_next": the step's result}

and may return a tensor that replaces ``x_next`` (DiffEdit's background blending, Direct Inversion's correction
towards the inversion latents); returning None keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from interpedit.diffusion.noise_schedule import NoiseSchedule, per_sample, split_model_output


Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``denoise(x (B, ...), t (B,) int64) -> model output (B, ...)`` in the schedule's parameterisation."""

StepCallback = Callable[[dict[str, Any]], Tensor | None]
"""Called once per step with ``{"x", "i", "t", "denoised", "model_output", "x_next"}``; may return a new x_next."""

Generators = torch.Generator | Sequence[torch.Generator] | None


class DDIMStep(NamedTuple):
    """The result of one DDIM update."""

    x_next: Tensor
    """The latent at the next noise level (B, ...)."""
    denoised: Tensor
    """The predicted clean sample x0 (B, ...)."""
    eps: Tensor
    """The predicted noise (B, ...)."""


class DDIMInversion(NamedTuple):
    """The result of ``ddim_invert``."""

    x: Tensor
    """The inverted latent at the level of ``timesteps[0]``: the start of sampling (B, ...)."""
    latents: Tensor
    """(N + 1, B, ...), indexed like the sampling loop: ``latents[i]`` is at the level of ``timesteps[i]`` (the
    input of sampling step ``i``), ``latents[N]`` is the clean input, ``latents[0]`` is ``x``."""


def ddim_sigma(alpha_cumprod: Tensor, alpha_cumprod_next: Tensor, eta: float) -> Tensor:
    """Standard deviation of the noise added by a DDIM step (DDIM Eq. 16).

    ``sigma = eta * sqrt((1 - a_next) / (1 - a_t)) * sqrt(1 - a_t / a_next)``; eta 1 is the DDPM posterior
    variance between the two levels, eta 0 the deterministic DDIM.

    Args:
        alpha_cumprod: alpha-bar of the current level (scalar tensor).
        alpha_cumprod_next: alpha-bar of the next, less noisy level (scalar tensor).
        eta: stochasticity, >= 0.
    """
    variance = (1 - alpha_cumprod_next) / (1 - alpha_cumprod) * (1 - alpha_cumprod / alpha_cumprod_next)
    return eta * variance.clamp(min=0).sqrt()


def ddim_step(
    schedule: NoiseSchedule,
    x: Tensor,
    model_output: Tensor,
    t: int,
    t_next: int | None,
    *,
    eta: float = 0.0,
    noise: Tensor | None = None,
) -> DDIMStep:
    """One DDIM update from the level of ``t`` to the level of ``t_next`` (DDIM Eq. 12).

    ``x_next = sqrt(a_next) x0 + sqrt(1 - a_next - sigma^2) eps + sigma noise``, with ``x0`` and ``eps`` read off
    ``model_output`` at the level of ``t``.

    Args:
        schedule: the noise schedule.
        x: latents at the level of ``t`` (B, ...).
        model_output: the denoiser's output for ``(x, t)``.
        t: current timestep.
        t_next: next, smaller timestep; None for the clean end (``final_alpha_cumprod``).
        eta: stochasticity (see ``ddim_sigma``).
        noise: standard normal noise shaped like ``x``; required when ``eta > 0``.
    """
    if t_next is not None and not t_next < t:
        raise ValueError(f"a sampling step must go to a smaller timestep; got t={t}, t_next={t_next}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0; got {eta}")
    alpha = schedule.alpha_cumprod(t)
    alpha_next = _alpha_cumprod_or_final(schedule, t_next)
    x0, eps = split_model_output(x, model_output, alpha, schedule.prediction_type)
    sigma = ddim_sigma(alpha, alpha_next, eta)
    x_next = per_sample(alpha_next.sqrt(), x) * x0 + per_sample((1 - alpha_next - sigma**2).sqrt(), x) * eps
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs standard normal noise; pass noise=")
        if noise.shape != x.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)} but x has shape {tuple(x.shape)}")
        x_next = x_next + per_sample(sigma, x) * noise
    return DDIMStep(x_next, x0, eps)


def ddim_inversion_step(
    schedule: NoiseSchedule, x: Tensor, model_output: Tensor, t_from: int | None, t: int
) -> DDIMStep:
    """One deterministic DDIM inversion update from the level of ``t_from`` up to the level of ``t``.

    The reverse of ``ddim_step(schedule, x_t, model_output, t, t_from)`` at eta 0 (DDIM Eq. 13 read backwards):
    ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps``, with ``x0`` and ``eps`` read off ``model_output`` at ``x``'s own
    level, as ``diffusers.DDIMInverseScheduler`` does. The model output should be the denoiser's at ``t``.

    Args:
        schedule: the noise schedule.
        x: latents at the level of ``t_from`` (B, ...).
        model_output: the denoiser's output for ``(x, t)``.
        t_from: current timestep; None for the clean end (``final_alpha_cumprod``).
        t: next, larger timestep.
    """
    if t_from is not None and not t_from < t:
        raise ValueError(f"an inversion step must go to a larger timestep; got t_from={t_from}, t={t}")
    alpha_from = _alpha_cumprod_or_final(schedule, t_from)
    alpha = schedule.alpha_cumprod(t)
    x0, eps = split_model_output(x, model_output, alpha_from, schedule.prediction_type)
    x_next = per_sample(alpha.sqrt(), x) * x0 + per_sample((1 - alpha).sqrt(), x) * eps
    return DDIMStep(x_next, x0, eps)


def ddim_sample(
    denoise: Denoiser,
    x: Tensor,
    timesteps: Tensor | Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | Sequence[float] = 0.0,
    generator: Generators = None,
    noises: Tensor | Sequence[Tensor] | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Sample with DDIM from latents at the level of ``timesteps[0]`` down to the clean end.

    Args:
        denoise: ``denoise(x, t) -> model output`` (see module docstring).
        x: starting latents (B, ...), e.g. standard normal noise or ``ddim_invert(...).x``.
        timesteps: N strictly decreasing training timesteps.
        schedule: the noise schedule.
        eta: stochasticity, one value or one per step (h-space editing turns it on for some steps only).
        generator: random generator(s) for the noise of steps with ``eta > 0``; a list gives every sample its own
            generator, so a sample's result does not depend on its batch.
        noises: (N, B, ...) noise to add at each step instead of drawing it (exact regeneration with stored noise,
            as in h-space editing); excludes ``generator``.
        callback: called once per step (see module docstring).

    Returns:
        The final latents (B, ...).
    """
    steps = _checked_timesteps(timesteps, schedule)
    etas = _per_step_eta(eta, len(steps))
    if noises is not None:
        if generator is not None:
            raise ValueError("pass either generator or noises, not both")
        if len(noises) != len(steps):
            raise ValueError(f"noises has {len(noises)} entries for {len(steps)} timesteps")
    for i, t in enumerate(steps):
        t_next = steps[i + 1] if i + 1 < len(steps) else None
        model_output = denoise(x, _batch_timesteps(t, x))
        noise = None
        if etas[i] > 0:
            noise = noises[i] if noises is not None else standard_normal_like(x, generator)
        step = ddim_step(schedule, x, model_output, t, t_next, eta=etas[i], noise=noise)
        x = _after_callback(callback, x, i, t, model_output, step)
    return x


def ddim_invert(
    denoise: Denoiser,
    x0: Tensor,
    timesteps: Tensor | Sequence[int],
    schedule: NoiseSchedule,
    *,
    callback: StepCallback | None = None,
) -> DDIMInversion:
    """Deterministic DDIM inversion: run the eta-0 sampler backwards from clean latents to the level of ``t_0``.

    Pass the same descending ``timesteps`` you will sample with. Inversion step ``i`` (0 = the first, from the
    clean latents) queries the model at ``timesteps[N - 1 - i]``; the callback's ``i`` counts inversion steps.

    Args:
        denoise: ``denoise(x, t) -> model output`` (see module docstring).
        x0: clean latents (B, ...), e.g. the VAE posterior mean times the scaling factor.
        timesteps: N strictly decreasing training timesteps, as for ``ddim_sample``.
        schedule: the noise schedule.
        callback: called once per step (see module docstring).

    Returns:
        The inverted latents and every intermediate latent (``DDIMInversion``).
    """
    steps = _checked_timesteps(timesteps, schedule)
    x = x0
    latents = [x0]
    for i, k in enumerate(reversed(range(len(steps)))):
        t = steps[k]
        t_from = steps[k + 1] if k + 1 < len(steps) else None
        model_output = denoise(x, _batch_timesteps(t, x))
        step = ddim_inversion_step(schedule, x, model_output, t_from, t)
        x = _after_callback(callback, x, i, t, model_output, step)
        latents.append(x)
    return DDIMInversion(x, torch.stack(latents[::-1]))


def standard_normal_like(x: Tensor, generator: Generators = None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn as ``diffusers.utils.torch_utils.randn_tensor`` draws it.

    Noise is drawn on the generator's device and moved to ``x``'s, so a CPU generator gives the same noise on
    every device. With a list of generators, sample ``b`` comes from ``generator[b]``.
    """
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    if len(generator) != x.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]} samples")
    return torch.cat([standard_normal_like(x[:1], one) for one in generator])


def _alpha_cumprod_or_final(schedule: NoiseSchedule, t: int | None) -> Tensor:
    if t is None:
        return torch.tensor(schedule.final_alpha_cumprod, dtype=torch.float64)
    return schedule.alpha_cumprod(t)


def _checked_timesteps(timesteps: Tensor | Sequence[int], schedule: NoiseSchedule) -> list[int]:
    values = torch.as_tensor(timesteps)
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"timesteps must be a non-empty 1-D sequence; got shape {tuple(values.shape)}")
    if values.is_floating_point():
        raise TypeError(f"timesteps must be integers (training timesteps); got dtype {values.dtype}")
    steps = [int(t) for t in values.tolist()]
    if any(later >= earlier for earlier, later in zip(steps, steps[1:])):
        raise ValueError(
            f"timesteps must be strictly decreasing, as for sampling (inversion takes the same list); got {steps}"
        )
    schedule.alpha_cumprod(values)  # range check with a clear message
    return steps


def _per_step_eta(eta: float | Sequence[float], num_steps: int) -> list[float]:
    etas = [float(eta)] * num_steps if isinstance(eta, (int, float)) else [float(value) for value in eta]
    if len(etas) != num_steps:
        raise ValueError(f"eta has {len(etas)} values for {num_steps} timesteps")
    if any(value < 0 for value in etas):
        raise ValueError(f"eta must be >= 0; got {etas}")
    return etas


def _batch_timesteps(t: int, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def _after_callback(
    callback: StepCallback | None, x: Tensor, i: int, t: int, model_output: Tensor, step: DDIMStep
) -> Tensor:
    """The step's result, or the callback's replacement for it."""
    if callback is None:
        return step.x_next
    replacement = callback(
        {"x": x, "i": i, "t": t, "denoised": step.denoised, "model_output": model_output, "x_next": step.x_next}
    )
    if replacement is None:
        return step.x_next
    if not isinstance(replacement, Tensor) or replacement.shape != step.x_next.shape:
        shape = tuple(replacement.shape) if isinstance(replacement, Tensor) else type(replacement).__name__
        raise TypeError(
            f"a step callback must return None or a tensor of shape {tuple(step.x_next.shape)}; got {shape}"
        )
    return replacement
