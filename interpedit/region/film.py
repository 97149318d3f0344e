"""FiLM: feature-wise modulation of region tokens by a condition (here, the region's position embedding)."""

from __future__ import annotations

import torch
from torch import nn


class FiLM(nn.Module):
    """``tokens * (1 + scale(condition)) + shift(condition)``, with ``scale`` and ``shift`` from a small MLP.

    By default the MLP's last layer starts at zero, so at initialisation the output is the unmodulated token: training
    starts from the appearance token and learns how position changes it. Appearance and position stay separate
    inputs, so either can be edited on its own (the original code's ``FilmMlpv3``, with zero-initialised FiLM
    weights, did the same for mask centroids).

    Args:
        token_dim: width of the modulated tokens.
        condition_dim: width of the condition.
        hidden_dim: hidden width of the MLP that predicts scale and shift.
        zero_init: start as the identity (next to a pretrained decoder that must not be disturbed). Off, the last
            layer keeps PyTorch's default initialisation, so positions change the tokens from the first step: a
            decoder trained from scratch then learns to use them early, instead of settling on the positions
            implicit in the appearance tokens.
    """

    def __init__(self, token_dim: int, condition_dim: int, hidden_dim: int = 256, zero_init: bool = True) -> None:
        super().__init__()
        self.modulation = nn.Sequential(
            nn.Linear(condition_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, 2 * token_dim)
        )
        if zero_init:
            nn.init.zeros_(self.modulation[-1].weight)
            nn.init.zeros_(self.modulation[-1].bias)

    def forward(self, tokens: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Modulate.

        Args:
            tokens: (..., token_dim).
            condition: (..., condition_dim), same leading shape.

        Returns:
            (..., token_dim).
        """
        scale, shift = self.modulation(condition).chunk(2, dim=-1)
        return tokens * (1 + scale) + shift
