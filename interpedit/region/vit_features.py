"""Patch features of a timm ViT (DINO, DINOv2, or a tiny one for the shapes world), ready for region pooling."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from interpedit.backbones import load_timm_vit
from interpedit.user_errors import OptionError


TrainableMode = Literal["frozen", "last_n", "lora", "full"]
LayerMerge = Literal["concat", "mean"]

TRAINABLE_MODES: tuple[str, ...] = ("frozen", "last_n", "lora", "full")
LAYER_MERGES: tuple[str, ...] = ("concat", "mean")


class ViTFeatures(nn.Module):
    """Patch features (B, N, D) from one or several blocks of a timm VisionTransformer.

    Images in [0, 1] are resized to the ViT input size (bilinear, antialiased) and normalised with the model's
    ``pretrained_cfg`` mean and std. The class token and register tokens (``num_prefix_tokens``) are dropped, so
    token ``n`` is patch ``(n // w, n % w)`` of the ``(h, w)`` grid. Several blocks are either concatenated along
    channels (the final region autoencoder read DINOv2 blocks 0/11/17/23 that way) or averaged.

    The ViT is cut after the deepest block read (timm's ``prune_intermediate_layers``; the classifier head goes
    too, and the final norm when it is not applied), so unread blocks cost nothing and DDP sees no parameter
    without a gradient. A model passed in is modified in place.

    Args:
        model: a timm ViT, or a name/path for ``interpedit.backbones.load_timm_vit`` (``dinov2_vitb14_reg``,
            ``vit_base_patch8_224.dino``, a local folder).
        pretrained: load pretrained weights when ``model`` is a name or path.
        model_kwargs: ``timm.create_model`` arguments when ``model`` is a name or path (``img_size``,
            ``dynamic_img_size``).
        layers: blocks whose outputs are read; negative indices count from the last block.
        layer_merge: ``concat`` (width ``len(layers) * D``) or ``mean`` (width ``D``) over the blocks read.
        final_norm: apply the ViT's final LayerNorm to every block read (DINOv2's intermediate-layer recipe).
        trainable: ``frozen`` (no gradients, kept in eval mode), ``last_n`` (the last ``last_n_blocks`` blocks
            read and the final norm train), ``lora`` (only LoRA adapters train) or ``full``.
        last_n_blocks: blocks, counted back from the deepest block read, that train (``last_n``) or get LoRA
            adapters (``lora``); None means all blocks for ``lora`` and is an error for ``last_n``.
        lora_rank: LoRA rank r.
        lora_alpha: LoRA scaling alpha (the update is scaled by alpha / r).
        lora_dropout: dropout on the LoRA branch's input.
        lora_modules: linear layers of each block that get adapters: any of ``qkv``, ``proj`` (attention),
            ``fc1``, ``fc2`` (MLP).
        image_size: ``(height, width)`` (or one side) images are resized to; None for the model's ``img_size``.
            A fixed-size ViT accepts only its own size: load it with ``model_kwargs={"img_size": ...}`` (timm
            resamples the position embeddings) or ``dynamic_img_size=True``.
        gradient_checkpointing: recompute block activations in the backward pass (timm's
            ``set_grad_checkpointing``), trading compute for memory.
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module,
        *,
        pretrained: bool = True,
        model_kwargs: dict[str, Any] | None = None,
        layers: Sequence[int] = (-1,),
        layer_merge: LayerMerge = "concat",
        final_norm: bool = True,
        trainable: TrainableMode = "frozen",
        last_n_blocks: int | None = None,
        lora_rank: int = 16,
        lora_alpha: float = 8.0,
        lora_dropout: float = 0.0,
        lora_modules: Sequence[str] = ("qkv", "proj", "fc1", "fc2"),
        image_size: int | Sequence[int] | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            model = load_timm_vit(model, pretrained, **(model_kwargs or {}))
        elif model_kwargs:
            raise ValueError("ViTFeatures.model_kwargs: only used when model is a name or path, not a module")
        for attribute in ("forward_intermediates", "prune_intermediate_layers", "num_prefix_tokens", "patch_embed"):
            if not hasattr(model, attribute):
                raise TypeError(
                    f"ViTFeatures.model: {type(model).__name__} has no `{attribute}`; pass a timm VisionTransformer"
                )
        if layer_merge not in LAYER_MERGES:
            raise OptionError(f"ViTFeatures.layer_merge: {layer_merge!r} is not one of {', '.join(LAYER_MERGES)}")
        if trainable not in TRAINABLE_MODES:
            raise OptionError(f"ViTFeatures.trainable: {trainable!r} is not one of {', '.join(TRAINABLE_MODES)}")

        self.layers = _absolute_layers(layers, len(model.blocks))
        self.layer_merge = layer_merge
        self.final_norm = final_norm
        self.trainable = trainable
        self.patch_size = tuple(int(side) for side in model.patch_embed.patch_size)
        self.image_size = self._check_image_size(model, image_size)
        self.grid_size = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
        self.embed_dim = int(model.embed_dim)

        model.prune_intermediate_layers(list(self.layers), prune_norm=not final_norm, prune_head=True)
        self.model = model
        self._set_trainable(trainable, last_n_blocks, lora_rank, lora_alpha, lora_dropout, lora_modules)
        self.set_gradient_checkpointing(gradient_checkpointing)

        import timm.data

        data_config = timm.data.resolve_model_data_config(model)
        self.register_buffer("mean", torch.tensor(data_config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data_config["std"]).view(1, 3, 1, 1), persistent=False)
        if trainable == "frozen":
            self.model.eval()

    @property
    def feature_dim(self) -> int:
        """Width D of the returned features."""
        return self.embed_dim * (len(self.layers) if self.layer_merge == "concat" else 1)

    @property
    def num_patches(self) -> int:
        """Number N of patch tokens."""
        return self.grid_size[0] * self.grid_size[1]

    def set_gradient_checkpointing(self, enable: bool = True) -> None:
        """Switch activation recomputation in the backward pass on or off."""
        self.model.set_grad_checkpointing(enable)

    def train(self, mode: bool = True) -> ViTFeatures:
        """Like ``nn.Module.train``, but a frozen ViT stays in eval mode (no dropout or drop-path noise)."""
        super().train(mode)
        if self.trainable == "frozen":
            self.model.eval()
        return self

    def normalise_images(self, images: torch.Tensor) -> torch.Tensor:
        """Resize (B, 3, H, W) images in [0, 1] to the ViT input size and normalise them as the ViT was trained."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"ViTFeatures: expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch features of the blocks in ``layers``.

        Args:
            images: (B, 3, H, W) in [0, 1], any size (resized to ``image_size``).

        Returns:
            (B, N, D) with ``N = h * w`` patches in row-major order and ``D = feature_dim``.
        """
        pixels = self.normalise_images(images)
        # A frozen ViT needs no graph unless the caller differentiates with respect to the image itself.
        needs_graph = images.requires_grad or any(p.requires_grad for p in self.model.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and needs_graph):
            # timm returns the blocks in depth order; `layers` may list them in another order.
            depth_order = sorted(self.layers)
            by_depth = self.model.forward_intermediates(
                pixels,
                indices=depth_order,
                norm=self.final_norm,
                stop_early=True,
                output_fmt="NLC",
                intermediates_only=True,
            )
        by_layer = dict(zip(depth_order, by_depth))
        features = [by_layer[layer] for layer in self.layers]
        if self.layer_merge == "concat":
            return torch.cat(features, dim=-1)
        return torch.stack(features).mean(dim=0)

    def _check_image_size(self, model: nn.Module, image_size: int | Sequence[int] | None) -> tuple[int, int]:
        native = tuple(int(side) for side in model.patch_embed.img_size)
        if image_size is None:
            return native
        size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 1:
            raise OptionError(f"ViTFeatures.image_size: expected a side or (height, width), got {image_size!r}")
        if size != native and not getattr(model, "dynamic_img_size", False):
            raise ValueError(
                f"ViTFeatures.image_size: {size} differs from the ViT's fixed input size {native}; build the ViT with "
                f"model_kwargs={{'img_size': {list(size)}}} (timm resamples the position embeddings) or "
                "{'dynamic_img_size': True}"
            )
        if size[0] % self.patch_size[0] or size[1] % self.patch_size[1]:
            raise OptionError(f"ViTFeatures.image_size: {size} is not a multiple of the patch size {self.patch_size}")
        return size

    def _set_trainable(
        self,
        trainable: str,
        last_n_blocks: int | None,
        lora_rank: int,
        lora_alpha: float,
        lora_dropout: float,
        lora_modules: Sequence[str],
    ) -> None:
        blocks = self.model.blocks  # already cut after the deepest block read
        if last_n_blocks is not None and not 1 <= last_n_blocks <= len(blocks):
            raise ValueError(
                f"ViTFeatures.last_n_blocks: {last_n_blocks} is not in [1, {len(blocks)}] (blocks up to the deepest "
                f"layer read, {max(self.layers)})"
            )
        if trainable == "last_n" and last_n_blocks is None:
            raise ValueError("ViTFeatures.last_n_blocks: required when trainable='last_n'")
        self.model.requires_grad_(trainable == "full")
        if trainable == "last_n":
            for block in blocks[len(blocks) - last_n_blocks:]:
                block.requires_grad_(True)
            self.model.norm.requires_grad_(True)
        elif trainable == "lora":
            first_block = len(blocks) - (last_n_blocks or len(blocks))
            self._add_lora(first_block, lora_rank, lora_alpha, lora_dropout, lora_modules)

    def _add_lora(
        self, first_block: int, rank: int, alpha: float, dropout: float, modules: Sequence[str]
    ) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        paths = {"qkv": r"attn\.qkv", "proj": r"attn\.proj", "fc1": r"mlp\.fc1", "fc2": r"mlp\.fc2"}
        unknown = sorted(set(modules) - set(paths))
        if unknown or not modules:
            raise OptionError(f"ViTFeatures.lora_modules: {unknown or 'none given'}; choose among {', '.join(paths)}")
        if rank < 1:
            raise OptionError(f"ViTFeatures.lora_rank: must be at least 1, got {rank}")
        block_ids = "|".join(str(index) for index in range(first_block, len(self.model.blocks)))
        # A regex, not suffixes: the suffix `proj` would also match the patch embedding's convolution.
        target = rf"blocks\.({block_ids})\.({'|'.join(paths[name] for name in modules)})"
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target, bias="none")
        inject_adapter_in_model(config, self.model)
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_("lora_" in name)


def _absolute_layers(layers: Sequence[int], depth: int) -> tuple[int, ...]:
    """Block indices in [0, depth), in the order given; negative ones count from the end."""
    if len(layers) == 0:
        raise ValueError("ViTFeatures.layers: give at least one block index")
    absolute = []
    for layer in layers:
        if not -depth <= int(layer) < depth:
            raise OptionError(f"ViTFeatures.layers: block {layer} does not exist in a ViT with {depth} blocks")
        absolute.append(int(layer) % depth)
    if len(set(absolute)) != len(absolute):
        raise OptionError(f"ViTFeatures.layers: {list(layers)} names a block twice (blocks {absolute})")
    return tuple(absolute)
