"""Training a Stable Diffusion UNet in a frozen VAE's latent space: text-to-image, then inpainting.

    python train.py fit --config configs/shapes/stable_diffusion_unet.yaml
    python train.py fit --config configs/shapes/stable_diffusion_inpainting.yaml
    python -m lightning_modules.stable_diffusion export --ckpt CKPT --out pretrained/shapes_stable_diffusion

``components`` names a Stable Diffusion repo or folder whose VAE, text encoder, tokenizer and scheduler are used
frozen, as SD trains its UNet; ``unet`` is a config dict (a new UNet) or a repo/folder to fine-tune. The same
systems fine-tune SD 1.5 by hub id. ``export`` is defined here (it rebuilds a system from its checkpoint); the other
commands (``components``, ``grid``, ``evaluate``) are in ``interpedit.stable_diffusion.cli``.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from lightning.pytorch import LightningModule

from interpedit.backbones import load_diffusers_model
from interpedit.backbones.stable_diffusion import INPAINTING_IN_CHANNELS, load_stable_diffusion
from interpedit.diffusion import EMA, NoiseSchedule, diffusion_loss, min_snr_weights, training_target
from interpedit.optim import cosine_schedule_with_warmup
from interpedit.stable_diffusion.inpainting_masks import MASK_KINDS, random_inpainting_masks
from interpedit.stable_diffusion.inpainting_unet import (
    inpainting_conditioning,
    inpainting_model_input,
    inpainting_unet_from,
)
from interpedit.stable_diffusion.latents import encode_images
from interpedit.stable_diffusion.sampling import sample_images
from interpedit.stable_diffusion.text_conditioning import encode_prompts
from interpedit.user_errors import OptionError, run_command
from lightning_modules.checkpoints import load_system


def build_unet(unet: str | dict[str, Any]) -> UNet2DConditionModel:
    """A UNet by hub id or folder (a Stable Diffusion repo's ``unet`` subfolder), or a new one from a config dict."""
    if isinstance(unet, str):
        return load_diffusers_model(UNet2DConditionModel, unet, subfolder="unet")
    return UNet2DConditionModel.from_config(dict(unet))


class TextToImageModule(LightningModule):
    """Trains a text-conditioned UNet on (image, caption) batches with SD's epsilon objective.

    Each step encodes the images with the frozen VAE (a posterior sample times ``scaling_factor``), replaces a
    ``caption_dropout`` share of the captions with the empty prompt (classifier-free guidance), encodes the captions
    as the diffusers pipelines do (``encode_prompts``), and regresses the noise at a uniform timestep.

    Args:
        components: Stable Diffusion repo or folder providing the frozen ``vae``, ``text_encoder``, ``tokenizer`` and
            ``scheduler`` (its training schedule).
        unet: a ``UNet2DConditionModel`` config dict for a new UNet, or a repo/folder whose ``unet`` to fine-tune.
        caption_dropout: share of captions replaced by ``""`` (SD: 0.1).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up before the cosine decay.
        final_lr_fraction: the cosine decay ends at this fraction of the learning rate.
        min_snr_gamma: Min-SNR-gamma loss weighting (Hang et al. 2023); None for SD's plain epsilon MSE.
        snr_floor: with ``min_snr_gamma``, the lower clamp of the x0-space weight (``min_snr_weights(floor=...)``):
            it raises the weight of the noisiest timesteps, where the layout of a sample is decided; None for none.
        ema_decay: decay of an EMA of the UNet used for validation and export; None turns it off.
        ema_warmup: EMA warm-up (see ``interpedit.diffusion.EMA``).
        seed: seed of the per-step noise, timesteps and dropout, so a resumed run draws what an unbroken one would.
        val_steps: DDIM steps of the validation samples.
        val_guidance_scale: classifier-free guidance scale of the validation samples.
        val_samples: validation samples drawn into the image grid.
    """

    def __init__(
        self,
        components: str,
        unet: str | dict[str, Any],
        caption_dropout: float = 0.1,
        learning_rate: float = 2e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 200,
        final_lr_fraction: float = 0.1,
        min_snr_gamma: float | None = 5.0,
        snr_floor: float | None = None,
        ema_decay: float | None = 0.999,
        ema_warmup: int = 1,
        seed: int = 0,
        val_steps: int = 25,
        val_guidance_scale: float = 4.0,
        val_samples: int = 8,
    ) -> None:
        super().__init__()
        if not 0.0 <= caption_dropout <= 1.0:
            raise OptionError(f"{type(self).__name__}.caption_dropout: {caption_dropout} is outside [0, 1]")
        if snr_floor is not None and (min_snr_gamma is None or not 0.0 < snr_floor < min_snr_gamma):
            raise OptionError(f"{type(self).__name__}.snr_floor: {snr_floor} needs min_snr_gamma and must lie in "
                              f"(0, min_snr_gamma={min_snr_gamma})")
        self.save_hyperparameters()
        frozen = load_stable_diffusion(components, components=("vae", "text_encoder", "tokenizer", "scheduler"))
        self.vae = frozen.vae.eval().requires_grad_(False)
        self.text_encoder = frozen.text_encoder.eval().requires_grad_(False)
        self.tokenizer = frozen.tokenizer
        self.scheduler = frozen.scheduler
        self.schedule = NoiseSchedule.from_scheduler(self.scheduler)
        # A UNet loaded with from_pretrained comes in eval mode; Lightning keeps the modes it finds.
        self.unet = self.build_trainable_unet(unet).train()
        self.ema = EMA(self.unet, decay=ema_decay, warmup=ema_warmup) if ema_decay is not None else None
        self._ema_step = 0

    def build_trainable_unet(self, unet: str | dict[str, Any]) -> UNet2DConditionModel:
        """The UNet this system trains (a text-to-image one here)."""
        model = build_unet(unet)
        if model.config.in_channels == INPAINTING_IN_CHANNELS:
            raise OptionError(f"{type(self).__name__}.unet: an inpainting UNet; use InpaintingModule")
        return model

    # ------------------------------------------------------------------ training
    def step_generator(self, batch_idx: int) -> torch.Generator:
        """CPU generator for this batch's noise, timesteps and dropout, from (seed, step, batch, rank)."""
        seed = ((self.hparams.seed * 1_000_003 + self.global_step) * 10_007 + batch_idx) * 1_009 + self.global_rank
        return torch.Generator().manual_seed(seed)

    def train(self, mode: bool = True) -> TextToImageModule:
        super().train(mode)
        self.vae.eval()  # frozen parts stay in inference behaviour
        self.text_encoder.eval()
        return self

    @torch.no_grad()
    def prompt_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """(B, L, D) embeddings of ``prompts``, as the pipelines compute them."""
        return encode_prompts(self.tokenizer, self.text_encoder, prompts)

    def extra_inputs(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Extra UNet input channels for this batch (inpainting's mask and masked-image latents); None here."""
        return None

    def model_input(self, noisy: torch.Tensor, extra: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        return noisy if extra is None else inpainting_model_input(noisy, *extra)

    def denoising_loss(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """The epsilon-prediction loss of a batch (``image`` (B, 3, H, W) in [0, 1], ``caption`` B strings)."""
        images = batch["image"]
        size = images.shape[0]
        with torch.no_grad():
            device_generator = torch.Generator(device=self.device).manual_seed(
                int(torch.randint(2**62, (), generator=generator))
            )
            latents = encode_images(self.vae, images, sample=True, generator=device_generator)
        dropped = torch.rand(size, generator=generator) < self.hparams.caption_dropout
        prompts = ["" if drop else caption for caption, drop in zip(batch["caption"], dropped.tolist())]
        context = self.prompt_embeddings(prompts)
        extra = self.extra_inputs(batch, generator)
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        t = self.schedule.sample_timesteps(size, generator=generator).to(self.device)
        noisy = self.schedule.add_noise(latents, noise, t)
        output = self.unet(self.model_input(noisy, extra), t, encoder_hidden_states=context).sample
        weights = None
        if self.hparams.min_snr_gamma is not None:
            weights = min_snr_weights(self.schedule, t, self.hparams.min_snr_gamma, floor=self.hparams.snr_floor)
        return diffusion_loss(output, training_target(self.schedule, latents, noise, t), weights, self.pixel_weights(extra))

    def pixel_weights(self, extra: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
        """Per-latent-pixel loss weights (B, 1, h, w) for ``diffusion_loss``'s soft mask; None weighs all alike."""
        return None

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.denoising_loss(batch, self.step_generator(batch_idx))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_start(self) -> None:
        self._ema_step = self.global_step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None and self.global_step != self._ema_step:
            self._ema_step = self.global_step
            self.ema.update()

    def averaged(self):
        """Context in which ``self.unet`` holds the EMA weights (a no-op without an EMA)."""
        return self.ema.swapped_in() if self.ema is not None else nullcontext()

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        generator = torch.Generator().manual_seed(self.hparams.seed + batch_idx)
        with self.averaged():
            loss = self.denoising_loss(batch, generator)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0], sync_dist=True)

    @torch.no_grad()
    def samples(self, batch: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
        """Grid columns: the real scenes and samples for their captions at the validation guidance scale."""
        count = min(self.hparams.val_samples, batch["image"].shape[0])
        captions = list(batch["caption"][:count])
        with self.averaged():
            images = sample_images(
                self.unet, self.vae, self.tokenizer, self.text_encoder, self.scheduler, captions,
                steps=self.hparams.val_steps, guidance_scale=self.hparams.val_guidance_scale, seed=seed,
                latent_size=batch["image"].shape[-1] // (2 ** (len(self.vae.config.block_out_channels) - 1)),
            )
        return {"real": batch["image"][:count].float(), f"sample (cfg {self.hparams.val_guidance_scale:g})": images}

    def log_images(self, batch: dict[str, Any], outputs: Any) -> dict[str, torch.Tensor]:
        """For ``callbacks.image_grid.ImageGrid``."""
        return self.samples(batch, seed=self.hparams.seed)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            [p for p in self.unet.parameters() if p.requires_grad],
            lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay,
        )
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(f"{type(self).__name__} needs a finite schedule: set trainer.max_steps")
        scheduler = cosine_schedule_with_warmup(
            optimizer, self.hparams.warmup_steps, int(total), final_fraction=self.hparams.final_lr_fraction
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class InpaintingModule(TextToImageModule):
    """Fine-tunes an inpainting UNet: input ``[noisy latents, mask, masked-image latents]`` (SD-inpainting's layout).

    ``unet`` is usually the text-to-image pipeline (folder or hub id): its UNet gets 5 zero-initialised input
    channels (``inpainting_unet_from``), as SD-2-inpainting was made from SD-2-base. An existing 9-channel UNet is
    fine-tuned as it is. Masks are drawn per scene by ``random_inpainting_masks`` from the batch's object masks
    (``masks`` (B, K, H, W), ``region_valid`` (B, K)); the caption is the whole scene's.

    Args:
        mask_probabilities: of the mask kinds ``object``, ``object_box``, ``random_box``, ``full``.
        object_dilation: pixels by which object masks grow.
        box_margin: range of the margin added around object boxes, in pixels.
        random_box_side: range of random boxes' sides, as a fraction of the image side.
        known_region_weight: loss weight of the latent pixels outside the mask (the known region, which the UNet
            should copy from the masked-image latents) relative to those inside; 1 weighs all alike, as SD does.
        **kwargs: see ``TextToImageModule``.
    """

    def __init__(
        self,
        components: str,
        unet: str | dict[str, Any],
        mask_probabilities: tuple[float, float, float, float] = (0.35, 0.3, 0.25, 0.1),
        object_dilation: int = 2,
        box_margin: tuple[int, int] = (0, 6),
        random_box_side: tuple[float, float] = (0.15, 0.6),
        known_region_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if len(mask_probabilities) != len(MASK_KINDS):
            raise OptionError(f"InpaintingModule.mask_probabilities: need one value for each of {MASK_KINDS}")
        if not known_region_weight > 0:
            raise OptionError(f"InpaintingModule.known_region_weight: {known_region_weight} must be > 0")
        super().__init__(components, unet, **kwargs)
        self.save_hyperparameters()

    def build_trainable_unet(self, unet: str | dict[str, Any]) -> UNet2DConditionModel:
        model = build_unet(unet)
        return model if model.config.in_channels == INPAINTING_IN_CHANNELS else inpainting_unet_from(model)

    def training_masks(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """(B, H, W) float masks, 1 where the model repaints."""
        masks, _ = random_inpainting_masks(
            batch["masks"], batch["region_valid"], generator,
            probabilities=self.hparams.mask_probabilities, object_dilation=self.hparams.object_dilation,
            box_margin=tuple(self.hparams.box_margin), random_box_side=tuple(self.hparams.random_box_side),
        )
        return masks

    def pixel_weights(self, extra: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
        weight = self.hparams.known_region_weight
        if extra is None or weight == 1.0:
            return None
        latent_masks = extra[0]  # (B, 1, h, w), 1 where the UNet repaints
        # diffusion_loss takes weights in [0, 1] and normalises by their sum, so only the ratio matters.
        return (latent_masks + weight * (1.0 - latent_masks)) / max(weight, 1.0)

    @torch.no_grad()
    def extra_inputs(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        masks = self.training_masks(batch, generator)
        device_generator = torch.Generator(device=self.device).manual_seed(
            int(torch.randint(2**62, (), generator=generator))
        )
        return inpainting_conditioning(self.vae, batch["image"], masks, generator=device_generator)

    @torch.no_grad()
    def samples(self, batch: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
        """Grid columns: the scene, the mask, and the masked part repainted with the scene's own caption."""
        count = min(self.hparams.val_samples, batch["image"].shape[0])
        small = {key: value[:count] for key, value in batch.items() if key in ("image", "masks", "region_valid")}
        masks = self.training_masks(small, torch.Generator().manual_seed(seed))
        latent_masks, masked_latents = inpainting_conditioning(self.vae, small["image"], masks)
        with self.averaged():
            images = sample_images(
                self.unet, self.vae, self.tokenizer, self.text_encoder, self.scheduler, list(batch["caption"][:count]),
                steps=self.hparams.val_steps, guidance_scale=self.hparams.val_guidance_scale, seed=seed,
                latent_size=latent_masks.shape[-1], inpainting=(latent_masks, masked_latents),
            )
        return {"image": small["image"].float(), "mask": masks[:, None].expand(-1, 3, -1, -1), "inpainted": images}


# ---------------------------------------------------------------------- command line
def load_checkpoint_module(checkpoint: str | Path) -> TextToImageModule:
    """Rebuild the system a ``.ckpt`` was written by (text-to-image or inpainting) and load its weights."""

    def build(hparams: dict[str, Any], state: dict[str, Any]) -> TextToImageModule:
        cls = InpaintingModule if "mask_probabilities" in hparams else TextToImageModule
        if cls is InpaintingModule:
            # The trained weights already have 9 input channels: build the UNet from the saved ones' config.
            hparams["unet"] = _unet_config_from_state(state["state_dict"], hparams["unet"])
        return cls(**hparams)

    module, state = load_system(checkpoint, build, "a Stable Diffusion system")
    module.trained_steps = int(state.get("global_step", 0))
    return module


def _unet_config_from_state(state_dict: dict[str, torch.Tensor], unet: str | dict[str, Any]) -> dict[str, Any]:
    base = build_unet(unet)
    config = dict(base.config)
    config["in_channels"] = int(state_dict["unet.conv_in.weight"].shape[1])
    return {key: value for key, value in config.items() if not key.startswith("_")}


def export_pipeline(checkpoint: str | Path, out: str | Path, use_ema: bool = True) -> Path:
    """Write a diffusers pipeline folder (``StableDiffusionPipeline`` or ``StableDiffusionInpaintPipeline``) from
    a checkpoint: the trained UNet (its EMA weights where kept) with the frozen components it was trained with."""
    from interpedit.backbones.stable_diffusion import StableDiffusionComponents
    from interpedit.stable_diffusion.pipeline_folder import save_pipeline_folder

    module = load_checkpoint_module(checkpoint)
    with module.averaged() if use_ema else nullcontext():
        components = StableDiffusionComponents(
            vae=module.vae, text_encoder=module.text_encoder, tokenizer=module.tokenizer, unet=module.unet,
            scheduler=module.scheduler, source=str(checkpoint),
        )
        return save_pipeline_folder(components, out)


def main(argv: list[str] | None = None) -> None:
    from interpedit.stable_diffusion import cli

    cli.main(argv, export=export_pipeline)


if __name__ == "__main__":
    run_command(main)
