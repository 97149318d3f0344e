"""A gradient for the size choice: the score-function (REINFORCE) estimator with a leave-one-out baseline.

The inpainting and the CLIP rewards are not differentiable in the discrete box, so AnchorNet learns from sampled
sizes: for K sizes drawn per anchor with rewards r_1..r_K, the advantage of draw k is r_k minus the mean of the
other K - 1 rewards (Kool et al., 2019, "Buy 4 REINFORCE samples, get a baseline for free"), an unbiased estimate
whose baseline costs no extra inpainting. The surrogate loss ``-mean(A_k log p(size_k))`` has the estimator as its
gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor


def leave_one_out_advantages(rewards: Tensor) -> Tensor:
    """(N, K) rewards of K draws per row -> (N, K) advantages ``r_k - mean_{j != k} r_j`` (needs K >= 2)."""
    draws = rewards.shape[-1]
    if draws < 2:
        raise ValueError("a leave-one-out baseline needs at least 2 draws per anchor")
    total = rewards.sum(dim=-1, keepdim=True)
    return rewards - (total - rewards) / (draws - 1)


def reinforce_loss(log_probs: Tensor, rewards: Tensor) -> Tensor:
    """The surrogate loss whose gradient is the leave-one-out REINFORCE estimate of ``-grad E[reward]``.

    Args:
        log_probs: (N, K) log-probabilities of the drawn sizes (with grad).
        rewards: (N, K) rewards of those draws (no grad needed; detached here).
    """
    advantages = leave_one_out_advantages(rewards.detach().float())
    return -(advantages * log_probs).mean()


def draw_sizes(logits: Tensor, draws: int, generator: torch.Generator | None = None) -> Tensor:
    """(N, S) logits -> (N, K) size indices, K independent draws per row (with replacement)."""
    probabilities = logits.detach().float().softmax(dim=-1).cpu()
    return torch.multinomial(probabilities, draws, replacement=True, generator=generator).to(logits.device)
