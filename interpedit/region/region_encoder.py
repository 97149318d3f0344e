"""The region encoder: image and region masks in, one appearance token and one explicit position per region out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from interpedit.region.attention_pooling import RegionAttentionPooling
from interpedit.region.film import FiLM
from interpedit.region.patch_masks import patch_token_masks
from interpedit.region.region_heads import AttributeHeads, RotationHead
from interpedit.region.region_positions import POSITION_DIM, RegionPositionEmbedding, region_positions
from interpedit.region.token_edits import RegionTokenSet
from interpedit.region.vit_features import ViTFeatures


@dataclass
class RegionEncoderOutput:
    """What ``RegionEncoder`` returns (``K`` slots, ``D`` token width).

    Attributes:
        appearance: (B, K, D) position-free appearance tokens; zeros in invalid slots.
        positions: (B, K, 3) ``x, y, size`` per region (see ``region_positions``).
        tokens: (B, K, D) appearance tokens modulated by their positions (``RegionEncoder.condition``); zeros in
            invalid slots.
        valid: (B, K) bool, True where the slot holds a region.
        attribute_logits: ``{attribute: (B, K, classes)}`` from the appearance tokens; empty without heads.
        rotation: (B, K, 2) ``(cos, sin)`` from the appearance tokens, or None without a rotation head.
        silhouettes: (B, K, S, S) region outlines for decoders that paint them (``RegionAutoencoder.encode`` adds
            them when its layout needs them), else None.
    """

    appearance: torch.Tensor
    positions: torch.Tensor
    tokens: torch.Tensor
    valid: torch.Tensor
    attribute_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    rotation: torch.Tensor | None = None
    silhouettes: torch.Tensor | None = None

    def token_set(self) -> RegionTokenSet:
        """The editable part: appearance, positions, validity and silhouettes (``interpedit.region.token_edits``)."""
        return RegionTokenSet(self.appearance, self.positions, self.valid, self.silhouettes)


class RegionEncoder(nn.Module):
    """ViT patch features, attention-pooled per region into appearance tokens, then FiLM'd by explicit positions.

    The appearance token carries no explicit position; position enters only through ``condition``, which modulates
    it with the sinusoidal embedding of the region's centroid and size. Editing a region's position is therefore
    changing three numbers and calling ``condition`` again. (The appearance token is not position-invariant by
    construction: ViT features carry their own position embeddings. Invariance is what a cross-view consistency
    loss on ``appearance`` trains.)

    Args:
        features: the ViT feature extractor.
        token_dim: width of the region tokens.
        pooling_width: width of the attention pooling.
        pooling_depth: attention-pooling blocks.
        pooling_heads: attention heads in the pooling.
        num_queries: learned queries per region.
        mlp_ratio: MLP hidden width over ``pooling_width``.
        position_embedding_dim: width of the sinusoidal position embedding; a multiple of 6.
        max_frequency: highest frequency of the position embedding, in cycles per image side.
        film_hidden_dim: hidden width of the FiLM MLP.
        film_zero_init: start the FiLM as the identity (see ``FiLM``); False for decoders trained from scratch.
        attribute_classes: classes per attribute for classification heads on the appearance tokens
            (``{"shape": 4, "colour": 6, "size": 3}``); None for no heads.
        rotation_head: add a rotation regression head on the appearance tokens.
        head_hidden_dim: hidden width of the heads.
        detach_heads: heads see detached appearance tokens, so they probe the tokens without shaping them.
    """

    def __init__(
        self,
        features: ViTFeatures,
        token_dim: int = 768,
        pooling_width: int = 256,
        pooling_depth: int = 2,
        pooling_heads: int = 4,
        num_queries: int = 1,
        mlp_ratio: float = 4.0,
        position_embedding_dim: int = 96,
        max_frequency: float = 32.0,
        film_hidden_dim: int = 256,
        film_zero_init: bool = True,
        attribute_classes: Mapping[str, int] | None = None,
        rotation_head: bool = False,
        head_hidden_dim: int = 256,
        detach_heads: bool = False,
    ) -> None:
        super().__init__()
        self.features = features
        self.token_dim = token_dim
        self.pooling = RegionAttentionPooling(
            features.feature_dim,
            token_dim,
            width=pooling_width,
            depth=pooling_depth,
            num_heads=pooling_heads,
            num_queries=num_queries,
            mlp_ratio=mlp_ratio,
        )
        self.position_embedding = RegionPositionEmbedding(position_embedding_dim, max_frequency)
        self.film = FiLM(token_dim, position_embedding_dim, film_hidden_dim, zero_init=film_zero_init)
        self.attribute_heads = (
            AttributeHeads(token_dim, attribute_classes, head_hidden_dim) if attribute_classes else None
        )
        self.rotation_head = RotationHead(token_dim, head_hidden_dim) if rotation_head else None
        self.detach_heads = detach_heads

    def condition(
        self, appearance: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Region tokens from appearance tokens and (possibly edited) positions.

        Args:
            appearance: (B, K, D).
            positions: (B, K, 3) ``x, y, size``.
            valid: (B, K) bool; invalid slots give zero tokens. None treats every slot as valid.

        Returns:
            (B, K, D).
        """
        if positions.shape != (*appearance.shape[:-1], POSITION_DIM):
            raise ValueError(
                f"RegionEncoder.condition: positions {tuple(positions.shape)} do not match appearance "
                f"{tuple(appearance.shape)}; expected (B, K, {POSITION_DIM})"
            )
        tokens = self.film(appearance, self.position_embedding(positions))
        if valid is None:
            return tokens
        return torch.where(valid[..., None], tokens, torch.zeros_like(tokens))

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        region_valid: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> RegionEncoderOutput:
        """Encode every region of a batch.

        Args:
            images: (B, 3, H, W) in [0, 1].
            masks: (B, K, H, W) bool; masks of invalid slots are ignored.
            region_valid: (B, K) bool.
            positions: (B, K, 3) positions to condition on instead of the masks' own, e.g. the target view's
                when source and target are augmented differently; None computes them from ``masks``.

        Returns:
            ``RegionEncoderOutput``.

        Raises:
            ValueError: shapes disagree, or a slot marked valid has an empty mask.
        """
        batch, slots = region_valid.shape
        if images.dim() != 4 or masks.shape != (batch, slots, *images.shape[-2:]):
            raise ValueError(
                f"RegionEncoder: masks {tuple(masks.shape)} do not match images {tuple(images.shape)} and "
                f"region_valid {tuple(region_valid.shape)}; expected masks (B, K, H, W) at the images' resolution"
            )
        region_valid = region_valid.bool()
        masks = masks.bool() & region_valid[..., None, None]
        empty_valid = region_valid & ~masks.flatten(2).any(dim=-1)
        if empty_valid.any():
            where = [tuple(index) for index in empty_valid.nonzero().tolist()]
            raise ValueError(f"RegionEncoder: region_valid is True but the mask is empty at (sample, slot) {where}")

        features = self.features(images)
        appearance, _ = self.pooling(features, patch_token_masks(masks, self.features.grid_size))
        if positions is None:
            positions = region_positions(masks)
        elif positions.shape != (batch, slots, POSITION_DIM):
            raise ValueError(
                f"RegionEncoder.positions: expected (B={batch}, K={slots}, {POSITION_DIM}), "
                f"got {tuple(positions.shape)}"
            )
        tokens = self.condition(appearance, positions, region_valid)

        head_input = appearance.detach() if self.detach_heads else appearance
        attribute_logits = self.attribute_heads(head_input) if self.attribute_heads is not None else {}
        rotation = self.rotation_head(head_input) if self.rotation_head is not None else None
        return RegionEncoderOutput(appearance, positions, tokens, region_valid, attribute_logits, rotation)
