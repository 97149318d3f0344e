"""The Learnable Regions objective: CLIP, directional CLIP and structure losses of a candidate edit.

For a candidate edit y of a source x, an edit prompt T and a source prompt S (each embedding L2-normalised):

- ``clip``: mean over the views v of ``1 - cos(E(v(y)), E(T))``;
- ``directional``: mean over the views of ``1 - cos(E(v(y)) - E(v(x)), E(T) - E(S))``; y and x go through the same
  views (``ViewAugmentation``);
- ``structure``: the mean squared difference of the self-similarity matrices of a ViT's keys of y and of x
  (``interpedit.metrics.StructureDistance``: DINO's keys on photographs, the shapes CLIP tower's on shapes);
- ``loss = clip_weight * clip + directional_weight * directional + structure_weight * structure``, and the
  reward is ``-loss``.

Every model gets its images in the range it expects: CLIP through its own processor (from 0-255 values, as the
metrics feed it), the structure ViT through ``StructureDistance``'s resizing and normalisation. The released code
fed its edits to CLIP as 0-255 floats next to [0, 1] sources.

``losses(..., differentiable=True)`` keeps the gradient of the candidates (the soft-mask estimator backpropagates
through it): CLIP then reads float images through ``clip_pixel_values`` instead of 8-bit ones, and the structure
loss reads the ViT's keys of the candidates with their gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interpedit.learnable_regions.views import ViewAugmentation
from interpedit.metrics.clip_pixels import clip_image_features
from interpedit.metrics.clip_similarity import clip_image_embeddings, clip_text_embeddings, load_clip, to_uint8
from interpedit.metrics.structure_distance import StructureDistance, self_similarity_distance


class EditReward(nn.Module):
    """The per-candidate losses and reward (module docstring).

    Args:
        clip: a CLIP hub id or folder (``openai/clip-vit-base-patch16``, ``pretrained/shapes_clip``), or a
            callable returning ``(model, processor)``.
        structure_vit: the ViT of the structure loss: a timm name or folder, or a module.
        views: the augmentation (default 16 views).
        clip_weight, directional_weight, structure_weight: the loss weights (the paper's lambdas; 1, 1, 1).
        structure_image_size: input side of the structure ViT (None: its own).
        structure_mean, structure_std: its normalisation (None: its ``pretrained_cfg``'s, else ImageNet's).
    """

    def __init__(self, clip: Any, structure_vit: nn.Module | str, views: ViewAugmentation | None = None,
                 clip_weight: float = 1.0, directional_weight: float = 1.0, structure_weight: float = 1.0,
                 structure_image_size: int | None = None, structure_mean: Sequence[float] | None = None,
                 structure_std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.clip_model, self.clip_processor = load_clip(clip)
        self.structure = StructureDistance(structure_vit, image_size=structure_image_size, mean=structure_mean,
                                           std=structure_std)
        self.views = views or ViewAugmentation()
        self.clip_weight = clip_weight
        self.directional_weight = directional_weight
        self.structure_weight = structure_weight

    def text_embeddings(self, prompts: Sequence[str]) -> Tensor:
        """(B, D) normalised CLIP text embeddings."""
        return F.normalize(clip_text_embeddings(self.clip_model, self.clip_processor, list(prompts)), dim=-1)

    def image_embeddings(self, images: Tensor, differentiable: bool = False) -> Tensor:
        """(..., 3, H, W) in [0, 1] -> (..., D) normalised CLIP image embeddings.

        ``differentiable`` preprocesses the float images with tensor operations (``clip_pixel_values``) so that a
        gradient reaches them; otherwise they are quantised to 8 bits and go through the processor, as the metrics
        feed CLIP.
        """
        flat = images.reshape(-1, *images.shape[-3:])
        if differentiable:
            embeddings = clip_image_features(self.clip_model, self.clip_processor, flat)
        else:
            embeddings = clip_image_embeddings(self.clip_model, self.clip_processor, to_uint8(flat))
        return F.normalize(embeddings, dim=-1).reshape(*images.shape[:-3], -1)

    @torch.no_grad()
    def forward(self, candidates: Tensor, sources: Tensor, edit_text: Tensor, source_text: Tensor,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Losses of K candidates per image, without gradients (``losses`` keeps them).

        Args:
            candidates: (B, K, 3, H, W) edits in [0, 1].
            sources: (B, 3, H, W) in [0, 1].
            edit_text, source_text: (B, D) from ``text_embeddings``.
            generator: draws the views (one set per call, shared by every image and candidate).

        Returns:
            ``clip``, ``directional``, ``structure``, ``loss`` and ``reward``, each (B, K).
        """
        return self.losses(candidates, sources, edit_text, source_text, generator)

    def losses(self, candidates: Tensor, sources: Tensor, edit_text: Tensor, source_text: Tensor,
               generator: torch.Generator | None = None, differentiable: bool = False) -> dict[str, Tensor]:
        """``forward``'s losses; with ``differentiable`` they carry the gradient of the candidates (the sources are
        constants), through CLIP and the structure ViT in their float preprocessing."""
        batch, count = candidates.shape[:2]
        parameters = self.views.sample(generator)
        candidate_views = self.image_embeddings(self.views.apply(candidates.flatten(0, 1), parameters),
                                                differentiable)
        candidate_views = candidate_views.reshape(batch, count, parameters.affine.shape[0], -1)  # (B, K, V, D)
        with torch.no_grad():
            source_views = self.image_embeddings(self.views.apply(sources, parameters), differentiable)[:, None]
        clip = 1 - (candidate_views * edit_text[:, None, None]).sum(-1).mean(-1)
        image_direction = F.normalize(candidate_views - source_views, dim=-1, eps=1e-8)
        text_direction = F.normalize(edit_text - source_text, dim=-1, eps=1e-8)[:, None, None]
        directional = 1 - (image_direction * text_direction).sum(-1).mean(-1)
        repeated_sources = sources[:, None].expand_as(candidates).flatten(0, 1)
        if differentiable:
            with torch.no_grad():
                source_keys = self.structure.keys(repeated_sources)
            structure = self_similarity_distance(source_keys, self.structure.keys(candidates.flatten(0, 1)))
            structure = structure.reshape(batch, count)
        else:
            structure = self.structure.distances(repeated_sources, candidates.flatten(0, 1)).reshape(batch, count)
        loss = self.clip_weight * clip + self.directional_weight * directional + self.structure_weight * structure
        return {"clip": clip, "directional": directional, "structure": structure, "loss": loss, "reward": -loss}
