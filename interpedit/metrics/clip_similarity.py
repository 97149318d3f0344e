"""CLIP similarity of an edit to its target prompt, whole and in the edit region, and directional CLIP.

Keys (each with a ``_count``):

- ``clip/whole``: edited image vs target prompt, ``100 * max(cos, 0)`` (torchmetrics ``CLIPScore``, per image).
- ``clip/edited``: the edited image with its background blacked out (pixels outside the mask set to 0) vs the
  target prompt, same scale. NaN for an empty mask, and for every image of a batch given no mask.
- ``clip/directional``: cosine in [-1, 1] between ``E_img(edited) - E_img(source)`` and ``E_txt(target prompt)
  - E_txt(source prompt)``, embeddings L2-normalised first (StyleGAN-NADA, InstructPix2Pix). NaN where the two
  prompts give the same embedding (no direction, difference norm below ``DIRECTION_EPS``); 0 where the edited
  image embeds like the source (the edit moved nowhere); NaN for a batch given no source images or prompts.

Values are on CLIPScore's scale (0-100) as in PIE-Bench's table, except the directional cosine.

Embeddings follow torchmetrics' ``CLIPScore`` call contract exactly (``functional/multimodal/clip_score.py``,
1.9): images go to ``processor(images=[(3, H, W) CPU tensors in 0-255], return_tensors="pt", padding=True)`` and
``model.get_image_features(pixel_values)``; prompts to ``processor(text=[...], return_tensors="pt",
padding=True)``, truncated to ``model.config.text_config.max_position_embeddings`` with a warning, and
``model.get_text_features(input_ids, attention_mask)``. Images are quantised to 8 bits first (``round(x * 255)``),
the uint8 tensors PIE-Bench feeds; CLIP's image processor resizes them with PIL. Any model/processor pair meeting
the contract works: a hub id or folder (``CLIPModel``/``CLIPProcessor`` through
``interpedit.backbones.load_transformers_model``), a ``ShapesCLIP`` (with ``ShapesCLIPProcessor``), or a callable
returning ``(model, processor)`` as for ``CLIPScore(model_name_or_path=...)``. torchmetrics' ``CLIPScore`` itself
is not called: it keeps only a running mean (no per-image values, no embeddings for the directional score), and
with transformers 5 its ``get_image_features`` returns a ``BaseModelOutputWithPooling`` that CLIPScore 1.9 cannot
normalise; here such outputs are read through their ``pooler_output`` (the projected embedding).

``pie_bench_compat=True`` changes only ``clip/edited``: the mask's first/last row and column are forced to edit
region first (PIE-Bench's mask decoding), so the kept image border is part of the "edited" image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interpedit.metrics.masked_image_quality import force_mask_border
from interpedit.metrics.metric_inputs import (
    check_images,
    check_mask,
    check_same_shape,
    evaluation_mode,
    float32_arithmetic,
)
from interpedit.metrics.per_image_average import PerImageAverage

PIE_BENCH_CLIP = "openai/clip-vit-large-patch14"
DIRECTION_EPS = 1e-6
"""Norm below which a difference of unit embeddings counts as zero (no direction)."""

CLIPSource = str | nn.Module | Callable[[], tuple[Any, Any]]


def _features(output: Any, what: str) -> Tensor:
    if isinstance(output, Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)  # transformers >= 5 returns a ModelOutput here
    if isinstance(pooled, Tensor):
        return pooled
    raise TypeError(f"get_{what}_features returned {type(output).__name__}; expected a tensor or a pooler_output")


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def to_uint8(images: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> uint8 0-255 (rounded), the images torchmetrics' CLIPScore expects."""
    return (images * 255.0).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def clip_image_embeddings(model: nn.Module, processor: Callable[..., Any], images: Tensor) -> Tensor:
    """Image embeddings the way ``CLIPScore`` gets them: (B, 3, H, W) 0-255 -> (B, D) float32, not normalised."""
    processed = processor(images=[image.cpu() for image in images], return_tensors="pt", padding=True)
    device = _device(model)
    with float32_arithmetic(device), evaluation_mode(model):
        return _features(model.get_image_features(processed["pixel_values"].to(device)), "image").float()


