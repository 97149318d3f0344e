"""The frozen self-supervised ViT of Learnable Regions: its feature map and its CLS attention, from one pass.

On photographs it is DINO ViT-B/8 at 256 px (a 32x32 grid), with ImageNet normalisation (the released code feeds
DINO unnormalised [0, 1] pixels). In the shapes world it is the vision tower of the committed shapes CLIP, with its
own normalisation, run at the scene's resolution (``image_size``; timm resamples its position embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interpedit.learnable_regions.anchors import capture_qkv, cls_attention_from_qkv, patch_grid

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHAPES_CLIP_MEAN = (0.5, 0.5, 0.5)
SHAPES_CLIP_STD = (0.5, 0.5, 0.5)


def load_anchor_vit(source: str | nn.Module) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """``(vit, mean, std)`` from a timm name or folder (``dino_vitb8``), a saved ShapesCLIP folder (its tower), or a
    module (with its ``pretrained_cfg`` statistics, else ImageNet's)."""
    if isinstance(source, nn.Module):
        cfg = getattr(source, "pretrained_cfg", None) or {}
        return source, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    from interpedit.clip.shapes_clip import ShapesCLIP, is_shapes_clip_folder

    if is_shapes_clip_folder(source):
        return ShapesCLIP.load(source).vision_model, SHAPES_CLIP_MEAN, SHAPES_CLIP_STD
    from interpedit.backbones import load_timm_vit

    vit = load_timm_vit(source)
    cfg = getattr(vit, "pretrained_cfg", None) or {}
    return vit, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


class AnchorBackbone(nn.Module):
    """A frozen timm ViT: ``forward(images) -> (features (B, D, rows, cols), attention (B, rows, cols))``.

    Args:
        vit: a timm name or folder, a saved ShapesCLIP folder, or a module.
        image_size: the input side the images are resized to (DINO: 256); None keeps the ViT's own.
        mean, std: override the normalisation.
    """

    def __init__(self, vit: str | nn.Module, image_size: int | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        model, default_mean, default_std = load_anchor_vit(vit)
        if image_size is not None:
            model.set_input_size(img_size=image_size)
        self.vit = model.eval().requires_grad_(False)
        self.image_size = tuple(model.patch_embed.img_size)
        self.register_buffer("mean", torch.tensor(mean or default_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or default_std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> AnchorBackbone:
        super().train(mode)
        self.vit.eval()
        return self

    @property
    def grid(self) -> tuple[int, int]:
        return patch_grid(self.vit, *self.image_size)

    @property
    def width(self) -> int:
        return int(self.vit.embed_dim)

    def pixel_values(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> the ViT's normalised input at ``image_size``."""
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(images.float(), size=self.image_size, mode="bicubic", align_corners=False,
                                   antialias=True).clamp(0, 1)
        dtype = self.vit.patch_embed.proj.weight.dtype
        return ((images - self.mean) / self.std).to(dtype)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        vit = self.vit
        attention_module = vit.blocks[-1].attn
        with capture_qkv(vit) as captured:
            tokens = vit.forward_features(self.pixel_values(images))  # final LayerNorm applied
        prefix = int(vit.num_prefix_tokens)
        rows, cols = self.grid
        attention = cls_attention_from_qkv(attention_module, captured[0], prefix, (rows, cols))
        features = tokens[:, prefix:].transpose(1, 2).reshape(tokens.shape[0], -1, rows, cols).float()
        return features, attention
