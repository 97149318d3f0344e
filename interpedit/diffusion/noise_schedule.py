"""The discrete noise schedule of a DDPM-family model: alpha-bar per training timestep and what follows from it.

``NoiseSchedule`` is a thin typed view over a diffusers scheduler's ``alphas_cumprod`` (the scheduler stays the
single source of truth for betas and timestep spacing). It noises clean samples (DDPM Eq. 4,
``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` with ``a_t`` = alpha-bar), converts a network output of any of the three
parameterisations (``epsilon``, ``v_prediction``, ``sample``) into the predicted clean sample and noise, and draws
training timesteps. Coefficients are computed in float64 and cast to the sample's dtype.

Three lines from a notebook::

    from interpedit.backbones import sd_ddim_scheduler
    from interpedit.diffusion import NoiseSchedule
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor


PredictionType = Literal["epsilon", "v_prediction", "sample"]
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)


def check_prediction_type(prediction_type: str) -> PredictionType:
    """Return ``prediction_type`` if it is one of ``PREDICTION_TYPES``, else raise a ``ValueError`` naming them."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}; got {prediction_type!r}")
    return prediction_type  # type: ignore[return-value]


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """Shape a scalar or (B,) coefficient to broadcast over ``like`` (B, ...), in ``like``'s dtype and device."""
    if values.ndim > 1:
        raise ValueError(f"coefficients must be a scalar or one per sample (B,); got shape {tuple(values.shape)}")
    if values.ndim == 1 and values.shape[0] not in (1, like.shape[0]):
        raise ValueError(f"{values.shape[0]} timesteps or noise levels for a batch of {like.shape[0]} samples")
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim)).to(dtype=like.dtype, device=like.device)


