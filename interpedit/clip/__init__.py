"""Contrastive image-text models."""

from interpedit.clip.contrastive_loss import clip_contrastive_loss
from interpedit.clip.retrieval import caption_retrieval_hits
from interpedit.clip.shapes_clip import ShapesCLIP, is_shapes_clip_folder
from interpedit.clip.shapes_clip_processor import ShapesCLIPProcessor, clip_score_components

__all__ = [
    "ShapesCLIP",
    "ShapesCLIPProcessor",
    "caption_retrieval_hits",
    "clip_contrastive_loss",
    "clip_score_components",
    "is_shapes_clip_folder",
]
