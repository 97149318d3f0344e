"""A small contrastive image-text model (CLIP) for the shapes world.

The image tower is a timm ViT and the text tower a transformers CLIP text model, so the same classes
serve tiny shapes models and, with other configs, pretrained ones. The model saves and loads with
``save_pretrained``/``from_pretrained`` (huggingface_hub's ``PyTorchModelHubMixin``): a folder or hub
repo holding ``config.json`` (which includes the caption vocabulary) and ``model.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast

from interpedit.backbones.loading import load_hub_mixin_model
from interpedit.backbones.shapes_tokenizer import build_shapes_tokenizer

DEFAULT_VISION_CONFIG: dict[str, Any] = {
    "architecture": "vit_tiny_patch16_224",
    "img_size": 32,
    "patch_size": 4,
    "embed_dim": 128,
    "depth": 4,
    "num_heads": 4,
}
DEFAULT_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
}


def is_shapes_clip_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder saved by ``ShapesCLIP.save_pretrained`` (its config names a vocabulary)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return "vocabulary" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


class ShapesCLIP(nn.Module, PyTorchModelHubMixin):
    """CLIP with a timm ViT image tower and a CLIP text tower over a closed word vocabulary.

    Args:
        vocabulary: the caption words; the tokenizer is rebuilt from it, so a saved model is self-contained.
        vision_config: ``architecture`` (a timm ViT name) plus keyword arguments for ``timm.create_model``.
        text_config: keyword arguments for ``transformers.CLIPTextConfig`` (vocabulary and special-token
            ids are filled in from ``vocabulary``).
        embed_dim: width of the joint embedding space.
        logit_scale_init: initial temperature, as in CLIP: log(1 / 0.07).
    """

    def __init__(
        self,
        vocabulary: Sequence[str],
        vision_config: dict[str, Any] | None = None,
        text_config: dict[str, Any] | None = None,
        embed_dim: int = 128,
        logit_scale_init: float = math.log(1 / 0.07),
    ) -> None:
        super().__init__()
        vision_config = {**DEFAULT_VISION_CONFIG, **(vision_config or {})}
        text_config = {**DEFAULT_TEXT_CONFIG, **(text_config or {})}
        self.tokenizer: PreTrainedTokenizerFast = build_shapes_tokenizer(
            vocabulary, model_max_length=text_config["max_position_embeddings"]
        )
        vision_kwargs = {k: v for k, v in vision_config.items() if k != "architecture"}
        self.vision_model = timm.create_model(
            vision_config["architecture"], pretrained=False, num_classes=0, **vision_kwargs
        )
        self.visual_projection = nn.Linear(self.vision_model.num_features, embed_dim, bias=False)
        self.text_model = CLIPTextModelWithProjection(
            CLIPTextConfig(
                **text_config,
                vocab_size=len(self.tokenizer),
                projection_dim=embed_dim,
                pad_token_id=self.tokenizer.pad_token_id,
                bos_token_id=self.tokenizer.bos_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.image_size = int(vision_config["img_size"])

    @classmethod
    def load(cls, id_or_path: str, **kwargs: Any) -> "ShapesCLIP":
        """Load a saved model by hub id or local folder, with a clear error when it is not there."""
        return load_hub_mixin_model(cls, id_or_path, **kwargs)

    def tokenize(self, captions: Sequence[str], device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Token ids and attention mask for a list of captions, padded to the longest one."""
        encoded = self.tokenizer(list(captions), padding=True, truncation=True, return_tensors="pt")
        return {key: value.to(device) for key, value in encoded.items() if key in ("input_ids", "attention_mask")}

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image embeddings, not normalised.

        Args:
            pixel_values: (B, 3, H, W) in [0, 1].

        Returns:
            (B, D).
        """
        pooled = self.vision_model(pixel_values * 2.0 - 1.0)
        return self.visual_projection(pooled)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Text embeddings, not normalised: (B, L) token ids -> (B, D)."""
        return self.text_model(input_ids=input_ids, attention_mask=attention_mask).text_embeds

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scaled cosine similarities, (B_image, B_text)."""
        image = F.normalize(self.get_image_features(pixel_values), dim=-1)
        text = F.normalize(self.get_text_features(input_ids, attention_mask), dim=-1)
        return self.logit_scale.exp().clamp(max=100.0) * image @ text.t()