def split_model_output(
    x_t: Tensor, model_output: Tensor, alpha_cumprod: Tensor, prediction_type: PredictionType
) -> tuple[Tensor, Tensor]:
    """The predicted clean sample and noise implied by a network output at noise level ``alpha_cumprod``.

    Inverts ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps`` (DDIM Eq. 12's "predicted x_0"); for ``v_prediction``,
    ``v = sqrt(a) eps - sqrt(1 - a) x_0`` (Salimans & Ho 2022, Sec. 4), so ``x_0 = sqrt(a) x_t - sqrt(1 - a) v`` and
    ``eps = sqrt(a) v + sqrt(1 - a) x_t``.

    Args:
        x_t: noisy samples (B, ...).
        model_output: the network's output (B, ...), in the ``prediction_type`` parameterisation.
        alpha_cumprod: alpha-bar of ``x_t``'s noise level, a float64 scalar or (B,) tensor.
        prediction_type: what the network predicts.

    Returns:
        ``(x0, eps)``, both shaped like ``x_t``.
    """
    check_prediction_type(prediction_type)
    if model_output.shape != x_t.shape:
        raise ValueError(
            f"model output has shape {tuple(model_output.shape)} but the sample has shape {tuple(x_t.shape)}"
        )
    signal = per_sample(alpha_cumprod.sqrt(), x_t)
    noise_scale = per_sample((1 - alpha_cumprod).sqrt(), x_t)
    if prediction_type == "epsilon":
        return (x_t - noise_scale * model_output) / signal, model_output
    if prediction_type == "sample":
        return model_output, (x_t - signal * model_output) / noise_scale
    return signal * x_t - noise_scale * model_output, signal * model_output + noise_scale * x_t  # v_prediction


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """Alpha-bar over the training timesteps ``0 .. T-1``, plus the clean end of the chain.

    Attributes:
        alphas_cumprod: (T,) float64, alpha-bar of each training timestep.
        final_alpha_cumprod: alpha-bar of the level a sampler ends on after timestep 0 (and DDIM inversion starts
            from): 1.0, or ``alphas_cumprod[0]`` for schedulers built with ``set_alpha_to_one=False`` (Stable
            Diffusion's DDIM config).
        prediction_type: what the network predicts.
        scheduler_config: the diffusers scheduler config this view was made from, for ``inference_timesteps``.
    """

    alphas_cumprod: Tensor
    final_alpha_cumprod: float = 1.0
    prediction_type: PredictionType = "epsilon"
    scheduler_config: Any = None

    def __post_init__(self) -> None:
        alphas = self.alphas_cumprod
        if not isinstance(alphas, Tensor) or alphas.ndim != 1 or alphas.numel() == 0:
            raise ValueError("alphas_cumprod must be a non-empty 1-D tensor (one alpha-bar per training timestep)")
        alphas = alphas.detach().to(device="cpu", dtype=torch.float64)
        if not bool(((alphas > 0) & (alphas <= 1)).all()):
            raise ValueError("alphas_cumprod must lie in (0, 1]; zero terminal SNR (alpha-bar 0) is not supported")
        if not 0 < self.final_alpha_cumprod <= 1:
            raise ValueError(f"final_alpha_cumprod must lie in (0, 1]; got {self.final_alpha_cumprod}")
        object.__setattr__(self, "alphas_cumprod", alphas)
        object.__setattr__(self, "prediction_type", check_prediction_type(self.prediction_type))

    @classmethod
    def from_scheduler(cls, scheduler: Any, *, prediction_type: PredictionType | None = None) -> NoiseSchedule:
        """View a diffusers scheduler (``DDPMScheduler``, ``DDIMScheduler``, ...) as a ``NoiseSchedule``.

        Build the scheduler with ``interpedit.backbones.load_scheduler``, ``scheduler_from_config`` or
        ``DDPMScheduler.from_config``.

        Args:
            scheduler: a scheduler with ``alphas_cumprod`` and a ``config``.
            prediction_type: overrides the config's ``prediction_type``.
        """
        if not hasattr(scheduler, "alphas_cumprod") or not hasattr(scheduler, "config"):
            raise TypeError(
                f"{type(scheduler).__name__} has no alphas_cumprod/config; pass a DDPM-family diffusers scheduler"
            )
        final = getattr(scheduler, "final_alpha_cumprod", None)
        if final is None:
            final = getattr(scheduler, "initial_alpha_cumprod", 1.0)  # DDIMInverseScheduler's name for it
        return cls(
            alphas_cumprod=torch.as_tensor(scheduler.alphas_cumprod),
            final_alpha_cumprod=float(final),
            prediction_type=prediction_type or scheduler.config.get("prediction_type", "epsilon"),
            scheduler_config=scheduler.config,
        )

    @property
    def num_train_timesteps(self) -> int:
        """T, the number of training timesteps."""
        return self.alphas_cumprod.shape[0]

    def alpha_cumprod(self, t: Tensor | int) -> Tensor:
        """Alpha-bar at integer timesteps ``t`` (an int, 0-dim or (B,) tensor), float64, shaped like ``t``."""
        t = torch.as_tensor(t)
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"timesteps must be integers; got dtype {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_train_timesteps):
            raise ValueError(
                f"timesteps must lie in [0, {self.num_train_timesteps}); got values from {int(t.min())} to "
                f"{int(t.max())}"
            )
        return self.alphas_cumprod[t.cpu().long()].to(t.device)

    def signal_to_noise_ratio(self, t: Tensor | int) -> Tensor:
        """SNR(t) = a_t / (1 - a_t) (Kingma et al. 2021), float64, shaped like ``t``."""
        alpha = self.alpha_cumprod(t)
        return alpha / (1 - alpha)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """Sample q(x_t | x_0): ``sqrt(a_t) x0 + sqrt(1 - a_t) noise`` (DDPM Eq. 4).

        Args:
            x0: clean samples (B, ...).
            noise: standard normal noise, shaped like ``x0``.
            t: timesteps, an int or (B,).
        """
        _check_same_shape("noise", noise, x0)
        alpha = self.alpha_cumprod(t)
        return per_sample(alpha.sqrt(), x0) * x0 + per_sample((1 - alpha).sqrt(), x0) * noise

    def velocity(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """The v-prediction target ``sqrt(a_t) noise - sqrt(1 - a_t) x0`` (Salimans & Ho 2022, Sec. 4)."""
        _check_same_shape("noise", noise, x0)
        alpha = self.alpha_cumprod(t)
        return per_sample(alpha.sqrt(), x0) * noise - per_sample((1 - alpha).sqrt(), x0) * x0

    def predicted_x0(self, x_t: Tensor, model_output: Tensor, t: Tensor | int) -> Tensor:
        """The clean sample implied by ``model_output`` (this schedule's parameterisation) at timesteps ``t``."""
        return split_model_output(x_t, model_output, self.alpha_cumprod(t), self.prediction_type)[0]

    def predicted_eps(self, x_t: Tensor, model_output: Tensor, t: Tensor | int) -> Tensor:
        """The noise implied by ``model_output`` (this schedule's parameterisation) at timesteps ``t``."""
        return split_model_output(x_t, model_output, self.alpha_cumprod(t), self.prediction_type)[1]

    def model_output_from(self, x0: Tensor, eps: Tensor, t: Tensor | int) -> Tensor:
        """The network output that predicts ``x0`` and ``eps`` at ``t``, in this schedule's parameterisation."""
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "sample":
            return x0
        return self.velocity(x0, eps, t)

    def sample_timesteps(
        self,
        batch_size: int,
        *,
        t_min: int = 0,
        t_max: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training timesteps drawn uniformly from ``[t_min, t_max)``, (B,) int64.

        Args:
            batch_size: how many.
            t_min: smallest timestep.
            t_max: one past the largest; None for T.
            generator: random generator (must live on ``device``).
            device: where the timesteps live.
        """
        t_max = self.num_train_timesteps if t_max is None else t_max
        if not 0 <= t_min < t_max <= self.num_train_timesteps:
            raise ValueError(
                f"need 0 <= t_min < t_max <= {self.num_train_timesteps}; got t_min={t_min}, t_max={t_max}"
            )
        return torch.randint(t_min, t_max, (batch_size,), generator=generator, device=device)

    def inference_timesteps(self, num_inference_steps: int, device: torch.device | str | None = None) -> Tensor:
        """Descending sampling timesteps, as ``DDIMScheduler.set_timesteps`` spaces them for this config.

        Uses the config's ``timestep_spacing`` and ``steps_offset`` (Stable Diffusion: "leading" with offset 1, so
        50 steps give 981, 961, ..., 1).

        Args:
            num_inference_steps: number of sampling steps.
            device: where the timesteps live.
        """
        if self.scheduler_config is None:
            raise ValueError("this NoiseSchedule was not made from a scheduler; build it with from_scheduler")
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(self.scheduler_config)
        scheduler.set_timesteps(num_inference_steps, device=device)
        return scheduler.timesteps.long()


def _check_same_shape(name: str, tensor: Tensor, like: Tensor) -> None:
    if tensor.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)} but the samples have shape {tuple(like.shape)}")
