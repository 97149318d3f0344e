"""Supervised directions: the difference of mean h between labelled groups, and the same made independent of other
attributes by projection (InterfaceGAN's conditional manipulation, as Haas et al. apply it in h-space).

Samples are ranked by an attribute score (a classifier's probability on generated samples, or labels of real
images that were inverted); the direction is ``mean(h | top-k) - mean(h | bottom-k)`` over the whole trajectory,
shape (T, *h), unnormalised, so its scale unit is "one group-mean difference". ``project_away`` removes the span of
other attributes' directions, flattened over all steps: ``n - N^T (N N^T)^{-1} N n``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def mean_difference(hs: Tensor, scores: Tensor, k: int | None = None) -> Tensor:
    """``mean(h of the top-k scores) - mean(h of the bottom-k)``.

    Args:
        hs: (T, N, *h) h of N trajectories.
        scores: (N,) attribute scores (or 0/1 labels).
        k: group size; None splits at the median (``N // 2`` each).
    """
    count = hs.shape[1]
    if scores.shape != (count,):
        raise ValueError(f"scores of shape {tuple(scores.shape)} for {count} trajectories")
    k = count // 2 if k is None else k
    if not 1 <= k <= count // 2:
        raise ValueError(f"k must be in 1..{count // 2} for {count} trajectories, got {k}")
    order = scores.float().argsort(descending=True)
    top, bottom = order[:k].to(hs.device), order[-k:].to(hs.device)
    return hs[:, top].float().mean(1) - hs[:, bottom].float().mean(1)


def group_difference(hs: Tensor, labels: Tensor, positive: int, negative: int) -> Tensor:
    """``mean(h | label == positive) - mean(h | label == negative)`` for class labels (N,): (T, N, *h) -> (T, *h)."""
    pos, neg = labels == positive, labels == negative
    if not bool(pos.any()) or not bool(neg.any()):
        raise ValueError(f"no trajectory labelled {positive if not bool(pos.any()) else negative}")
    return hs[:, pos.to(hs.device)].float().mean(1) - hs[:, neg.to(hs.device)].float().mean(1)


def project_away(direction: Tensor, others: Sequence[Tensor]) -> Tensor:
    """``direction`` with the span of ``others`` removed (all flattened over steps and h), same shape."""
    if not others:
        return direction
    basis = torch.stack([other.reshape(-1).double() for other in others])  # (c, D)
    flat = direction.reshape(-1).double()
    coefficients = torch.linalg.solve(basis @ basis.T, basis @ flat)
    return (flat - basis.T @ coefficients).to(direction.dtype).reshape(direction.shape)


def explained_variance(sums: Tensor, counts: Tensor, squares: Tensor) -> tuple[Tensor, float]:
    """How much of h's variance an attribute's classes explain, per step, from streamed statistics.

    With N labelled samples, class means mu_c of n_c samples and the overall mean mu, this is the between-class sum
    of squares ``sum_c n_c ||mu_c - mu||^2`` over the total ``sum_i ||h_i - mu||^2`` (eta squared). If h carried
    nothing of the attribute, it would be about the chance level ``(C - 1) / (N - 1)`` of C classes (its
    expectation under random labels); near 1, the class means alone account for h.

    Args:
        sums: (C, T, *h) per-class sums of h.
        counts: (C,) samples per class.
        squares: (T,) sums of ||h||^2 over the labelled samples, per step.

    Returns:
        ((T,) ratios, chance level).
    """
    present = counts > 0
    total = int(counts.sum())
    if total < 2 or int(present.sum()) < 2:
        raise ValueError(f"explained_variance needs two labelled classes and two samples, got counts {counts.tolist()}")
    sums = sums[present].double().flatten(2)  # (C, T, D)
    n = counts[present].double()
    overall = sums.sum(0) / total  # (T, D)
    means = sums / n.view(-1, 1, 1)
    between = (n.view(-1, 1) * ((means - overall) ** 2).sum(-1)).sum(0)  # (T,)
    within_total = squares.double() - total * (overall ** 2).sum(-1)
    ratio = between / within_total.clamp_min(torch.finfo(torch.float64).tiny)
    return ratio.float(), (int(present.sum()) - 1) / (total - 1)
