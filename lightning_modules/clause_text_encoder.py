"""Training a Stable Diffusion text encoder whose tokens carry their clause (colour binding), then writing the
components folder a UNet is fine-tuned against.

    python train.py fit --config configs/shapes/clause_text_encoder.yaml
    python -m lightning_modules.clause_text_encoder export --ckpt CKPT --out runs/shapes_sd_components_bound

The new layers start as the identity on the pipeline's layer-free encoder (``clause_binding_encoder``), so the
committed UNet can be fine-tuned against the result instead of retrained (see
``configs/shapes/stable_diffusion_unet_bound.yaml``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

from interpedit.backbones.stable_diffusion import load_stable_diffusion
from interpedit.optim import cosine_schedule_with_warmup
from interpedit.stable_diffusion.clause_binding import (
    ClauseHeads,
    clause_accuracy,
    clause_binding_encoder,
    clause_loss,
    clause_targets,
    trainable_layers,
)
from interpedit.stable_diffusion.text_conditioning import encode_prompts, word_sensitivity
from interpedit.user_errors import OptionError, run_command
from lightning_modules.checkpoints import load_system


class ClauseTextEncoderModule(LightningModule):
    """Trains new transformer layers on a pipeline's text encoder so each token carries its clause's attributes.

    The loss is ``clause_loss`` (each token's visible clause attributes, read by linear heads) plus
    ``anchor_weight`` times the squared distance of the new ``last_hidden_state`` from the original encoder's,
    relative to the original's mean square, over every position the UNet attends to (padding included). The anchor
    keeps the words' own embeddings where the UNet trained against the original encoder expects them.

    Args:
        components: Stable Diffusion repo or folder whose ``text_encoder`` and ``tokenizer`` to extend; its other
            parts go into the exported components folder unchanged.
        num_layers: new causal transformer layers.
        anchor_weight: weight of the distance from the original encoder's hidden states.
        caption_dropout: share of captions replaced by ``""``, the unconditional prompt, which the anchor then
            keeps in place.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up before the cosine decay.
    """

    def __init__(
        self,
        components: str = "pretrained/shapes_stable_diffusion",
        num_layers: int = 2,
        anchor_weight: float = 1.0,
        caption_dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
    ) -> None:
        super().__init__()
        if anchor_weight < 0:
            raise OptionError(f"{type(self).__name__}.anchor_weight: {anchor_weight} must be >= 0")
        if not 0.0 <= caption_dropout < 1.0:
            raise OptionError(f"{type(self).__name__}.caption_dropout: {caption_dropout} is outside [0, 1)")
        self.save_hyperparameters()
        loaded = load_stable_diffusion(components, components=("text_encoder", "tokenizer"))
        self.tokenizer = loaded.tokenizer
        self.reference = loaded.text_encoder.eval().requires_grad_(False)
        self.text_encoder = clause_binding_encoder(self.reference, num_layers).requires_grad_(False)
        for parameter in trainable_layers(self.text_encoder):
            parameter.requires_grad_(True)
        self.heads = ClauseHeads(self.text_encoder.config.hidden_size)

    def train(self, mode: bool = True) -> ClauseTextEncoderModule:
        super().train(mode)
        self.reference.eval()
        return self

    def losses(self, captions: list[str], generator: torch.Generator | None = None) -> dict[str, Any]:
        if generator is not None and self.hparams.caption_dropout > 0:
            dropped = torch.rand(len(captions), generator=generator) < self.hparams.caption_dropout
            captions = ["" if drop else caption for caption, drop in zip(captions, dropped.tolist())]
        hidden = encode_prompts(self.tokenizer, self.text_encoder, captions)
        with torch.no_grad():
            reference = encode_prompts(self.tokenizer, self.reference, captions)
        logits = self.heads(hidden)
        targets = clause_targets(captions, hidden.shape[1])
        clause = clause_loss(logits, targets)
        anchor = (hidden - reference).pow(2).mean() / reference.pow(2).mean()
        return {"loss": clause + self.hparams.anchor_weight * anchor, "clause": clause, "anchor": anchor,
                "logits": logits, "targets": targets}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.global_step * 1009 + batch_idx)
        out = self.losses(list(batch["caption"]), generator)
        self.log_dict({"train/loss": out["loss"], "train/clause": out["clause"], "train/anchor": out["anchor"]},
                      prog_bar=True)
        return out["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.losses(list(batch["caption"]))
        size = len(batch["caption"])
        self.log("val/clause", out["clause"], batch_size=size)
        self.log("val/anchor", out["anchor"], batch_size=size)
        for name, value in clause_accuracy(out["logits"], out["targets"]).items():
            self.log(f"val/accuracy_{name}", value, batch_size=size)

    def on_validation_epoch_end(self) -> None:
        sensitivity = word_sensitivity(self.tokenizer, self.text_encoder)
        for name, value in sensitivity.items():
            self.log(f"val/word_sensitivity_{name}", value)

    def configure_optimizers(self) -> dict[str, Any]:
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise OptionError("ClauseTextEncoderModule: set trainer.max_steps or max_epochs for the cosine schedule")
        scheduler = cosine_schedule_with_warmup(optimizer, self.hparams.warmup_steps, int(total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def export_components(checkpoint: str | Path, out: str | Path) -> Path:
    """A components folder (``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``): the trained text encoder
    with the other parts of the ``components`` the run extended."""
    from interpedit.stable_diffusion.pipeline_folder import save_components_folder

    module, _ = load_system(checkpoint, lambda hparams, state: ClauseTextEncoderModule(**hparams),
                            "ClauseTextEncoderModule")
    frozen = load_stable_diffusion(module.hparams.components, components=("vae", "scheduler"))
    sensitivity = word_sensitivity(module.tokenizer, module.text_encoder)
    print("text encoder word sensitivity: " + ", ".join(f"{key} {value:.3f}" for key, value in sensitivity.items()))
    text_encoder = module.text_encoder.eval().requires_grad_(False)
    return save_components_folder(out, vae=frozen.vae, text_encoder=text_encoder, tokenizer=module.tokenizer,
                                  scheduler=frozen.scheduler)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.clause_text_encoder",
                                     description="write a components folder from a clause text-encoder checkpoint")
    sub = parser.add_subparsers(dest="command", required=True)
    exporter = sub.add_parser("export", help="checkpoint -> components folder (vae, text encoder, tokenizer, scheduler)")
    exporter.add_argument("--ckpt", required=True, help="the .ckpt to export")
    exporter.add_argument("--out", required=True, help="destination folder")
    args = parser.parse_args(argv)
    print(f"wrote {export_components(args.ckpt, args.out)}")


if __name__ == "__main__":
    run_command(main)
