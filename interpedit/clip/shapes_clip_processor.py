"""A CLIP-style processor for ``ShapesCLIP``, so the shapes CLIP plugs into torchmetrics' ``CLIPScore``.

torchmetrics (1.9, ``functional/multimodal/clip_score.py``) calls ``processor(images=[(3, H, W) 0-255 CPU
tensors], return_tensors="pt", padding=True)`` and passes ``pixel_values`` to ``model.get_image_features``, and
calls ``processor(text=[captions], return_tensors="pt", padding=True)`` and passes ``input_ids`` and
``attention_mask`` to ``model.get_text_features``; before that it reads ``model.config.text_config
.max_position_embeddings`` to truncate long captions. ``ShapesCLIPProcessor`` does the processor's part;
``ShapesCLIPScoreModel`` adds the ``config`` that ``ShapesCLIP`` does not have. With both::

    CLIPScore(model_name_or_path=lambda: clip_score_components(clip))
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from interpedit.clip.shapes_clip import ShapesCLIP


class ShapesCLIPProcessor:
    """Turns 0-255 images into ``ShapesCLIP`` pixel values and captions into token ids.

    Args:
        tokenizer: the model's tokenizer (``ShapesCLIP.tokenizer``).
        image_size: the model's input side (``ShapesCLIP.image_size``); images are resized to it.
        antialias: antialias the bilinear resize.
    """

    def __init__(self, tokenizer: Any, image_size: int, antialias: bool = True) -> None:
        if image_size < 1:
            raise ValueError(f"ShapesCLIPProcessor: image_size must be positive, got {image_size}")
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.antialias = antialias

    @classmethod
    def from_model(cls, clip: ShapesCLIP, antialias: bool = True) -> ShapesCLIPProcessor:
        """The processor matching a ``ShapesCLIP`` (its tokenizer and image size)."""
        return cls(clip.tokenizer, clip.image_size, antialias=antialias)

    @property
    def model_max_length(self) -> int:
        """Longest token sequence, begin and end tokens included."""
        return int(self.tokenizer.model_max_length)

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        images: Tensor | Sequence[Tensor] | None = None,
        return_tensors: str = "pt",
        padding: bool | str = True,
        truncation: bool = True,
    ) -> dict[str, Tensor]:
        """Encode captions and/or images.

        Args:
            text: a caption or a list of captions.
            images: (3, H, W), (B, 3, H, W) or a list of (3, H, W) tensors with values in 0-255 (uint8 or float,
                the torchmetrics convention; a float image is read as 0-255 too).
            return_tensors: only ``"pt"``.
            padding: the tokenizer's padding (True pads to the longest caption).
            truncation: cut captions longer than ``model_max_length``.

        Returns:
            ``input_ids`` and ``attention_mask`` (B, L) for text; ``pixel_values`` (B, 3, S, S) float32 in [0, 1]
            (what ``ShapesCLIP.get_image_features`` takes) for images.
        """
        if return_tensors != "pt":
            raise ValueError(f"ShapesCLIPProcessor: only return_tensors='pt' is supported, got {return_tensors!r}")
        if text is None and images is None:
            raise ValueError("ShapesCLIPProcessor: give text, images or both")
        encoded: dict[str, Tensor] = {}
        if text is not None:
            captions = [text] if isinstance(text, str) else list(text)
            tokens = self.tokenizer(captions, padding=padding, truncation=truncation, return_tensors="pt")
            encoded["input_ids"] = tokens["input_ids"]
            encoded["attention_mask"] = tokens["attention_mask"]
        if images is not None:
            encoded["pixel_values"] = self._pixel_values(images)
        return encoded

    def _pixel_values(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        if isinstance(images, Tensor):
            images = [images] if images.ndim == 3 else list(images)
        if not images:
            raise ValueError("ShapesCLIPProcessor: images is empty")
        size = (self.image_size, self.image_size)
        pixel_values = []
        for index, image in enumerate(images):
            if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"ShapesCLIPProcessor: image {index} must be a (3, H, W) tensor, got {shape}")
            scaled = image.detach().float()[None] / 255.0
            if tuple(scaled.shape[-2:]) != size:
                scaled = F.interpolate(
                    scaled, size=size, mode="bilinear", align_corners=False, antialias=self.antialias
                )
            pixel_values.append(scaled[0].clamp(0.0, 1.0))
        return torch.stack(pixel_values)


class ShapesCLIPScoreModel(nn.Module):
    """``ShapesCLIP`` with the ``config.text_config`` that torchmetrics' CLIPScore reads; features delegate."""

    def __init__(self, clip: ShapesCLIP) -> None:
        super().__init__()
        self.clip = clip
        self.config = SimpleNamespace(text_config=clip.text_model.config)

    def get_image_features(self, pixel_values: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, D) image embeddings, not normalised."""
        return self.clip.get_image_features(pixel_values)

    def get_text_features(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, L) token ids -> (B, D) text embeddings, not normalised."""
        return self.clip.get_text_features(input_ids, attention_mask)


def clip_score_components(clip: ShapesCLIP) -> tuple[ShapesCLIPScoreModel, ShapesCLIPProcessor]:
    """``(model, processor)`` for torchmetrics' ``CLIPScore(model_name_or_path=lambda: ...)`` and ``CLIPSimilarity``."""
    return ShapesCLIPScoreModel(clip), ShapesCLIPProcessor.from_model(clip)
