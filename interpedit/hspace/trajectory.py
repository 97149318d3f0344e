"""Sampling trajectories that can be regenerated exactly with an offset in h-space, and the two inversions.

A trajectory stores what the reverse pass needs to be replayed: the start ``x_T``, the timesteps, eta per step, and
every step's noise (drawn up front, zeros where eta is 0), plus the h of every step. ``regenerate`` replays it with
an offset ``delta_h[i]`` added to h at step ``i``: with no offset it gives back the sample bit for bit, for any eta.
Many edits (directions, scales) of many samples run as one batch.

Real images get a trajectory from

- ``ddim_inversion`` (eta 0): DDIM inversion; h is recorded along the inversion, as in the released code;
- ``ddpm_inversion`` (eta > 0): the edit-friendly DDPM inversion of Huberman-Spiegelglas et al. (2023): each x_t is
  drawn independently from q(x_t | x_0) and the step noises are solved for, ``z_i = (x_{t_{i+1}} - mu(x_{t_i})) /
  sigma_i``, so that replaying the stored noises passes through every x_t. Where the last step goes to alpha-bar 1
  (``set_alpha_to_one``) its sigma is 0 and its noise 0, as in the released code, and the replay ends at that
  step's mean; SD's schedule ends at alpha-bar(0) < 1, so the replay ends at x_0 itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interpedit.diffusion import NoiseSchedule, ddim_invert, ddim_sample, standard_normal_like
from interpedit.diffusion.ddim import ddim_sigma, ddim_step
from interpedit.hspace.h_space import HSpace


@dataclass
class HTrajectory:
    """A reverse pass that can be replayed (module docstring)."""

    x_T: Tensor
    """(B, ...) the start, at the level of ``timesteps[0]``."""
    timesteps: list[int]
    """T descending training timesteps."""
    etas: list[float]
    """eta of each step."""
    noises: Tensor | None
    """(T, B, ...) each step's standard normal noise (zeros where eta is 0); None when every eta is 0."""
    hs: Tensor
    """(T, B, *h) h of each step, before any offset."""
    x0: Tensor
    """(B, ...) the sample the trajectory ends at."""

    @property
    def batch_size(self) -> int:
        return self.x_T.shape[0]

    def select(self, index: Tensor | Sequence[int] | slice) -> HTrajectory:
        """The trajectories of some samples."""
        return HTrajectory(self.x_T[index], list(self.timesteps), list(self.etas),
                           None if self.noises is None else self.noises[:, index], self.hs[:, index], self.x0[index])


def _etas(eta: float | Sequence[float], steps: int) -> list[float]:
    values = [float(eta)] * steps if isinstance(eta, (int, float)) else [float(e) for e in eta]
    if len(values) != steps or any(e < 0 for e in values):
        raise ValueError(f"eta must be >= 0, one value or one per step ({steps}); got {eta}")
    return values


@torch.no_grad()
def sample_trajectory(hspace: HSpace, schedule: NoiseSchedule, timesteps: Sequence[int], x_T: Tensor,
                      eta: float | Sequence[float] = 0.0, generator: torch.Generator | None = None) -> HTrajectory:
    """Sample from ``x_T`` (B, ...) and keep everything needed to replay the pass.

    Args:
        eta: one value or one per step; the noise of every step with eta > 0 is drawn from ``generator`` before
            sampling, in step order.
    """
    steps = [int(t) for t in timesteps]
    etas = _etas(eta, len(steps))
    noises = None
    if any(e > 0 for e in etas):
        noises = torch.stack([standard_normal_like(x_T, generator) if e > 0 else torch.zeros_like(x_T)
                              for e in etas])
    with hspace.recording() as hs:
        x0 = ddim_sample(hspace, x_T, steps, schedule, eta=etas, noises=noises)
    return HTrajectory(x_T, steps, etas, noises, torch.stack(hs), x0)


@torch.no_grad()
def regenerate(hspace: HSpace, schedule: NoiseSchedule, trajectory: HTrajectory,
               delta_h: Tensor | None = None) -> Tensor:
    """Replay ``trajectory`` with ``delta_h`` added to h at every step.

    Args:
        delta_h: (E, T, *h) E edits, each applied to every sample, or (E, T, B, *h) per sample; None replays the
            trajectory unchanged.

    Returns:
        (B, ...) without ``delta_h``, else (E, B, ...): every edit of every sample, run as one batch of E * B.
    """
    steps, batch = len(trajectory.timesteps), trajectory.batch_size
    if delta_h is None:
        return ddim_sample(hspace, trajectory.x_T, trajectory.timesteps, schedule, eta=trajectory.etas,
                           noises=trajectory.noises)
    h_shape = tuple(trajectory.hs.shape[2:])
    if delta_h.ndim == 2 + len(h_shape) and delta_h.shape[1] == steps and tuple(delta_h.shape[2:]) == h_shape:
        delta_h = delta_h[:, :, None].expand(delta_h.shape[0], steps, batch, *h_shape)
    if delta_h.ndim != 3 + len(h_shape) or tuple(delta_h.shape[3:]) != h_shape or delta_h.shape[1] != steps \
            or delta_h.shape[2] != batch:
        raise ValueError(f"delta_h of shape {tuple(delta_h.shape)} is neither (E, {steps}, *{h_shape}) nor "
                         f"(E, {steps}, {batch}, *{h_shape})")
    edits = delta_h.shape[0]
    offsets = delta_h.transpose(0, 1).reshape(steps, edits * batch, *h_shape)
    x_T = trajectory.x_T.repeat(edits, *[1] * (trajectory.x_T.ndim - 1))
    noises = None
    if trajectory.noises is not None:
        noises = trajectory.noises.repeat(1, edits, *[1] * (trajectory.noises.ndim - 2))
    calls = iter(range(steps))

    def offset(h: Tensor) -> Tensor:
        return offsets[next(calls)].to(h)

    with hspace.offset(offset):
        out = ddim_sample(hspace, x_T, trajectory.timesteps, schedule, eta=trajectory.etas, noises=noises)
    return out.reshape(edits, batch, *out.shape[1:])


