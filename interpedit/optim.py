"""Optimiser helpers shared by the training systems."""

from __future__ import annotations

import math

import torch
from torch import nn


def split_weight_decay(model: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups with weight decay on matrices only.

    Biases, normalisation gains, embeddings' scalars and temperatures (every parameter with fewer than two
    dimensions) are not decayed, as in CLIP and most transformer recipes.
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_schedule_with_warmup(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, final_fraction: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base learning rate, then cosine decay to ``final_fraction`` of it."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
