"""The region-feature autoencoder: region tokens in, a diffusers UNet decodes the image from them.

An image becomes a set of region tokens (``RegionEncoder``: appearance pooled per region, FiLM'd by an explicit
position); ``RegionConditioning`` puts them where a text-to-image UNet expects text tokens; the UNet denoises in
pixel space (the shapes world) or in a frozen VAE's latent space (Stable Diffusion). Usable from a notebook::

    model = RegionAutoencoder(encoder, unet, scheduler)
    tokens = model.encode(images, masks, valid).token_set()
    edited = model.decode(move_region(tokens, slot=0, centroid=(0.8, 0.2)), steps=50, cfg_scale=3.0, seed=0)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from interpedit.diffusion import (
    NoiseSchedule,
    ddim_sample,
    diffusion_loss,
    guided_denoiser,
    training_target,
    unet_denoiser,
)
from interpedit.region.region_conditioning import RegionConditioning
from interpedit.region.region_encoder import RegionEncoder, RegionEncoderOutput
from interpedit.region.region_silhouettes import region_silhouettes
from interpedit.region.token_edits import RegionTokenSet
from interpedit.region.token_layout import TokenLayout


class RegionAutoencoder(nn.Module):
    """Region encoder, conditioning and diffusion decoder.

    Args:
        encoder: the region encoder (its ``token_dim`` sets the conditioning's input width).
        unet: a diffusers ``UNet2DConditionModel``; its ``cross_attention_dim`` receives the region tokens.
        scheduler: a diffusers scheduler (DDPM/DDIM config) defining the noise schedule and prediction type.
        vae: a diffusers ``AutoencoderKL`` for latent diffusion, kept frozen; None decodes in pixel space.
        global_token: prepend a learned slot that is always present (a place for image-wide information).
        coordinate_channels: append two channels holding each pixel's ``x`` and ``y`` in [-1, 1] to the UNet's
            input (CoordConv), so that its cross-attention queries know where they are and can pick the region
            token whose explicit position matches. Only for UNets trained from scratch: their ``in_channels`` must
            be the image's (or latent's) channels plus 2.
        layout_channels: when positive, also paint the region tokens onto the pixel grid at their positions
            (``TokenLayout``) and append that many channels to the UNet's input; the unconditional input gets an
            empty (zero) layout. For UNets trained from scratch (``in_channels`` grows by this number).
        layout_shape: how a region covers the layout: ``disc`` (from its position alone) or ``silhouette`` (its
            outline, ``interpedit.region.region_silhouettes``, placed at its position; :meth:`encode` then adds
            silhouettes to the tokens).
        silhouette_size: side of the silhouettes in samples, for ``layout_shape="silhouette"``.
        silhouette_extent: half-side of a silhouette's frame as a multiple of the region's size.
    """

    def __init__(
        self,
        encoder: RegionEncoder,
        unet: nn.Module,
        scheduler: Any,
        vae: nn.Module | None = None,
        global_token: bool = True,
        coordinate_channels: bool = False,
        layout_channels: int = 0,
        layout_shape: str = "disc",
        silhouette_size: int = 32,
        silhouette_extent: float = 1.5,
    ) -> None:
        super().__init__()
        self.coordinate_channels = coordinate_channels
        self.layout = (
            TokenLayout(encoder.token_dim, layout_channels, shape=layout_shape, silhouette_size=silhouette_size,
                        silhouette_extent=silhouette_extent)
            if layout_channels > 0 else None
        )
        self.encoder = encoder
        self.unet = unet
        self.conditioning = RegionConditioning(encoder.token_dim, unet.config.cross_attention_dim, global_token)
        self.scheduler = scheduler
        self.schedule = NoiseSchedule.from_scheduler(scheduler)
        self.vae = vae
        self.vae_scale_factor = 1
        if vae is not None:
            vae.requires_grad_(False).eval()
            self.latent_scale = float(getattr(vae.config, "scaling_factor", 0.18215))
            # As diffusers pipelines compute it: each VAE level after the first halves the resolution.
            self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.data_channels = 4 if vae is not None else 3
        expected = self.data_channels + (2 if coordinate_channels else 0) + max(0, layout_channels)
        if unet.config.in_channels != expected:
            raise ValueError(
                f"RegionAutoencoder: the UNet takes {unet.config.in_channels} input channels but "
                f"{'latents of the VAE' if vae is not None else 'RGB pixels'} have {self.data_channels}"
                + (" plus 2 coordinate channels" if coordinate_channels else "")
                + (f" plus {layout_channels} layout channels" if layout_channels > 0 else "")
            )

    # ------------------------------------------------------------------ spaces
    def to_decoder_space(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] -> the UNet's x0: pixels in [-1, 1], or scaled VAE latents."""
        pixels = images * 2.0 - 1.0
        if self.vae is None:
            return pixels
        with torch.no_grad():
            return self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.mode() * self.latent_scale

    def from_decoder_space(self, x0: Tensor) -> Tensor:
        """The UNet's x0 -> images (B, 3, H, W) in [0, 1]."""
        if self.vae is not None:
            x0 = self.vae.decode(x0.to(self.vae.dtype) / self.latent_scale).sample
        return ((x0.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def unet_input(self, x: Tensor, layout: Tensor | None = None) -> Tensor:
        """The UNet's input for a noisy sample ``x`` (B, C, h, w): itself, then the coordinate channels and the
        token layout when they are on (``layout`` None gives an empty one)."""
        parts = [x]
        batch, _, height, width = x.shape
        if self.coordinate_channels:
            ys = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype)
            xs = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype)
            grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)])
            parts.append(grid.expand(batch, -1, -1, -1))
        if self.layout is not None:
            parts.append(x.new_zeros(batch, self.layout.channels, height, width) if layout is None else layout.to(x.dtype))
        return torch.cat(parts, dim=1) if len(parts) > 1 else x

    def token_layout(self, token_set: RegionTokenSet, height: int, width: int) -> Tensor | None:
        """The token layout (B, C, height, width) of a token set, or None when the model has none."""
        if self.layout is None:
            return None
        return self.layout(
            token_set.appearance, token_set.positions, token_set.valid, height, width, token_set.silhouettes
        )

    @property
    def uses_silhouettes(self) -> bool:
        """Whether the decoder's layout paints region silhouettes (token sets must carry them)."""
        return self.layout is not None and self.layout.shape == "silhouette"

    def silhouettes(self, masks: Tensor, positions: Tensor) -> Tensor | None:
        """(B, K, S, S) silhouettes of masks (B, K, H, W) at positions (B, K, 3) for this model's layout, or None
        when it paints none."""
        if not self.uses_silhouettes:
            return None
        return region_silhouettes(masks, positions, self.layout.silhouette_size, self.layout.silhouette_extent)

    def denoiser(self, layout: Tensor | None = None) -> Any:
        """The UNet as ``model(x, t, cond) -> output`` (``interpedit.diffusion`` samplers), with the extra input
        channels. ``layout`` (B, ...) belongs to the conditional rows; a call on twice as many rows is a guided
        batch ``[unconditional, conditional]`` (``guided_denoiser``'s order), whose first half gets an empty one."""
        model = unet_denoiser(self.unet)
        if not self.coordinate_channels and self.layout is None:
            return model

        def with_channels(x: Tensor, t: Any, cond: Tensor | None = None) -> Tensor:
            rows = layout
            if layout is not None and x.shape[0] == 2 * layout.shape[0]:
                rows = torch.cat([torch.zeros_like(layout), layout])
            return model(self.unet_input(x, rows), t, cond)

        return with_channels

    # ------------------------------------------------------------------ tokens
    def encode(self, images: Tensor, masks: Tensor, valid: Tensor, positions: Tensor | None = None) -> RegionEncoderOutput:
        """Region tokens of images (B, 3, H, W) in [0, 1] with masks (B, K, H, W) and validity (B, K); with the
        regions' silhouettes when the layout paints them."""
        output = self.encoder(images, masks, valid, positions)
        if not self.uses_silhouettes:
            return output
        shapes = self.silhouettes(masks, output.positions) * output.valid[..., None, None].to(output.positions.dtype)
        return dataclasses.replace(output, silhouettes=shapes)

    def condition(self, token_set: RegionTokenSet) -> Tensor:
        """Cross-attention states (B, K + extra slots, C) for a (possibly edited) token set."""
        tokens = self.encoder.condition(token_set.appearance, token_set.positions, token_set.valid)
        return self.conditioning(tokens, token_set.valid).encoder_hidden_states

    def unconditional(self, like: Tensor) -> Tensor:
        """The all-null sequence shaped like ``like`` (B, L, C), for classifier-free guidance."""
        extra = self.conditioning.num_extra_slots
        return self.conditioning.unconditional(like.shape[0], like.shape[1] - extra).encoder_hidden_states

    # ------------------------------------------------------------------ training
    def denoising_loss(
        self,
        target_images: Tensor,
        states: Tensor,
        *,
        loss_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        layout: Tensor | None = None,
    ) -> Tensor:
        """The diffusion loss of decoding ``target_images`` from cross-attention ``states``.

        Args:
            target_images: (B, 3, H, W) in [0, 1].
            states: (B, L, C) from :meth:`condition` (or :meth:`unconditional`).
            loss_mask: (B, H, W) bool pixels that count; resized (nearest) to latent size in latent space.
            generator: for noise and timesteps.
            layout: (B, C, h, w) token layout at the decoder's resolution (:meth:`token_layout`), for models with one.
        """
        x0 = self.to_decoder_space(target_images)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        t = self.schedule.sample_timesteps(x0.shape[0], generator=generator, device=x0.device)
        noisy = self.schedule.add_noise(x0, noise, t)
        output = self.unet(self.unet_input(noisy, layout), t, encoder_hidden_states=states).sample
        target = training_target(self.schedule, x0, noise, t)
        if loss_mask is not None and loss_mask.shape[-2:] != x0.shape[-2:]:
            loss_mask = nn.functional.interpolate(loss_mask[:, None].float(), size=x0.shape[-2:], mode="nearest")[:, 0]
        return diffusion_loss(output, target, mask=loss_mask)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode(
        self,
        token_set: RegionTokenSet,
        *,
        steps: int = 50,
        cfg_scale: float = 3.0,
        seed: int | None = 0,
        eta: float = 0.0,
        image_size: int | None = None,
        callback: Any = None,
    ) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] decoded from a token set by DDIM with classifier-free guidance.

        Args:
            token_set: appearance (B, K, D), positions (B, K, 3), valid (B, K).
            steps: DDIM steps.
            cfg_scale: guidance scale; 1 turns guidance off.
            seed: seed of the initial noise (one generator per batch, on the CPU, so results match across devices).
            eta: DDIM stochasticity; 0 is deterministic.
            image_size: side of the decoded image; default the UNet's ``sample_size`` (times the VAE's downsampling).
            callback: called with the sampler's per-step dict (see ``interpedit.diffusion.ddim_sample``).
        """
        states = self.condition(token_set)
        side = int(self.unet.config.sample_size) if image_size is None else image_size // self.vae_scale_factor
        channels = self.data_channels
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        x = torch.randn((states.shape[0], channels, side, side), generator=generator).to(states.device, states.dtype)
        layout = self.token_layout(token_set, side, side)
        denoise = guided_denoiser(self.denoiser(layout), states, self.unconditional(states), cfg_scale)
        timesteps = self.schedule.inference_timesteps(steps, device=states.device)
        x0 = ddim_sample(denoise, x, timesteps, self.schedule, eta=eta, generator=generator, callback=callback)
        return self.from_decoder_space(x0)

    @torch.no_grad()
    def reconstruct(self, images: Tensor, masks: Tensor, valid: Tensor, **decode_kwargs: Any) -> Tensor:
        """Encode and decode, unedited: (B, 3, H, W) in [0, 1]."""
        return self.decode(self.encode(images, masks, valid).token_set(), **decode_kwargs)
