"""The final choice among candidate edits: the paper's Eq. 7, ``S = alpha * S_t2i + beta * S_i2i``.

``S_t2i`` is the softmax over the candidates of their CLIP cosine with the edit prompt, ``S_i2i`` the softmax of
their cosine with the source image (``alpha`` 2, ``beta`` 1 as released). The released code also keeps only
candidates among the ``top_k`` (3) by ``S_t2i`` alone; ``top_k=None`` drops that restriction. The softmax is over
raw cosines, as released; ``temperature`` scales them first (1 keeps the released behaviour).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rank_candidates(candidates: Tensor, source: Tensor, text: Tensor, alpha: float = 2.0, beta: float = 1.0,
                    top_k: int | None = 3, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Scores and the chosen index per image.

    Args:
        candidates: (B, K, D) normalised CLIP embeddings of the candidates.
        source: (B, D) normalised embedding of the source image.
        text: (B, D) normalised embedding of the edit prompt.

    Returns:
        ``(scores (B, K), chosen (B,) long)``; candidates outside the t2i top-k score ``-inf``.
    """
    t2i = ((candidates * text[:, None]).sum(-1) / temperature).softmax(dim=-1)
    i2i = ((candidates * source[:, None]).sum(-1) / temperature).softmax(dim=-1)
    scores = alpha * t2i + beta * i2i
    if top_k is not None and top_k < candidates.shape[1]:
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        allowed.scatter_(1, t2i.topk(top_k, dim=1).indices, True)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores, scores.argmax(dim=1)