def apply_direction(hspace: HSpace, schedule: NoiseSchedule, trajectory: HTrajectory, direction: Tensor,
                    scales: float | Sequence[float], window: tuple[int, int] | None = None) -> Tensor:
    """Regenerate with ``scale * direction`` added at the steps of ``window``.

    Args:
        direction: (T, *h) an offset per step (a direction already in its scale units: std-scaled PCs, a mean
            difference), or (*h) the same at every step.
        scales: one scale, or several: (S, B, ...) then.
        window: ``(first, last)`` step indices (inclusive) that get the offset; None for every step.

    Returns:
        (B, ...) for one scale, (S, B, ...) for several.
    """
    steps = len(trajectory.timesteps)
    if direction.shape == trajectory.hs.shape[2:]:
        direction = direction[None].expand(steps, *direction.shape)
    if direction.shape[0] != steps:
        raise ValueError(f"direction has {direction.shape[0]} steps for a trajectory of {steps}")
    if window is not None:
        first, last = window
        if not 0 <= first <= last < steps:
            raise ValueError(f"window {window} is not inside the {steps} steps")
        keep = torch.zeros(steps, dtype=direction.dtype, device=direction.device)
        keep[first : last + 1] = 1
        direction = direction * keep.view(steps, *[1] * (direction.ndim - 1))
    many = not isinstance(scales, (int, float))
    values = torch.tensor([float(s) for s in scales] if many else [float(scales)], dtype=direction.dtype,
                          device=direction.device)
    edits = values.view(-1, *[1] * direction.ndim) * direction[None]  # (S, T, *h)
    out = regenerate(hspace, schedule, trajectory, edits)
    return out if many else out[0]


@torch.no_grad()
def ddim_inversion(hspace: HSpace, schedule: NoiseSchedule, x0: Tensor, timesteps: Sequence[int]) -> HTrajectory:
    """DDIM inversion of clean (B, ...) ``x0`` (eta 0); ``hs[i]`` is h where the inversion queried
    ``timesteps[i]``."""
    steps = [int(t) for t in timesteps]
    with hspace.recording() as hs:
        inverted = ddim_invert(hspace, x0, steps, schedule)
    return HTrajectory(inverted.x, steps, [0.0] * len(steps), None, torch.stack(hs[::-1]), x0)


@torch.no_grad()
def ddpm_inversion(hspace: HSpace, schedule: NoiseSchedule, x0: Tensor, timesteps: Sequence[int],
                   eta: float = 1.0, generator: torch.Generator | None = None) -> HTrajectory:
    """Edit-friendly DDPM inversion of clean (B, ...) ``x0`` (module docstring); replaying the result passes
    through every independently noised x_t."""
    if eta <= 0:
        raise ValueError("ddpm_inversion needs eta > 0; use ddim_inversion for eta 0")
    steps = [int(t) for t in timesteps]
    levels = [schedule.add_noise(x0, standard_normal_like(x0, generator), t) for t in steps]
    noises, hs, x_next = [], [], None
    for i, t in enumerate(steps):
        t_next = steps[i + 1] if i + 1 < len(steps) else None
        x = levels[i]
        with hspace.recording() as recorded:
            output = hspace(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        hs.append(recorded[0])
        mean = ddim_step(schedule, x, output, t, t_next, eta=eta, noise=torch.zeros_like(x)).x_next
        target = levels[i + 1] if t_next is not None else x0
        alpha = schedule.alpha_cumprod(t)
        alpha_next = schedule.alpha_cumprod(t_next) if t_next is not None else torch.tensor(
            schedule.final_alpha_cumprod, dtype=torch.float64)
        sigma = float(ddim_sigma(alpha, alpha_next, eta))
        noises.append((target - mean) / sigma if sigma > 0 else torch.zeros_like(x))
        x_next = mean + sigma * noises[-1]
    return HTrajectory(levels[0], steps, [float(eta)] * len(steps), torch.stack(noises), torch.stack(hs), x_next)
