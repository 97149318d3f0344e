"""Region tokens: ViT patch features pooled per segment, with explicit positions, conditioning a diffusion UNet.

Three lines from a notebook::

    features = ViTFeatures("dinov2_vitb14_reg", layers=(-1,))
    encoder = RegionEncoder(features, token_dim=768)
    out = encoder(batch["image"], batch["masks"], batch["region_valid"])  # out.appearance, out.positions, out.tokens

Edits act on ``out.token_set()`` (``token_edits``); ``RegionEncoder.condition`` turns an edited set back into
tokens, and ``RegionConditioning`` makes them the UNet's cross-attention sequence.
"""

from interpedit.region.attention_pooling import MaskedCrossAttention, PoolingBlock, RegionAttentionPooling
from interpedit.region.film import FiLM
from interpedit.region.patch_masks import patch_grid_masks, patch_token_masks
from interpedit.region.region_conditioning import RegionConditioning, RegionConditioningOutput
from interpedit.region.region_encoder import RegionEncoder, RegionEncoderOutput
from interpedit.region.region_heads import AttributeHeads, RotationHead
from interpedit.region.region_positions import (
    POSITION_DIM,
    RegionPositionEmbedding,
    region_positions,
    sinusoidal_embedding,
)
from interpedit.region.token_edits import (
    RegionTokenSet,
    interpolate_tokens,
    move_region,
    remove_regions,
    resize_region,
    swap_regions,
    transplant_region,
)
from interpedit.region.vit_features import LAYER_MERGES, TRAINABLE_MODES, ViTFeatures


__all__ = [
    "AttributeHeads",
    "FiLM",
    "LAYER_MERGES",
    "MaskedCrossAttention",
    "POSITION_DIM",
    "PoolingBlock",
    "RegionAttentionPooling",
    "RegionConditioning",
    "RegionConditioningOutput",
    "RegionEncoder",
    "RegionEncoderOutput",
    "RegionPositionEmbedding",
    "RegionTokenSet",
    "RotationHead",
    "TRAINABLE_MODES",
    "ViTFeatures",
    "interpolate_tokens",
    "move_region",
    "patch_grid_masks",
    "patch_token_masks",
    "region_positions",
    "remove_regions",
    "resize_region",
    "sinusoidal_embedding",
    "swap_regions",
    "transplant_region",
]
