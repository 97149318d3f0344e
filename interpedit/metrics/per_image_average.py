"""A torchmetrics ``Metric`` that averages per-image values, skipping the images where a value is undefined.

Every editing metric group (background, structure, CLIP, ground truth) computes one value per image and metric
name in ``update``; this base class keeps, per name, a float64 sum and an integer count of the images where the
value is defined (not NaN). Both states reduce with ``sum``, so they synchronise under DDP and merge with
``merge_state``. ``compute()`` returns ``{name: mean, name + "_count": count}``.

NaN means *undefined for this image* (an empty background, a prompt pair with no direction, an attribute that
does not apply) and is dropped from the mean; ``+inf`` is a value and is kept (PIE-Bench's torchmetrics PSNR of
identical pixels is ``inf``, and so is the mean of a column holding it). A name no image defined has mean NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

COUNT_SUFFIX = "_count"
"""``compute()`` reports how many images each mean is over under ``<group>/<metric>_count``."""


def _state_prefix(name: str) -> str:
    # Metric states are attributes, so "background/psnr" becomes "background__psnr".
    return name.replace("/", "__")


class PerImageAverage(Metric):
    """Base class: NaN-aware means of per-image values, with the latest batch's values kept in ``per_image``.

    Subclasses call ``_accumulate({name: (B,) values})`` from ``update``.

    Args:
        names: the metric names this group reports (``<group>/<metric>``).
        **kwargs: ``torchmetrics.Metric`` options (``sync_on_compute``, ``compute_on_cpu``, ...).

    Attributes:
        per_image: the latest ``update``'s values, ``{name: (B,) float32}`` (NaN where undefined), for per-image
            CSV rows; cleared by ``reset``.
        unavailable: ``{name: reason}`` for metrics this instance cannot compute (e.g. LPIPS without its
            weights); such names never appear in ``compute()`` or ``per_image``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(set(names)) != len(names):
            raise ValueError(f"{type(self).__name__}: metric names must be unique, got {list(names)}")
        self.metric_names: tuple[str, ...] = tuple(names)
        for name in self.metric_names:
            prefix = _state_prefix(name)
            self.add_state(f"{prefix}_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.per_image: dict[str, Tensor] = {}
        self.unavailable: dict[str, str] = {}

    def _accumulate(self, values: Mapping[str, Tensor]) -> None:
        """Add one batch of per-image values ``{name: (B,)}`` to the sums and counts and keep them in ``per_image``."""
        unknown = set(values) - set(self.metric_names)
        if unknown:
            raise KeyError(f"{type(self).__name__}: values for unregistered metrics {sorted(unknown)}")
        for name, value in values.items():
            prefix = _state_prefix(name)
            total = getattr(self, f"{prefix}_sum")
            count = getattr(self, f"{prefix}_count")
            value = value.detach().reshape(-1).to(device=total.device, dtype=torch.float64)
            # nansum skips undefined images and keeps +inf; no boolean indexing, so no device sync.
            setattr(self, f"{prefix}_sum", total + torch.nansum(value))
            setattr(self, f"{prefix}_count", count + (~torch.isnan(value)).sum())
        self.per_image = {name: value.detach().reshape(-1).float() for name, value in values.items()}

    def compute(self) -> dict[str, Tensor]:
        """``{name: mean over the images where defined (NaN if none), name + "_count": that number of images}``."""
        result: dict[str, Tensor] = {}
        for name in self.metric_names:
            prefix = _state_prefix(name)
            total = getattr(self, f"{prefix}_sum")
            count = getattr(self, f"{prefix}_count")
            mean = total / count if int(count) > 0 else torch.full_like(total, float("nan"))
            result[name] = mean.float()
            result[name + COUNT_SUFFIX] = count.clone()
        return result

    def reset(self) -> None:
        """Reset the sums and counts, and forget the latest batch's per-image values."""
        super().reset()
        self.per_image = {}
