"""Noise rescaling of Guide-and-Rescale: keep the guiders' term at a norm comparable with the CFG term's.

``RangeRescaler(lower, upper)`` (the reference's ``range_other_on_cfg_norm``): with ``r = ||guider term|| /
||cfg term||`` (global L2 norms over the whole latent batch, the CFG term already multiplied by its scale), the
guider term is multiplied by ``clip(r, lower, upper) / r``, so its norm lands in ``[lower, upper] * ||cfg term||``.
A zero guider term is left alone; a zero CFG term counts as r = 1. ``IdentityRescaler`` leaves the term as it is.
"""

from __future__ import annotations

import torch
from torch import Tensor


class IdentityRescaler:
    """No rescaling (ablations)."""

    def __call__(self, guider_term: Tensor, cfg_term: Tensor) -> float:
        return 1.0


class RangeRescaler:
    """Clip the guider term's norm into ``[lower, upper]`` times the CFG term's norm (module docstring)."""

    def __init__(self, lower: float = 0.33, upper: float = 3.0) -> None:
        if not 0 < lower <= upper:
            raise ValueError(f"RangeRescaler: need 0 < lower <= upper, got [{lower}, {upper}]")
        self.lower, self.upper = float(lower), float(upper)

    def __call__(self, guider_term: Tensor, cfg_term: Tensor) -> float:
        guider_norm = float(torch.linalg.vector_norm(guider_term.float()))
        cfg_norm = float(torch.linalg.vector_norm(cfg_term.float()))
        if guider_norm == 0.0:
            return 1.0
        ratio = guider_norm / cfg_norm if cfg_norm > 0 else 1.0
        return min(max(ratio, self.lower), self.upper) / ratio
