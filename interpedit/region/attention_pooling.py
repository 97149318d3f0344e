"""Attention pooling of each region's patch features into one region token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedCrossAttention(nn.Module):
    """Multi-head cross-attention of queries over keys, where a boolean mask says which keys each query may see.

    Args:
        dim: query width (also the width of the projected keys and values).
        key_dim: width of the key/value inputs.
        num_heads: attention heads; must divide ``dim``.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MaskedCrossAttention: width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(key_dim, dim)
        self.to_v = nn.Linear(key_dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """Attend.

        Args:
            queries: (B, M, dim).
            keys: (B, N, key_dim), used as values too.
            attend: (B, M, N) bool, True where query ``m`` may attend to key ``n``; every row needs a True.

        Returns:
            (B, M, dim).
        """
        batch = queries.shape[0]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

        q, k, v = heads(self.to_q(queries)), heads(self.to_k(keys)), heads(self.to_v(keys))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend[:, None])
        return self.to_out(out.transpose(1, 2).reshape(batch, -1, q.shape[1] * q.shape[-1]))


class PoolingBlock(nn.Module):
    """Pre-norm block: queries cross-attend over the patch features, then an MLP, each with a residual.

    There is no self-attention between queries: a region's token must depend only on its own patches.

    Args:
        dim: query width.
        key_dim: width of the (normalised) patch features.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over ``dim``.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = MaskedCrossAttention(dim, key_dim, num_heads)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """(B, M, dim) queries, (B, N, key_dim) keys, (B, M, N) bool mask -> (B, M, dim)."""
        queries = queries + self.attention(self.norm_attention(queries), keys, attend)
        return queries + self.mlp(self.norm_mlp(queries))


class RegionAttentionPooling(nn.Module):
    """Learned queries cross-attend over each region's patches; their outputs form the region token.

    All regions of a batch are pooled at once: the K regions' queries are stacked into one sequence and a boolean
    attention mask (B, K * Q, N) lets each query see only its own region's patches. This replaces the original
    code's packed variable-length flash attention with a padded mask, so it runs with any SDPA backend.

    The patch features are projected to the pooling width and layer-normalised once (keys and values of every
    block), as in the original recipe. The ``Q`` query outputs of a region are concatenated and projected to the
    token width.

    Args:
        feature_dim: width of the patch features.
        token_dim: width of the region tokens.
        width: pooling width.
        depth: pooling blocks.
        num_heads: attention heads per block.
        num_queries: learned queries per region.
        mlp_ratio: MLP hidden width over ``width``.
    """

    def __init__(
        self,
        feature_dim: int,
        token_dim: int,
        width: int = 256,
        depth: int = 2,
        num_heads: int = 4,
        num_queries: int = 1,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if depth < 1 or num_queries < 1:
            raise ValueError(
                f"RegionAttentionPooling: depth ({depth}) and num_queries ({num_queries}) must be at least 1"
            )
        self.num_queries = num_queries
        self.feature_projection = nn.Sequential(nn.Linear(feature_dim, width), nn.LayerNorm(width))
        self.queries = nn.Parameter(torch.randn(num_queries, width) * width**-0.5)
        self.blocks = nn.ModuleList(PoolingBlock(width, width, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.output_projection = nn.Linear(num_queries * width, token_dim)

    def forward(self, features: torch.Tensor, patch_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool every region.

        Args:
            features: (B, N, feature_dim) patch features.
            patch_masks: (B, K, N) bool, True where patch ``n`` belongs to region ``k``.

        Returns:
            ``(tokens, valid)``: (B, K, token_dim) region tokens and (B, K) bool, False for regions without a patch,
            whose tokens are zeros (and pass no gradient).
        """
        batch, slots, num_patches = patch_masks.shape
        if features.shape[:2] != (batch, num_patches):
            raise ValueError(
                f"RegionAttentionPooling: features {tuple(features.shape)} do not match patch masks "
                f"{tuple(patch_masks.shape)} (expected features (B={batch}, N={num_patches}, D))"
            )
        valid = patch_masks.any(dim=-1)
        # An all-False mask row makes softmax return NaN; empty regions see every patch and are zeroed below.
        attend = patch_masks | ~valid[..., None]
        attend = attend.repeat_interleave(self.num_queries, dim=1)  # (B, K * Q, N), query-major within a region
        keys = self.feature_projection(features)
        queries = self.queries.to(keys.dtype).repeat(slots, 1).expand(batch, -1, -1)
        for block in self.blocks:
            queries = block(queries, keys, attend)
        pooled = self.norm(queries).reshape(batch, slots, -1)  # (B, K, Q * width)
        tokens = self.output_projection(pooled)
        return torch.where(valid[..., None], tokens, torch.zeros_like(tokens)), valid
