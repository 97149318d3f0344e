"""h-space: the UNet bottleneck, read and offset through ``interpedit.diffusion.unet_hooks``.

Three places, as in Haas et al.'s code (and Asyrp's "middle_h" for ``after``):

- ``before``: the mid block's input (the last down block's output);
- ``middle``: inside the mid block's second ResNet, right after its ``norm2`` (time embedding added, before the
  SiLU and ``conv2``);
- ``after`` (the default): the mid block's output.

``HSpace`` turns a UNet into the diffusion core's ``denoise(x, t)`` for unconditional sampling: a ``UNet2DModel``
as it is, or a ``UNet2DConditionModel`` with the empty prompt's embeddings (the unconditional branch of a model
trained with caption dropout is an unconditional diffusion model). Both work in pixel and in latent space; the
sampler does not care which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from interpedit.diffusion.unet_hooks import find_module, module_hooks
from interpedit.user_errors import OptionError

H_SPACE_PLACES: dict[str, tuple[str, str]] = {
    "before": ("mid_block", "input"),
    "middle": ("mid_block.resnets.1.norm2", "output"),
    "after": ("mid_block", "output"),
}
"""``place -> (module name, hook place)``."""


class HSpace:
    """A UNet as an unconditional denoiser whose h can be recorded and offset.

    Args:
        unet: a ``UNet2DModel``, or a ``UNet2DConditionModel`` with ``encoder_hidden_states``.
        place: ``before``, ``middle`` or ``after``.
        encoder_hidden_states: (1, L, D) embeddings of the empty prompt for a conditional UNet (broadcast over the
            batch); None for a ``UNet2DModel``.
    """

    def __init__(self, unet: nn.Module, place: str = "after", encoder_hidden_states: Tensor | None = None) -> None:
        if place not in H_SPACE_PLACES:
            raise OptionError(f"HSpace.place: {place!r} is not one of {', '.join(H_SPACE_PLACES)}")
        self.unet = unet
        self.place = place
        self.module_name, self.hook_place = H_SPACE_PLACES[place]
        find_module(unet, self.module_name)  # fail now, naming the module, if this UNet has none there
        self.encoder_hidden_states = encoder_hidden_states
        self.conditional = encoder_hidden_states is not None
        self._offset: Callable[[Tensor], Tensor | None] | None = None
        self._record: list[Tensor] | None = None

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """``denoise(x, t)``: the UNet's output, with the current offset and recording applied."""
        kwargs: dict[str, Any] = {}
        if self.conditional:
            states = self.encoder_hidden_states.to(device=x.device, dtype=x.dtype)
            kwargs["encoder_hidden_states"] = states.expand(x.shape[0], *states.shape[1:])

        def at_h(h: Tensor) -> Tensor | None:
            if self._record is not None:
                self._record.append(h.detach())
            delta = self._offset(h) if self._offset is not None else None
            return None if delta is None else h + delta

        with module_hooks(self.unet, {self.module_name: at_h}, self.hook_place):
            return self.unet(x, t, **kwargs).sample

    @contextmanager
    def recording(self) -> Iterator[list[Tensor]]:
        """Collect h (before any offset) of every call inside the context."""
        previous, self._record = self._record, []
        try:
            yield self._record
        finally:
            self._record = previous

    @contextmanager
    def offset(self, delta: Callable[[Tensor], Tensor | None]) -> Iterator[None]:
        """Add ``delta(h)`` (a tensor broadcast over h, or None for none) to h in every call inside the context."""
        previous, self._offset = self._offset, delta
        try:
            yield
        finally:
            self._offset = previous

    def h_shape(self, x: Tensor, t: int = 500) -> tuple[int, ...]:
        """The shape of h for one sample shaped like ``x[0]``."""
        with torch.no_grad(), self.recording() as hs:
            self(x[:1], torch.full((1,), t, dtype=torch.long, device=x.device))
        return tuple(hs[0].shape[1:])
