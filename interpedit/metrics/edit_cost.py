"""What each edit cost: UNet samples forward and backward, and seconds (``cost/unet_forwards|unet_backwards|seconds``).

``eval.py`` counts them around every call of a method (``interpedit.diffusion.unet_cost.count_unet_calls``) and
gives each image of the batch an equal share of the batch's totals: exact when a method treats the images of a
batch alike (batched sampling), an average otherwise. Methods without a UNet cost 0 forwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from interpedit.diffusion.unet_cost import COST_KEYS, UNetCost
from interpedit.metrics.per_image_average import PerImageAverage


def per_image_cost(cost: UNetCost, batch_size: int) -> dict[str, Tensor]:
    """``{cost key: (B,) float32}``: the batch's totals shared equally among its ``batch_size`` images."""
    totals = {"cost/unet_forwards": cost.forwards, "cost/unet_backwards": cost.backwards, "cost/seconds": cost.seconds}
    return {key: torch.full((batch_size,), float(value) / batch_size) for key, value in totals.items()}


class EditCost(PerImageAverage):
    """Mean cost per image over a run; per-image values for the CSV."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(COST_KEYS, **kwargs)

    @torch.no_grad()
    def update(self, cost: Mapping[str, Tensor]) -> None:
        """Add a batch's ``{cost key: (B,)}`` (from ``per_image_cost``)."""
        missing = set(COST_KEYS) - set(cost)
        if missing:
            raise KeyError(f"EditCost.update: missing {sorted(missing)}")
        self._accumulate({key: cost[key] for key in COST_KEYS})
