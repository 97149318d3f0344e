"""Small prediction heads on region tokens: attribute/class logits and rotation, for probes and auxiliary losses."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from interpedit.user_errors import OptionError


def _head(token_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(token_dim), nn.Linear(token_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)
    )


class AttributeHeads(nn.Module):
    """One classifier per attribute (shapes world: ``shape``, ``colour``, ``size``; COCO: 133 panoptic classes).

    Args:
        token_dim: width of the region tokens.
        class_counts: classes per attribute name, e.g. ``{"shape": 4, "colour": 6, "size": 3}``.
        hidden_dim: hidden width of each head's MLP.
    """

    def __init__(self, token_dim: int, class_counts: Mapping[str, int], hidden_dim: int = 256) -> None:
        super().__init__()
        if not class_counts:
            raise ValueError("AttributeHeads.class_counts: give at least one attribute")
        for name, count in class_counts.items():
            if count < 2:
                raise OptionError(f"AttributeHeads.class_counts: {name!r} has {count} classes; a classifier needs 2+")
        self.heads = nn.ModuleDict({name: _head(token_dim, hidden_dim, count) for name, count in class_counts.items()})

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, K, token_dim) tokens -> ``{attribute: (B, K, classes) logits}``."""
        return {name: head(tokens) for name, head in self.heads.items()}


class RotationHead(nn.Module):
    """Regresses a region's in-plane rotation as the unit vector ``(cos theta, sin theta)``.

    A vector rather than an angle, so that the loss has no jump at +-pi. Shapes with a k-fold symmetry have k
    correct answers; train on ``k * theta`` for them (the target is the caller's choice).

    Args:
        token_dim: width of the region tokens.
        hidden_dim: hidden width of the MLP.
    """

    def __init__(self, token_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.head = _head(token_dim, hidden_dim, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, K, token_dim) tokens -> (B, K, 2) unit vectors ``(cos, sin)``."""
        return nn.functional.normalize(self.head(tokens), dim=-1, eps=1e-6)

    @staticmethod
    def angles(vectors: torch.Tensor) -> torch.Tensor:
        """(..., 2) ``(cos, sin)`` vectors -> (...) angles in radians, in (-pi, pi]."""
        return torch.atan2(vectors[..., 1], vectors[..., 0])
