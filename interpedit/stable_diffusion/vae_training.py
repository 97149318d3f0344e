"""Training a Stable-Diffusion-style ``AutoencoderKL``: the loss, random crops, and the latent scaling factor.

Stable Diffusion's VAE (Rombach et al., CVPR 2022, Sec. 3 and App. G) is trained with a reconstruction loss, a
perceptual and an adversarial loss, and a KL term of weight 1e-6 that only keeps the latent scale tame. In the
shapes world the target is pixel fidelity (PSNR), so the loss here is the reconstruction term plus that KL term.
The latents are then multiplied by ``scaling_factor = 1 / std(latents)`` (SD 1.x's 0.18215 was measured this way
on its first training batch), so that the diffusion model sees latents of unit variance.

Three lines from a notebook::

    losses = vae_loss(vae, images * 2 - 1, kl_weight=1e-6)
    losses["loss"].backward()
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, batches))
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor


RECONSTRUCTION_LOSSES = ("l1", "mse", "l1+mse")


def random_crops(images: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """One random ``size x size`` crop of each image, at a position drawn from ``generator``.

    A convolutional autoencoder trained on crops decodes whole images (SD's VAE was trained on 256 px crops and
    runs at 512 px); crops give more scenes per unit of compute.

    Args:
        images: (B, C, H, W).
        size: crop side; at most min(H, W).
        generator: CPU generator for the positions.

    Returns:
        (B, C, size, size).
    """
    height, width = images.shape[-2:]
    if not 0 < size <= min(height, width):
        raise ValueError(f"crop size {size} does not fit images of {height}x{width}")
    if size == height == width:
        return images
    tops = torch.randint(0, height - size + 1, (images.shape[0],), generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (images.shape[0],), generator=generator).tolist()
    return torch.stack([image[:, top:top + size, left:left + size] for image, top, left in zip(images, tops, lefts)])


def reconstruction_loss(reconstruction: Tensor, target: Tensor, kind: str = "l1+mse") -> Tensor:
    """Mean pixel error: ``l1``, ``mse`` or their sum ``l1+mse`` (L1 keeps edges sharp, MSE is what PSNR reads)."""
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"reconstruction loss {kind!r} is not one of {', '.join(RECONSTRUCTION_LOSSES)}")
    reconstruction, target = reconstruction.float(), target.float()
    loss = torch.zeros((), device=target.device)
    if "l1" in kind:
        loss = loss + F.l1_loss(reconstruction, target)
    if "mse" in kind:
        loss = loss + F.mse_loss(reconstruction, target)
    return loss


def vae_loss(
    vae: torch.nn.Module,
    images: Tensor,
    *,
    kl_weight: float = 1e-6,
    reconstruction: str = "l1+mse",
    sample_posterior: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Reconstruction and KL losses of an ``AutoencoderKL`` on a batch.

    Args:
        vae: a diffusers ``AutoencoderKL``.
        images: (B, 3, H, W) in [-1, 1], the range SD's VAE takes.
        kl_weight: weight of the KL divergence to the standard normal (summed over latent elements, averaged over
            the batch, as in latent-diffusion's ``LPIPSWithDiscriminator``).
        reconstruction: ``l1``, ``mse`` or ``l1+mse``.
        sample_posterior: decode a posterior sample (training) rather than its mean.
        generator: generator for the posterior sample.

    Returns:
        ``loss``, ``reconstruction_loss``, ``kl`` (per sample, unweighted) and ``reconstruction`` (B, 3, H, W).
    """
    posterior = vae.encode(images).latent_dist
    latents = posterior.sample(generator) if sample_posterior else posterior.mode()
    decoded = vae.decode(latents).sample
    rec = reconstruction_loss(decoded, images, reconstruction)
    kl = posterior.kl().float().mean()
    return {"loss": rec + kl_weight * kl, "reconstruction_loss": rec, "kl": kl, "reconstruction": decoded}


@torch.no_grad()
def latent_scaling_factor(vae: torch.nn.Module, batches: Iterable[Tensor], max_images: int | None = None) -> float:
    """``1 / std`` of posterior samples over ``batches`` of images in [-1, 1] (SD's way of fixing the factor).

    Args:
        vae: a diffusers ``AutoencoderKL``.
        batches: iterable of (B, 3, H, W) tensors in [-1, 1].
        max_images: stop after this many images; None reads every batch.
    """
    total, total_sq, count, images = 0.0, 0.0, 0, 0
    for batch in batches:
        latents = vae.encode(batch).latent_dist.sample().double()
        total += float(latents.sum())
        total_sq += float(latents.pow(2).sum())
        count += latents.numel()
        images += batch.shape[0]
        if max_images is not None and images >= max_images:
            break
    if count == 0:
        raise ValueError("latent_scaling_factor: no images")
    variance = total_sq / count - (total / count) ** 2
    return 1.0 / max(variance, 1e-12) ** 0.5
