"""Unpaired training of the region-feature autoencoder (encode one view, decode another)."""

from __future__ import annotations

import argparse
import pickle
from contextlib import nullcontext
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from lightning.pytorch import LightningModule

from interpedit.backbones import load_diffusers_model, load_scheduler
from interpedit.diffusion import DEFAULT_LORA_TARGETS, EMA, add_unet_lora
from interpedit.optim import cosine_schedule_with_warmup
from interpedit.shapes.scene import SceneConfig
from interpedit.region import RegionEncoder, RegionTokenSet, region_positions
from interpedit.region.demo_edits import demo_edits
from interpedit.region.region_autoencoder import RegionAutoencoder
from interpedit.evaluation.labelled_grid import save_labelled_grid
from interpedit.region.pretrained import WEIGHTS_NAME, load_region_autoencoder, PretrainedFormatError, instantiate_spec, save_region_autoencoder, without_pretrained_backbone
from interpedit.region.region_dropout import blank_regions, keep_random_subset, unknown_pixels
from interpedit.user_errors import MissingFileError, run_command


UNET_TRAINING_MODES = ("full", "cross_attention", "lora")


def build_unet(unet: str | dict[str, Any]) -> UNet2DConditionModel:
    """A UNet by hub id or folder (Stable Diffusion: its ``unet`` subfolder), or from a config dict (random init)."""
    if isinstance(unet, str):
        return load_diffusers_model(UNet2DConditionModel, unet, subfolder="unet")
    return UNet2DConditionModel.from_config(dict(unet))


def build_scheduler(scheduler: str | dict[str, Any]) -> DDIMScheduler:
    """A DDIM scheduler by hub id or folder (its ``scheduler`` subfolder), or from a config dict."""
    if isinstance(scheduler, str):
        return load_scheduler(DDIMScheduler, scheduler)
    return DDIMScheduler.from_config(dict(scheduler))


