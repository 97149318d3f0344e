"""Attention keys of a timm VisionTransformer block, captured with a forward hook.

timm's ``Attention`` computes ``qkv = self.qkv(x)`` and splits its last dimension as (3, heads, head_dim), so the
keys of all heads, concatenated in head order, are the middle third of the ``qkv`` output: exactly what
PIE-Bench's DINO extractor builds from the same layer. The keys are taken before any ``k_norm`` (DINO has none)
and cover every token: CLS, register tokens if the model has them, and patches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn


def _qkv_layer(vit: nn.Module, block_index: int) -> nn.Module:
    blocks = getattr(vit, "blocks", None)
    if blocks is None or not isinstance(blocks, (nn.Sequential, nn.ModuleList)):
        raise TypeError(f"{type(vit).__name__} has no `blocks`: expected a timm VisionTransformer")
    if not -len(blocks) <= block_index < len(blocks):
        raise IndexError(f"block_index {block_index} is out of range for a ViT with {len(blocks)} blocks")
    qkv = getattr(getattr(blocks[block_index], "attn", None), "qkv", None)
    if not isinstance(qkv, nn.Module):
        raise TypeError(
            f"block {block_index} of {type(vit).__name__} has no `attn.qkv` layer (fused q/k/v projection), so its "
            "keys cannot be captured"
        )
    return qkv


@contextmanager
def capture_keys(vit: nn.Module, block_index: int = -1) -> Iterator[list[Tensor]]:
    """Record the keys of one block during forward passes; the hook is removed on exit, also after an error.

    Args:
        vit: a timm ``VisionTransformer`` (``blocks[i].attn.qkv``).
        block_index: the block, -1 for the last (PIE-Bench: block 11 of DINO ViT-B/8, its last).

    Yields:
        A list that receives one (B, T, D) key tensor per forward pass.
    """
    captured: list[Tensor] = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        width = output.shape[-1]
        if width % 3:
            raise ValueError(f"qkv output width {width} is not divisible by 3")
        captured.append(output[..., width // 3 : 2 * width // 3])

    handle = _qkv_layer(vit, block_index).register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def vit_keys(vit: nn.Module, pixel_values: Tensor, block_index: int = -1) -> Tensor:
    """Keys of one block for preprocessed images: (B, 3, H, W) -> (B, T, D), heads concatenated."""
    with capture_keys(vit, block_index) as captured:
        vit.forward_features(pixel_values)
    if len(captured) != 1:
        raise RuntimeError(f"expected one pass through block {block_index}, the hook saw {len(captured)}")
    return captured[0]


def key_self_similarity(keys: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine self-similarity of tokens' keys, as PIE-Bench computes it: (B, T, D) -> (B, T, T).

    ``(k_i . k_j) / max(|k_i| |k_j|, eps)``.
    """
    norms = keys.norm(dim=-1, keepdim=True)
    factor = (norms @ norms.transpose(1, 2)).clamp(min=eps)
    return (keys @ keys.transpose(1, 2)) / factor
