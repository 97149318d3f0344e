"""Training a diffusers ``AutoencoderKL`` (the latent space of a Stable Diffusion), and its export command.

    python train.py fit --config configs/shapes/stable_diffusion_vae.yaml
    python -m lightning_modules.autoencoder_kl export --ckpt runs/shapes_sd_vae/checkpoints/last.ckpt --out DIR
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric

from interpedit.backbones import load_diffusers_model
from interpedit.diffusion import EMA
from interpedit.metrics.reconstruction import reconstruction_psnr
from interpedit.optim import cosine_schedule_with_warmup
from interpedit.stable_diffusion.vae_training import RECONSTRUCTION_LOSSES, random_crops, vae_loss
from interpedit.user_errors import OptionError, run_command
from lightning_modules.checkpoints import load_system


TRAINABLE_PARTS = ("all", "decoder")


def build_vae(vae: str | dict[str, Any]) -> AutoencoderKL:
    """An ``AutoencoderKL`` by hub id or folder (a Stable Diffusion repo's ``vae`` subfolder, or a VAE folder), or
    a new one from a config dict."""
    if isinstance(vae, str):
        subfolder = "vae" if (Path(vae) / "vae").is_dir() or not Path(vae).exists() else None
        return load_diffusers_model(AutoencoderKL, vae, subfolder=subfolder)
    return AutoencoderKL.from_config(dict(vae))


class AutoencoderKLModule(LightningModule):
    """Trains an ``AutoencoderKL`` on image batches (``image``: (B, 3, H, W) in [0, 1]).

    Validation reports the PSNR of whole-image reconstructions (posterior mean) and measures the standard deviation
    of the latents, from which the export sets ``scaling_factor``, as SD did.

    Args:
        vae: hub id or folder to start from, or an ``AutoencoderKL`` config dict for a new one.
        trainable: ``all``, or ``decoder`` to fine-tune the decoder alone with the encoder frozen, so the latent
            space (and any diffusion model trained in it) stays as it is (SD's ft-MSE VAE was made this way).
        crop_size: train on random crops of this side (None: whole images).
        reconstruction: ``l1``, ``mse`` or ``l1+mse``.
        kl_weight: weight of the KL term (SD: 1e-6).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up before the cosine decay.
        final_lr_fraction: the cosine decay ends at this fraction of the learning rate.
        ema_decay: decay of an EMA of the weights used for validation and export; None turns it off.
        seed: seed of the crops and posterior samples, so a resumed run draws what an unbroken one would.
    """

    def __init__(
        self,
        vae: str | dict[str, Any],
        trainable: str = "all",
        crop_size: int | None = None,
        reconstruction: str = "l1+mse",
        kl_weight: float = 1e-6,
        learning_rate: float = 4e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        final_lr_fraction: float = 0.05,
        ema_decay: float | None = 0.999,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if trainable not in TRAINABLE_PARTS:
            raise OptionError(f"AutoencoderKLModule.trainable: {trainable!r} is not one of {', '.join(TRAINABLE_PARTS)}")
        if reconstruction not in RECONSTRUCTION_LOSSES:
            raise ValueError(
                f"AutoencoderKLModule.reconstruction: {reconstruction!r} is not one of {', '.join(RECONSTRUCTION_LOSSES)}"
            )
        if crop_size is not None and crop_size < 1:
            raise OptionError(f"AutoencoderKLModule.crop_size: must be positive or null, got {crop_size}")
        self.save_hyperparameters()
        self.vae = build_vae(vae)
        if trainable == "decoder":
            for part in (self.vae.encoder, self.vae.quant_conv):
                if part is not None:
                    part.requires_grad_(False)
        self.ema = EMA(self.vae, decay=ema_decay, warmup=9) if ema_decay is not None else None
        self._ema_step = 0
        self.register_buffer("latent_std", torch.ones(()))
        self.val_psnr = MeanMetric()
        self.val_sum = MeanMetric()
        self.val_sum_sq = MeanMetric()

    def step_generator(self, batch_idx: int) -> torch.Generator:
        """CPU generator for this batch's crops and posterior samples, from (seed, step, batch, rank)."""
        seed = ((self.hparams.seed * 1_000_003 + self.global_step) * 10_007 + batch_idx) * 1_009 + self.global_rank
        return torch.Generator().manual_seed(seed)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        generator = self.step_generator(batch_idx)
        images = batch["image"] * 2.0 - 1.0
        if self.hparams.crop_size is not None:
            images = random_crops(images, self.hparams.crop_size, generator)
        if self.hparams.trainable == "decoder":
            self.vae.encoder.eval()  # frozen: its norms behave as at inference
        sample_generator = torch.Generator(device=self.device).manual_seed(int(torch.randint(2**62, (), generator=generator)))
        losses = vae_loss(self.vae, images, kl_weight=self.hparams.kl_weight,
                          reconstruction=self.hparams.reconstruction, generator=sample_generator)
        self.log("train/loss", losses["loss"], prog_bar=True)
        self.log("train/reconstruction_loss", losses["reconstruction_loss"])
        self.log("train/kl", losses["kl"])
        return losses["loss"]

    def on_train_start(self) -> None:
        self._ema_step = self.global_step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None and self.global_step != self._ema_step:
            self._ema_step = self.global_step
            self.ema.update()

    def averaged(self):
        """Context in which ``self.vae`` holds the EMA weights (a no-op without an EMA)."""
        return self.ema.swapped_in() if self.ema is not None else nullcontext()

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction in [0, 1], posterior mean latents) of (B, 3, H, W) images in [0, 1]."""
        latents = self.vae.encode(images * 2.0 - 1.0).latent_dist.mode()
        decoded = self.vae.decode(latents).sample
        return ((decoded.float() + 1.0) / 2.0).clamp(0.0, 1.0), latents

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images = batch["image"]
        with self.averaged():
            decoded, _ = self.reconstruct(images)
            # The scaling factor reads posterior samples, as SD's did.
            samples = self.vae.encode(images * 2.0 - 1.0).latent_dist.sample().float()
        self.val_psnr.update(reconstruction_psnr(decoded, images.float()))
        self.val_sum.update(samples.mean(), weight=samples.numel())
        self.val_sum_sq.update(samples.pow(2).mean(), weight=samples.numel())
        self.log("val/psnr", self.val_psnr, prog_bar=True, batch_size=images.shape[0])

    def on_validation_epoch_end(self) -> None:
        mean, mean_sq = self.val_sum.compute(), self.val_sum_sq.compute()
        std = (mean_sq - mean**2).clamp(min=1e-12).sqrt()
        self.latent_std.copy_(std)
        self.log("val/latent_std", std)
        self.val_sum.reset()
        self.val_sum_sq.reset()

    def log_images(self, batch: dict[str, Any], outputs: Any) -> dict[str, torch.Tensor]:
        """Grid columns for ``callbacks.image_grid.ImageGrid``: image, reconstruction, 4x error."""
        images = batch["image"][:8]
        with self.averaged():
            decoded, _ = self.reconstruct(images)
        error = ((decoded - images.float()).abs() * 4).clamp(0, 1)
        return {"image": images, "reconstruction": decoded, "error x4": error}

    def configure_optimizers(self) -> dict[str, Any]:
        parameters = [p for p in self.vae.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.hparams.learning_rate,
                                      weight_decay=self.hparams.weight_decay, betas=(0.9, 0.99))
        total = self.trainer.estimated_stepping_batches
        scheduler = cosine_schedule_with_warmup(
            optimizer, self.hparams.warmup_steps, int(total), final_fraction=self.hparams.final_lr_fraction
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def export_vae(checkpoint: str | Path, out: str | Path, use_ema: bool = True) -> Path:
    """Write a checkpoint's VAE as a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``),
    with ``scaling_factor`` set to 1 / the latent std measured at its last validation."""
    module, _ = load_system(checkpoint, lambda hparams, state: AutoencoderKLModule(**hparams), "AutoencoderKLModule")
    std = float(module.latent_std)
    with module.averaged() if use_ema else nullcontext():
        module.vae.register_to_config(scaling_factor=round(1.0 / std, 5))
        out = Path(out)
        module.vae.save_pretrained(out, safe_serialization=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.autoencoder_kl",
                                     description="Export a trained AutoencoderKL as a diffusers folder.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="checkpoint -> diffusers AutoencoderKL folder with its scaling_factor")
    export.add_argument("--ckpt", required=True, help="the .ckpt to export")
    export.add_argument("--out", required=True, help="destination folder")
    export.add_argument("--no-ema", action="store_true", help="save the training weights, not the EMA")
    args = parser.parse_args(argv)
    folder = export_vae(args.ckpt, args.out, use_ema=not args.no_ema)
    vae = AutoencoderKL.from_pretrained(folder)
    print(f"wrote {folder} (scaling_factor {vae.config.scaling_factor})")


if __name__ == "__main__":
    run_command(main)