def centred_cosine_distance(first: torch.Tensor, second: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between two encodings of the same regions, after removing the tokens' common direction.

    Plain cosine is satisfied by tokens that share one large component, which makes every region's token alike
    and the decoder unable to tell them apart. Subtracting the mean token of the compared pairs (detached, over
    both encodings) leaves only what tells regions apart to be matched.

    Args:
        first, second: (B, K, D) appearance tokens of the two encodings.
        pairs: (B, K) bool, regions present in both.
    """
    weights = pairs.float()
    count = weights.sum().clamp(min=1.0)
    mean = ((first + second) * weights[..., None]).sum(dim=(0, 1)).detach() / (2 * count)
    cosine = F.cosine_similarity(first - mean, second - mean, dim=-1)
    return ((1.0 - cosine) * weights).sum() / count


class RegionAutoencoderModule(LightningModule):
    """The region autoencoder as a Lightning system.

    Each step encodes the *source* view with a random subset of its regions kept (the others blanked), and decodes
    the *target* view from those tokens placed at each region's position **in the target view**, so flips and
    crops teach position control. Target pixels of regions with no token (dropped, or absent from the source
    view) are left out of the loss with ``infill_loss="masked"``: no token speaks for them. A second encoding of
    the target view with another region subset gives the feature-consistency loss (1 - cos between the two
    appearance tokens of each region kept in both, centred: see :func:`centred_cosine_distance`), so that a region's token does not depend on its neighbours
    or on the view.

    Args:
        encoder: the region encoder (``class_path: interpedit.region.RegionEncoder``).
        unet: UNet hub id/folder (e.g. Stable Diffusion's, subfolder ``unet``) or a config dict for a new UNet.
        scheduler: scheduler hub id/folder (subfolder ``scheduler``) or a DDIMScheduler config dict.
        vae: AutoencoderKL hub id/folder (subfolder ``vae``) for latent diffusion; None decodes pixels.
        unet_training: ``full`` fine-tunes the UNet, ``cross_attention`` trains only its cross-attention layers,
            ``lora`` freezes it and trains LoRA adapters (peft, through diffusers' ``add_adapter``).
        unet_lora_rank: LoRA rank for ``unet_training: lora``.
        unet_lora_alpha: LoRA alpha (scale alpha / rank); None means the rank (scale 1).
        unet_lora_dropout: dropout on the adapters' input.
        unet_lora_modules: the UNet's linear layers that get adapters (default: every attention projection).
        coordinate_channels: give the UNet each pixel's coordinates as two extra input channels (a UNet trained
            from scratch, with ``in_channels`` = image channels + 2); see ``RegionAutoencoder``.
        layout_channels: also paint the region tokens at their positions into this many extra UNet input channels
            (``interpedit.region.token_layout``); 0 turns it off.
        layout_shape: ``disc`` paints each region as a disc from its position; ``silhouette`` paints its outline
            (``interpedit.region.region_silhouettes``) at its position, so the decoder gets the regions' shapes too.
        silhouette_size: side of the silhouettes in samples (``layout_shape: silhouette``).
        silhouette_extent: half-side of a silhouette's frame as a multiple of the region's size.
        init_from: a ``.ckpt`` of this module to start from (weights and EMA, not the optimiser or the step): a new
            schedule on top of a trained model, e.g. to switch ``layout_shape``, whose weights have the same shapes.
        learning_rate: AdamW learning rate for the effective batch size (it does not change with the GPU count).
        encoder_lr_multiplier: learning-rate factor for the region encoder's and the conditioning's trainable
            parameters (mostly new layers, next to a pretrained UNet).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up before the cosine decay.
        min_keep_fraction: region dropout keeps between this fraction and all of a sample's regions.
        blank_fill: value written into dropped regions' pixels at the encoder input.
        infill_loss: ``masked`` leaves target pixels of token-less regions out of the loss; ``full`` keeps them.
        consistency_weight: weight of the feature-consistency loss once warmed up.
        consistency_warmup_steps: steps of linear warm-up of that weight.
        cfg_dropout: probability of replacing a sample's whole conditioning with the unconditional one.
        ema_decay: decay of an EMA of the trainable weights, used for validation and edits; None turns it off.
        ema_warmup: EMA warm-up: the decay at update n is min(ema_decay, (1 + n) / (1 + n + ema_warmup)).
        gradient_checkpointing: recompute UNet activations in the backward pass to save memory.
        seed: seed of the per-step noise, so a resumed run draws what an unbroken one would.
        val_decode_steps: DDIM steps for the reconstructions drawn in validation.
        val_cfg_scale: guidance scale for those reconstructions.
    """

    def __init__(
        self,
        encoder: RegionEncoder,
        unet: str | dict[str, Any],
        scheduler: str | dict[str, Any],
        vae: str | None = None,
        unet_training: str = "full",
        unet_lora_rank: int = 16,
        unet_lora_alpha: float | None = None,
        unet_lora_dropout: float = 0.0,
        unet_lora_modules: Sequence[str] = DEFAULT_LORA_TARGETS,
        coordinate_channels: bool = False,
        layout_channels: int = 0,
        layout_shape: str = "disc",
        silhouette_size: int = 32,
        silhouette_extent: float = 1.5,
        init_from: str | None = None,
        learning_rate: float = 2e-4,
        encoder_lr_multiplier: float = 1.0,
        weight_decay: float = 0.01,
        warmup_steps: int = 500,
        min_keep_fraction: float = 0.5,
        blank_fill: float = 0.5,
        infill_loss: str = "masked",
        consistency_weight: float = 1.0,
        consistency_warmup_steps: int = 2000,
        cfg_dropout: float = 0.1,
        ema_decay: float | None = None,
        ema_warmup: int = 0,
        gradient_checkpointing: bool = False,
        seed: int = 0,
        val_decode_steps: int = 25,
        val_cfg_scale: float = 2.0,
    ) -> None:
        super().__init__()
        for name, value, allowed in (("unet_training", unet_training, UNET_TRAINING_MODES),
                                     ("infill_loss", infill_loss, ("masked", "full"))):
            if value not in allowed:
                raise ValueError(f"RegionAutoencoderModule.{name}: {value!r} is not one of {', '.join(allowed)}")
        self.save_hyperparameters(ignore=["encoder"])
        vae_model = load_diffusers_model(AutoencoderKL, vae, subfolder="vae") if vae is not None else None
        self.model = RegionAutoencoder(
            encoder, build_unet(unet), build_scheduler(scheduler), vae=vae_model,
            coordinate_channels=coordinate_channels, layout_channels=layout_channels, layout_shape=layout_shape,
            silhouette_size=silhouette_size, silhouette_extent=silhouette_extent,
        )
        if unet_training == "cross_attention":
            self.model.unet.requires_grad_(False)
            for name, parameter in self.model.unet.named_parameters():
                if ".attn2." in name:
                    parameter.requires_grad_(True)
        elif unet_training == "lora":
            try:
                add_unet_lora(self.model.unet, unet_lora_rank, unet_lora_alpha, unet_lora_dropout, unet_lora_modules)
            except ValueError as exc:
                raise ValueError(f"RegionAutoencoderModule.unet_lora_*: {exc}") from exc
        if gradient_checkpointing:
            self.model.unet.enable_gradient_checkpointing()
        self.ema = EMA(self.model, decay=ema_decay, warmup=ema_warmup) if ema_decay is not None else None
        self._ema_step = 0
        if init_from is not None:
            self.load_weights(init_from)

    def load_weights(self, checkpoint: str | Path) -> None:
        """Start from a ``.ckpt`` of this module (``init_from``): its EMA weights when it kept an EMA (what its
        validation and exports used), else its raw weights; this module's EMA restarts from them."""
        path = Path(checkpoint)
        if not path.is_file():
            raise MissingFileError(f"RegionAutoencoderModule.init_from: no checkpoint at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        except (KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as exc:
            raise ValueError(f"{path}: not a Lightning checkpoint with a 'state_dict' ({exc})") from exc
        parts = {prefix: {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
                 for prefix in ("model.", "ema.")}
        try:
            self.model.load_state_dict(parts["model."])
            if parts["ema."]:
                averaged = EMA(self.model, decay=0.0)
                averaged.load_state_dict(parts["ema."])
                with torch.no_grad():
                    averaged.copy_to(self.model)
        except RuntimeError as exc:
            raise ValueError(
                f"{path}: its 'state_dict' does not fit this model; init_from needs a checkpoint of the same "
                f"architecture ({str(exc).splitlines()[0]})"
            ) from exc
        if self.ema is not None:
            self.ema = EMA(self.model, decay=self.hparams.ema_decay, warmup=self.hparams.ema_warmup)

    # ------------------------------------------------------------------ training
    def step_generator(self, batch_idx: int) -> torch.Generator:
        """Noise, timesteps and region subsets of this batch, from (seed, step, batch, rank): a resumed run draws
        what an unbroken one would, and accumulated micro-batches of one step draw differently."""
        seed = ((self.hparams.seed * 1_000_003 + self.global_step) * 10_007 + batch_idx) * 1_009 + self.global_rank
        return torch.Generator(device=self.device).manual_seed(seed)

    def losses(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Diffusion and consistency losses of a paired-view batch (``source_*``/``target_*`` keys)."""
        h = self.hparams
        source_masks, target_masks = batch["source_masks"], batch["target_masks"]
        source_valid, target_valid = batch["source_region_valid"], batch["target_region_valid"]
        keep = keep_random_subset(source_valid, h.min_keep_fraction, generator)
        other_keep = keep_random_subset(target_valid, h.min_keep_fraction, generator)
        # Both encodings in one batched call: the source view with the kept regions (decoded below), and the target
        # view with another subset (for the consistency loss).
        both = self.model.encode(
            torch.cat([blank_regions(batch["source_image"], source_masks, source_valid & ~keep, h.blank_fill),
                       blank_regions(batch["target_image"], target_masks, target_valid & ~other_keep, h.blank_fill)]),
            torch.cat([source_masks, target_masks]),
            torch.cat([keep, other_keep]),
        )
        encoded_appearance, other_appearance = both.appearance.chunk(2)
        conditioned = keep & target_valid
        # Positions (and silhouettes) come from the view being decoded, not the one encoded.
        target_positions = region_positions(target_masks)
        silhouettes = self.model.silhouettes(target_masks, target_positions)
        tokens = RegionTokenSet(encoded_appearance, target_positions, conditioned, silhouettes)
        states = self.model.condition(tokens)
        dropped = torch.rand(states.shape[0], generator=generator, device=self.device) < h.cfg_dropout
        states = torch.where(dropped[:, None, None], self.model.unconditional(states), states)
        layout = None
        if self.model.layout is not None:
            side = batch["target_image"].shape[-1] // self.model.vae_scale_factor
            layout = self.model.token_layout(tokens, side, side)
            layout = torch.where(dropped[:, None, None, None], torch.zeros_like(layout), layout)
        loss_mask = None
        if h.infill_loss == "masked":
            loss_mask = ~unknown_pixels(target_masks, target_valid & ~conditioned) | dropped[:, None, None]
        diffusion = self.model.denoising_loss(
            batch["target_image"], states, loss_mask=loss_mask, generator=generator, layout=layout
        )

        shared = keep & other_keep
        consistency = centred_cosine_distance(encoded_appearance.float(), other_appearance.float(), shared)
        return {"diffusion": diffusion, "consistency": consistency, "conditioned_regions": conditioned.float().sum(1).mean()}

    def consistency_weight(self) -> float:
        warmup = max(1, self.hparams.consistency_warmup_steps)
        return self.hparams.consistency_weight * min(1.0, self.global_step / warmup)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch, self.step_generator(batch_idx))
        weight = self.consistency_weight()
        loss = losses["diffusion"] + weight * losses["consistency"]
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/diffusion_loss", losses["diffusion"])
        self.log("train/consistency_loss", losses["consistency"])
        self.log("train/consistency_weight", weight)
        self.log("train/conditioned_regions", losses["conditioned_regions"])
        return loss

    def on_train_start(self) -> None:
        self._ema_step = self.global_step  # also after a resume

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Once per optimiser step, not per accumulated micro-batch.
        if self.ema is not None and self.global_step != self._ema_step:
            self._ema_step = self.global_step
            self.ema.update()

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator(device=self.device).manual_seed(self.hparams.seed + batch_idx)
        with self.ema.swapped_in() if self.ema is not None else nullcontext():
            losses = self.losses(batch, generator)
        size = batch["target_image"].shape[0]
        self.log("val/diffusion_loss", losses["diffusion"], batch_size=size, sync_dist=True)
        self.log("val/consistency_loss", losses["consistency"], batch_size=size, sync_dist=True)
        return losses

    @torch.no_grad()
    def edits(self, batch: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
        """Reconstruct, move, remove and swap of the batch's ``image`` (``interpedit.region.demo_edits``): region 0
        moves across the image, is removed, and trades appearance with region 1. Uses the EMA weights when kept."""
        h = self.hparams
        with self.ema.swapped_in() if self.ema is not None else nullcontext():
            return demo_edits(
                self.model, batch["image"], batch["masks"], batch["region_valid"],
                steps=h.val_decode_steps, cfg_scale=h.val_cfg_scale, seed=seed,
            )

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """The :meth:`edits` of a batch of scenes (``image``, ``masks``, ``region_valid``)."""
        return self.edits(batch, seed=self.hparams.seed + batch_idx)

    def log_images(self, batch: dict[str, Any], outputs: Any) -> dict[str, torch.Tensor]:
        """Grid columns for ``callbacks.image_grid.ImageGrid``: the image, its regions, the reconstruction and the
        move/remove/swap edits of its first region."""
        count = min(8, batch["image"].shape[0])
        small = {key: value[:count] for key, value in batch.items() if isinstance(value, torch.Tensor)}
        regions = small["masks"].float().argmax(dim=1, keepdim=True).float() / max(1, small["masks"].shape[1] - 1)
        columns = self.edits(small, seed=self.hparams.seed)
        return {"image": columns.pop("source"), "regions": regions.expand(-1, 3, -1, -1), **columns}

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        new_layers = [*self.model.encoder.parameters(), *self.model.conditioning.parameters()]
        new_params = [p for p in new_layers if p.requires_grad]
        new_ids = {id(p) for p in new_params}
        unet_params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in new_ids]
        lr = self.hparams.learning_rate
        optimizer = torch.optim.AdamW(
            [{"params": unet_params, "lr": lr},
             {"params": new_params, "lr": lr * self.hparams.encoder_lr_multiplier}],
            weight_decay=self.hparams.weight_decay,
        )
        total = self.trainer.estimated_stepping_batches
        scheduler = cosine_schedule_with_warmup(optimizer, self.hparams.warmup_steps, int(total), final_fraction=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ---------------------------------------------------------------------- export
def export_pretrained(
    checkpoint: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    use_ema: bool = True,
    dtype: str = "float32",
) -> Path:
    """Write a training checkpoint as a ``interpedit.region.pretrained`` folder (JSON + safetensors).

    Args:
        checkpoint: a ``.ckpt`` written by ``train.py fit`` with this module.
        out: destination folder.
        config: the run's ``config.yaml`` (LightningCLI writes it into the log directory); default: the newest
            ``lightning_logs/version_*/config.yaml`` next to the checkpoint's ``checkpoints/`` folder.
        use_ema: save the EMA weights when the run kept an EMA.
        dtype: ``float32``, or ``float16``/``bfloat16`` to halve the file (loading casts back to float32).
    """
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"export: dtype {dtype!r} is not one of float32, float16, bfloat16")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise MissingFileError(f"{checkpoint}: no such checkpoint file (--ckpt)")
    config_path = Path(config) if config is not None else _run_config(checkpoint)
    with open(config_path) as handle:
        run_config = yaml.safe_load(handle)
    try:
        model_spec = run_config["model"]
        if model_spec["class_path"].rpartition(".")[2] != RegionAutoencoderModule.__name__:
            raise PretrainedFormatError(config_path, f"model.class_path is {model_spec['class_path']!r}, not a region autoencoder")
        init_args = dict(model_spec["init_args"])
        encoder_spec = init_args.pop("encoder")
        init_args.pop("init_from", None)  # the checkpoint holds the trained weights
    except (KeyError, TypeError) as exc:
        raise PretrainedFormatError(config_path, f"missing field model.init_args.encoder ({exc})") from exc
    module = RegionAutoencoderModule(instantiate_spec(without_pretrained_backbone(encoder_spec), source=config_path, where="model.init_args.encoder"), **init_args)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    module.load_state_dict(state["state_dict"])
    with module.ema.swapped_in() if (use_ema and module.ema is not None) else nullcontext():
        return save_region_autoencoder(
            module.model, out, encoder_spec,
            extra={"trained_steps": int(state.get("global_step", 0)), "ema": bool(use_ema and module.ema is not None)},
            dtype=getattr(torch, dtype),
        )


def _run_config(checkpoint: Path) -> Path:
    candidates = sorted(
        checkpoint.resolve().parent.parent.glob("lightning_logs/version_*/config.yaml"), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        raise MissingFileError(
            f"export: no lightning_logs/version_*/config.yaml next to {checkpoint.parent}; pass --config"
        )
    return candidates[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_modules.region_autoencoder",
        description="Export a region autoencoder checkpoint as a folder that interpedit.region.pretrained loads.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="checkpoint -> region_autoencoder.json + model.safetensors")
    export.add_argument("--ckpt", required=True, help="the .ckpt to export")
    export.add_argument("--out", required=True, help="destination folder")
    export.add_argument("--config", default=None, help="the run's config.yaml (default: found next to the ckpt)")
    export.add_argument("--no-ema", action="store_true", help="save the training weights, not the EMA")
    export.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                        help="stored precision of the weights (float16 halves the file)")
    grid = sub.add_parser("grid", help="PNG of reconstruct/move/remove/swap on held-out shapes scenes")
    grid.add_argument("--model", required=True, help="a region autoencoder folder (written by export)")
    grid.add_argument("--out", required=True, help="PNG file to write")
    grid.add_argument("--num-scenes", type=int, default=8, help="rows (test-split scenes with 2-4 objects)")
    grid.add_argument("--resolution", type=int, default=32, help="scene side in pixels (the model's)")
    grid.add_argument("--steps", type=int, default=25, help="DDIM steps")
    grid.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale")
    grid.add_argument("--seed", type=int, default=0, help="scene and noise seed")
    args = parser.parse_args(argv)
    if args.command == "export":
        folder = export_pretrained(args.ckpt, args.out, args.config, use_ema=not args.no_ema, dtype=args.dtype)
        size = (folder / WEIGHTS_NAME).stat().st_size / 2**20
        print(f"wrote {folder} ({WEIGHTS_NAME}: {size:.1f} MiB)")
    else:
        path = write_edit_grid(args.model, args.out, num_scenes=args.num_scenes, resolution=args.resolution,
                               steps=args.steps, cfg_scale=args.cfg_scale, seed=args.seed)
        print(f"wrote {path}")


def write_edit_grid(
    model: str | Path,
    out: str | Path,
    *,
    num_scenes: int = 8,
    resolution: int = 32,
    steps: int = 25,
    cfg_scale: float = 1.0,
    seed: int = 0,
) -> Path:
    """Decode reconstruct/move/remove/swap of held-out shapes scenes (test split, 2-4 objects, solid or gradient
    backgrounds) with a saved region autoencoder and write them as a labelled PNG grid."""
    from datamodules.shapes import ShapesDataset

    network = load_region_autoencoder(str(model))
    scenes = SceneConfig(min_objects=2, max_objects=4, backgrounds=("solid", "gradient"))
    dataset = ShapesDataset("test", num_scenes=num_scenes, seed=seed, resolution=resolution, scene_config=scenes,
                            include_background_region=True)
    items = [dataset[i] for i in range(num_scenes)]
    batch = {key: torch.stack([item[key] for item in items]) for key in ("image", "masks", "region_valid")}
    columns = demo_edits(network, batch["image"], batch["masks"], batch["region_valid"],
                         steps=steps, cfg_scale=cfg_scale, seed=seed)
    return save_labelled_grid(columns, out)


if __name__ == "__main__":
    run_command(main)
