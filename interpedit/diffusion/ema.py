"""Exponential moving average of a module's trainable parameters, with a swap-in context for evaluation.

``EMA`` is an ``nn.Module`` holding the averages as buffers, so a LightningModule that owns it as a submodule
moves it between devices and saves it in its checkpoint. The averaged module itself is kept out of the module tree
(it is neither saved nor moved twice). Only the parameters that require grad when the EMA is built are averaged;
frozen parts (a VAE, a text encoder) cost nothing.

Three lines from a notebook::

    ema = EMA(unet, decay=0.999, warmup=9)
    ema.update()                      # after each optimiser step
    with ema.swapped_in(): sample()   # evaluate with the averaged weights; originals come back, even on error
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


class EMA(nn.Module):
    """Exponential moving average ``shadow <- d * shadow + (1 - d) * parameter`` of a module's parameters.

    The decay at the n-th update (n = 1, 2, ...) is ``min(decay, (1 + n) / (1 + n + warmup))``, TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)`` rule: early averages forget their random initialisation quickly.
    latent-diffusion's ``LitEma`` is ``warmup=9``; ``warmup=0`` uses ``decay`` from the first update.

    Args:
        model: the module whose parameters are averaged.
        decay: the decay once warmed up, in [0, 1].
        warmup: how slowly the decay rises to ``decay``; 0 for no warmup.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: int = 0) -> None:
        super().__init__()
        if not 0 <= decay <= 1:
            raise ValueError(f"decay must lie in [0, 1]; got {decay}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0; got {warmup}")
        self.decay = decay
        self.warmup = warmup
        # Kept out of the module tree so that the averaged weights are not saved, moved or counted twice.
        self.__dict__["model"] = model
        self._buffer_names: dict[str, str] = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            # Buffer names cannot contain dots.
            buffer_name = "shadow__" + name.replace(".", "__")
            if buffer_name in self._buffers:
                raise ValueError(f"parameters {name!r} and another one map to the same EMA buffer {buffer_name!r}")
            self.register_buffer(buffer_name, parameter.detach().clone())
            self._buffer_names[name] = buffer_name
        if not self._buffer_names:
            raise ValueError(f"{type(model).__name__} has no parameters that require grad: nothing to average")
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def _tracked(self) -> Iterator[tuple[nn.Parameter, Tensor]]:
        """(parameter, its average) pairs, in the model's parameter order."""
        parameters = dict(self.model.named_parameters())
        for name, buffer_name in self._buffer_names.items():
            if name not in parameters:
                raise RuntimeError(f"the averaged module no longer has parameter {name!r}")
            yield parameters[name], self._buffers[buffer_name]

    def current_decay(self) -> float:
        """The decay the next ``update()`` will use."""
        n = int(self.num_updates) + 1
        return min(self.decay, (1 + n) / (1 + n + self.warmup))

    @torch.no_grad()
    def update(self) -> None:
        """Move every average towards the current parameters (call after each optimiser step)."""
        decay = self.current_decay()
        for parameter, shadow in self._tracked():
            shadow.lerp_(parameter.detach().to(shadow.dtype), 1 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module | None = None) -> None:
        """Overwrite the parameters of ``model`` (default: the averaged module) with the averages, for export."""
        model = self.model if model is None else model
        target = dict(model.named_parameters())
        for name, buffer_name in self._buffer_names.items():
            if name not in target:
                raise ValueError(f"{type(model).__name__} has no parameter {name!r} to copy the average into")
            target[name].copy_(self._buffers[buffer_name])

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[nn.Module]:
        """Use the averaged weights inside the block; the training weights come back on exit, also on error.

        Yields:
            The averaged module, now holding the EMA weights.
        """
        pairs = list(self._tracked())
        with torch.no_grad():
            originals = [parameter.detach().clone() for parameter, _ in pairs]
        try:
            with torch.no_grad():
                for parameter, shadow in pairs:
                    parameter.copy_(shadow)
            yield self.model
        finally:
            with torch.no_grad():
                for (parameter, _), original in zip(pairs, originals):
                    parameter.copy_(original)

    def extra_repr(self) -> str:
        return f"decay={self.decay}, warmup={self.warmup}, parameters={len(self._buffer_names)}"
