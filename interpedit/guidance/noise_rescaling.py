"""Noise rescaling of Guide-and-Rescale: keep the guiders' term at a norm comparable with the CFG term's.

``RangeRescaler(lower, upper)`` (the reference's ``range_other_on_cfg_norm``): with ``r = ||guider term|| /
||cfg term||`` (L2 norms of each image's latent, the CFG term already multiplied by its scale), each image's
guider term is multiplied by ``clip(r, lower, upper) / r``, so its norm lands in ``[lower, upper] * ||cfg term||``.
The reference edits one image at a time; taking the norms per image keeps every image of a batch edited as it
would be alone. A zero guider term is left alone; a zero CFG term counts as r = 1. ``IdentityRescaler`` leaves the
term as it is.

Both return the factors as a (B, 1, ..., 1) tensor that broadcasts against the guider term.
"""

from __future__ import annotations

import torch
from torch import Tensor


class IdentityRescaler:
    """No rescaling (ablations)."""

    def __call__(self, guider_term: Tensor, cfg_term: Tensor) -> Tensor:
        return guider_term.new_ones((guider_term.shape[0],) + (1,) * (guider_term.dim() - 1))


class RangeRescaler:
    """Clip the guider term's norm into ``[lower, upper]`` times the CFG term's norm (module docstring)."""

    def __init__(self, lower: float = 0.33, upper: float = 3.0) -> None:
        if not 0 < lower <= upper:
            raise ValueError(f"RangeRescaler: need 0 < lower <= upper, got [{lower}, {upper}]")
        self.lower, self.upper = float(lower), float(upper)

    def __call__(self, guider_term: Tensor, cfg_term: Tensor) -> Tensor:
        guider_norm = image_norms(guider_term)
        cfg_norm = image_norms(cfg_term)
        ratio = torch.where(cfg_norm > 0, guider_norm / cfg_norm.clamp_min(torch.finfo(cfg_norm.dtype).tiny),
                            torch.ones_like(guider_norm))
        factor = torch.where(guider_norm > 0, ratio.clamp(self.lower, self.upper) / ratio.clamp_min(1e-30),
                             torch.ones_like(ratio))
        return factor.to(guider_term.dtype).view((-1,) + (1,) * (guider_term.dim() - 1))


def image_norms(term: Tensor) -> Tensor:
    """The L2 norm of each image's entry of a (B, ...) term, in float32: shape (B,)."""
    return torch.linalg.vector_norm(term.float().flatten(1), dim=1)