@torch.no_grad()
def clip_text_embeddings(model: nn.Module, processor: Callable[..., Any], texts: Sequence[str]) -> Tensor:
    """Text embeddings the way ``CLIPScore`` gets them: B captions -> (B, D) float32, not normalised."""
    processed = processor(text=list(texts), return_tensors="pt", padding=True)
    input_ids, attention_mask = processed["input_ids"], processed["attention_mask"]
    text_config = getattr(getattr(model, "config", None), "text_config", None)
    limit = getattr(text_config, "max_position_embeddings", None)
    if limit is not None and attention_mask.shape[-1] > limit:
        warnings.warn(
            f"CLIP: a caption is longer than max_position_embeddings={limit} tokens and is truncated, as "
            "torchmetrics' CLIPScore does",
            UserWarning,
            stacklevel=2,
        )
        input_ids, attention_mask = input_ids[..., :limit], attention_mask[..., :limit]
    device = _device(model)
    with float32_arithmetic(device), evaluation_mode(model):
        return _features(model.get_text_features(input_ids.to(device), attention_mask.to(device)), "text").float()


def clip_score(image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
    """CLIPScore per pair, ``100 * max(cos, 0)``: (B, D) x 2 -> (B,)."""
    cosine = F.cosine_similarity(image_embeddings.float(), text_embeddings.float(), dim=-1, eps=1e-12)
    return 100.0 * cosine.clamp(min=0.0)


def directional_similarity(
    source_images: Tensor, edited_images: Tensor, source_texts: Tensor, target_texts: Tensor
) -> Tensor:
    """Directional CLIP per image (module docstring): four (B, D) embeddings -> (B,) cosines in [-1, 1]."""
    image_direction = F.normalize(edited_images.float(), dim=-1) - F.normalize(source_images.float(), dim=-1)
    text_direction = F.normalize(target_texts.float(), dim=-1) - F.normalize(source_texts.float(), dim=-1)
    image_norm = image_direction.norm(dim=-1)
    text_norm = text_direction.norm(dim=-1)
    cosine = (image_direction * text_direction).sum(dim=-1) / (image_norm * text_norm).clamp(min=DIRECTION_EPS**2)
    cosine = torch.where(image_norm < DIRECTION_EPS, torch.zeros_like(cosine), cosine)
    return torch.where(text_norm < DIRECTION_EPS, torch.full_like(cosine, float("nan")), cosine)


def load_clip(model: CLIPSource) -> tuple[nn.Module, Callable[..., Any]]:
    """``(model, processor)`` from a hub id or folder (a transformers CLIP or a saved ``ShapesCLIP``), a
    ``ShapesCLIP``, or a callable returning the pair."""
    from interpedit.clip.shapes_clip import ShapesCLIP, is_shapes_clip_folder
    from interpedit.clip.shapes_clip_processor import clip_score_components

    if isinstance(model, ShapesCLIP):
        return clip_score_components(model)
    if (isinstance(model, str) or hasattr(model, "__fspath__")) and is_shapes_clip_folder(model):
        return clip_score_components(ShapesCLIP.load(model).eval().requires_grad_(False))
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        from transformers import CLIPModel, CLIPProcessor

        from interpedit.backbones import load_transformers_model

        loaded = load_transformers_model(CLIPModel, model).eval().requires_grad_(False)
        return loaded, load_transformers_model(CLIPProcessor, model)
    if isinstance(model, nn.Module):
        raise TypeError(
            f"CLIPSimilarity: got a bare {type(model).__name__}; pass a callable returning (model, processor), "
            "a ShapesCLIP, or a hub id/folder"
        )
    if callable(model):
        pair = model()
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError("CLIPSimilarity: the model callable must return a (model, processor) tuple")
        return pair
    raise TypeError(f"CLIPSimilarity: cannot build a CLIP model from {type(model).__name__}")


class CLIPSimilarity(PerImageAverage):
    """CLIP similarity of edited images to their target prompts, and directional CLIP (module docstring).

    Args:
        model: hub id or folder of a transformers CLIP (PIE-Bench: ``"openai/clip-vit-large-patch14"``), a
            ``ShapesCLIP``, or a callable returning ``(model, processor)`` (torchmetrics' contract).
        pie_bench_compat: force the mask border into the edit region for ``clip/edited``, as PIE-Bench does.
        **kwargs: ``torchmetrics.Metric`` options.
    """

    def __init__(self, model: CLIPSource = PIE_BENCH_CLIP, *, pie_bench_compat: bool = False, **kwargs: Any) -> None:
        super().__init__(["clip/whole", "clip/edited", "clip/directional"], **kwargs)
        clip_model, processor = load_clip(model)
        for method in ("get_image_features", "get_text_features"):
            if not callable(getattr(clip_model, method, None)):
                raise TypeError(f"CLIPSimilarity: the model ({type(clip_model).__name__}) has no {method}")
        # A model passed in may be trained elsewhere: its mode and requires_grad are left alone.
        self.model = clip_model
        self.processor = processor
        self.pie_bench_compat = pie_bench_compat

    def image_embeddings(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, D) float32 embeddings, not normalised."""
        return clip_image_embeddings(self.model, self.processor, to_uint8(images))

    def text_embeddings(self, texts: Sequence[str]) -> Tensor:
        """B prompts -> (B, D) float32 embeddings, not normalised."""
        return clip_text_embeddings(self.model, self.processor, texts)

    @torch.no_grad()
    def update(
        self,
        edited: Tensor,
        target_prompts: Sequence[str],
        *,
        mask: Tensor | None = None,
        source: Tensor | None = None,
        source_prompts: Sequence[str] | None = None,
    ) -> None:
        """Add a batch.

        Args:
            edited: (B, 3, H, W) in [0, 1].
            target_prompts: B prompts describing the wanted result (brackets stripped).
            mask: (B, H, W) bool edit regions, for ``clip/edited``.
            source: (B, 3, H, W) in [0, 1] images before editing, for ``clip/directional``.
            source_prompts: B prompts describing the source, for ``clip/directional``.
        """
        where = f"{type(self).__name__}.update"
        edited = check_images(where, "edited", edited)
        batch = edited.shape[0]
        target_prompts = [target_prompts] if isinstance(target_prompts, str) else list(target_prompts)
        if len(target_prompts) != batch:
            raise ValueError(f"{where}: {len(target_prompts)} target_prompts for {batch} images")
        if (source is None) != (source_prompts is None):
            raise ValueError(f"{where}: clip/directional needs both source and source_prompts, or neither")
        if mask is not None:
            mask = check_mask(where, "mask", mask, edited)
        if source is not None:
            source = check_images(where, "source", source)
            check_same_shape(where, ("source", "edited"), source, edited)
            source_prompts = [source_prompts] if isinstance(source_prompts, str) else list(source_prompts)
            if len(source_prompts) != batch:
                raise ValueError(f"{where}: {len(source_prompts)} source_prompts for {batch} images")

        target_text = self.text_embeddings(target_prompts)
        edited_image = self.image_embeddings(edited)
        undefined = torch.full((batch,), float("nan"), device=target_text.device)
        values = {"clip/whole": clip_score(edited_image, target_text), "clip/edited": undefined}
        if mask is not None:
            region = force_mask_border(mask) if self.pie_bench_compat else mask
            blacked_out = torch.where(region[:, None], to_uint8(edited), torch.zeros((), dtype=torch.uint8))
            score = clip_score(clip_image_embeddings(self.model, self.processor, blacked_out), target_text)
            has_region = region.flatten(1).any(dim=1).to(score.device)
            values["clip/edited"] = torch.where(has_region, score, undefined)
        values["clip/directional"] = undefined
        if source is not None:
            values["clip/directional"] = directional_similarity(
                self.image_embeddings(source), edited_image, self.text_embeddings(source_prompts), target_text
            )
        self._accumulate(values)
