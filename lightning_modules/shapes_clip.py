"""Contrastive training of the shapes CLIP: the image-text model later methods use for CLIP losses,
CLIP scores and text conditioning in the shapes world."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric

from interpedit.clip import ShapesCLIP, caption_retrieval_hits, clip_contrastive_loss
from interpedit.optim import cosine_schedule_with_warmup, split_weight_decay
from interpedit.shapes import vocabulary


class ShapesCLIPModule(LightningModule):
    """Trains a :class:`~interpedit.clip.ShapesCLIP` on (image, caption) batches.

    Args:
        vision_config: timm ViT settings for the image tower (``architecture`` plus keyword arguments).
        text_config: ``CLIPTextConfig`` settings for the text tower.
        embed_dim: width of the joint embedding.
        pretrained: hub id or folder of a saved ShapesCLIP to start from instead of random weights.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases, norms, embeddings or the temperature).
        warmup_steps: linear warm-up steps before the cosine decay.
        retrieval_group_size: zero-shot retrieval picks the right caption among this many.
    """

    def __init__(
        self,
        vision_config: dict[str, Any] | None = None,
        text_config: dict[str, Any] | None = None,
        embed_dim: int = 128,
        pretrained: str | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        retrieval_group_size: int = 16,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if pretrained is not None:
            self.model = ShapesCLIP.load(pretrained)
        else:
            self.model = ShapesCLIP(
                vocabulary=vocabulary(), vision_config=vision_config, text_config=text_config, embed_dim=embed_dim
            )
        self.retrieval_group_size = retrieval_group_size
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric()
                for stage in ("val", "test")
                for name in ("loss", "image_to_text", "text_to_image")
            }
        )

    def forward(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """Scaled similarities (B_image, B_caption) for images in [0, 1] and caption strings."""
        return self.model(images, **self.model.tokenize(captions, device=images.device))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = clip_contrastive_loss(self(batch["image"], batch["caption"]).float())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/temperature", 1.0 / self.model.logit_scale.exp().detach())
        return loss

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> None:
        logits = self(batch["image"], batch["caption"]).float()
        loss = clip_contrastive_loss(logits)
        image_to_text, text_to_image = caption_retrieval_hits(logits, batch["caption"], self.retrieval_group_size)
        size = len(batch["caption"])
        self.metrics[f"{stage}_loss"].update(loss, weight=size)
        if image_to_text.numel():
            self.metrics[f"{stage}_image_to_text"].update(image_to_text.float().to(self.device))
            self.metrics[f"{stage}_text_to_image"].update(text_to_image.float().to(self.device))
        group = self.retrieval_group_size
        # torchmetrics objects sync across processes when computed at epoch end, so every rank logs the
        # value over the whole split, not over its own shard.
        self.log(f"{stage}/loss", self.metrics[f"{stage}_loss"], prog_bar=stage == "val")
        self.log(f"{stage}/retrieval_image_to_text_top1_of{group}", self.metrics[f"{stage}_image_to_text"],
                 prog_bar=stage == "val")
        self.log(f"{stage}/retrieval_text_to_image_top1_of{group}", self.metrics[f"{stage}_text_to_image"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            split_weight_decay(self.model, self.hparams.weight_decay),
            lr=self.hparams.learning_rate,
            betas=(0.9, 0.98),
        )
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            raise ValueError("ShapesCLIPModule needs a finite schedule: set trainer.max_steps or trainer.max_epochs.")
        scheduler = cosine_schedule_with_warmup(optimizer, self.hparams.warmup_steps, int(total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
