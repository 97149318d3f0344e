"""Contrastive image-text models."""

from interpedit.clip.contrastive_loss import clip_contrastive_loss
from interpedit.clip.retrieval import caption_retrieval_hits
from interpedit.clip.shapes_clip import ShapesCLIP

__all__ = ["ShapesCLIP", "caption_retrieval_hits", "clip_contrastive_loss"]
