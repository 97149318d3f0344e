"""Per-image LPIPS through torchmetrics, and a clear report when its backbone weights are missing.

torchmetrics ships LPIPS's linear heads in its wheel, but the backbone (SqueezeNet, AlexNet or VGG16) comes with
ImageNet weights from torchvision, downloaded into the torch hub cache on first construction. Offline, and in CI,
that download fails: ``build_lpips`` then returns no module and a message naming the missing file, where to put
it, and how to turn LPIPS off, so callers can report LPIPS as unavailable instead of inventing a number.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

LPIPSNet = Literal["squeeze", "alex", "vgg"]

LPIPSFunction = Callable[[Tensor, Tensor], Tensor]
"""``(img1, img2) -> (B,)`` perceptual distances of (B, 3, H, W) images in [-1, 1]."""

# torchvision model and weights enum behind each LPIPS backbone, for the download hint.
_BACKBONES: dict[str, tuple[str, str]] = {
    "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights"),
    "alex": ("alexnet", "AlexNet_Weights"),
    "vgg": ("vgg16", "VGG16_Weights"),
}


class TorchmetricsLPIPS(nn.Module):
    """torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` as a per-image distance.

    Args:
        net_type: backbone; PIE-Bench uses ``"squeeze"``.

    Raises:
        OSError, RuntimeError: the backbone weights could not be loaded (see ``build_lpips``).
    """

    def __init__(self, net_type: LPIPSNet = "squeeze") -> None:
        super().__init__()
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        # sync_on_compute=False: this inner metric is only a per-batch calculator; the outer metric synchronises.
        self.lpips = LearnedPerceptualImagePatchSimilarity(net_type=net_type, reduction="none", sync_on_compute=False)

    @torch.no_grad()
    def forward(self, img1: Tensor, img2: Tensor) -> Tensor:
        """(B, 3, H, W) x 2 in [-1, 1] -> (B,) distances."""
        self.lpips.update(img1, img2)
        values = self.lpips.compute().reshape(-1)
        self.lpips.reset()
        return values


def lpips_weights_file(net_type: str) -> tuple[str, str]:
    """``(url, cached path)`` of the torchvision ImageNet weights behind an LPIPS backbone."""
    if net_type not in _BACKBONES:
        raise ValueError(f"unknown LPIPS net_type {net_type!r}; choose one of {', '.join(_BACKBONES)}")
    import torchvision

    url = getattr(torchvision.models, _BACKBONES[net_type][1]).DEFAULT.url
    return url, os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def lpips_weights_hint(net_type: str) -> str:
    """Where torchvision looks for the ImageNet weights of an LPIPS backbone, and where to get them."""
    url, path = lpips_weights_file(net_type)
    return (
        f"torchvision's ImageNet weights for {_BACKBONES[net_type][0]} ({os.path.basename(url)}) must be in "
        f"{os.path.dirname(path)}: download {url} on a machine with network access and copy it there (or set "
        "TORCH_HOME to a cache that holds it)"
    )


def build_lpips(net_type: LPIPSNet = "squeeze") -> tuple[TorchmetricsLPIPS | None, str | None]:
    """Build torchmetrics' LPIPS, or explain why it cannot be built.

    With ``HF_HUB_OFFLINE=1`` (this project's offline switch, see ``interpedit.backbones.hub_offline``) no download
    is attempted: a firewalled download can hang instead of failing.

    Returns:
        ``(module, None)``, or ``(None, reason)`` when the backbone weights are neither cached nor downloadable.
    """
    from interpedit.backbones import hub_offline

    if hub_offline() and not os.path.isfile(lpips_weights_file(net_type)[1]):
        return None, f"LPIPS ({net_type}) could not be built offline (HF_HUB_OFFLINE=1): {lpips_weights_hint(net_type)}"
    try:
        return TorchmetricsLPIPS(net_type), None
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a corrupt cached file raises RuntimeError
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, f"LPIPS ({net_type}) could not be built: {lpips_weights_hint(net_type)}. torchvision said: {cause}"
