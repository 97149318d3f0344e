"""Region tokens painted onto the pixel grid at their explicit positions: a spatial input for the decoder.

Cross-attention alone has to learn which token a pixel belongs to (binding), and a small decoder trained from
scratch learns that slowly: it first renders a bag of the tokens' colours at places the noise suggests. The
layout gives every pixel the token of the region that covers it, from the explicit positions alone, so position
edits move what the decoder sees with no learned binding. Each region is a soft disc at its centroid whose radius
follows its size (``size = sqrt(area fraction)``, so the disc of the same area has radius ``size / sqrt(pi)``);
regions are painted largest first, so small regions lie on top and a removed region uncovers what lies beneath
(the background, for the shapes world). The tokens still condition the UNet through cross-attention too.

With ``shape="silhouette"`` each region is painted through its silhouette (``interpedit.region.region_silhouettes``:
its mask in a frame that follows its position) instead of a disc, so the decoder also sees every region's outline;
the token set then has to carry silhouettes (``RegionTokenSet.silhouettes``). Silhouettes leave a hole where a region
is removed; the largest region's token is painted beneath all of them, so a hole shows it (the background, for the
shapes world), much as the largest disc lies beneath a disc layout.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from interpedit.region.region_silhouettes import paint_silhouettes
from interpedit.user_errors import OptionError

LAYOUT_SHAPES = ("disc", "silhouette")
"""How a region covers the layout: a soft disc from its position, or its silhouette placed at its position."""


class TokenLayout(nn.Module):
    """``(tokens, positions, valid) -> (B, channels, H, W)``: projected tokens composited as soft discs.

    Args:
        token_dim: width of the region tokens.
        channels: channels of the layout (the UNet's extra input channels).
        spread: disc radius as a multiple of the radius of a disc with the region's area.
        sharpness: steepness of the disc edge, in units of the radius.
        shape: ``disc`` or ``silhouette`` (see the module docstring).
        silhouette_size: side of the silhouettes, in samples (``shape="silhouette"``).
        silhouette_extent: half-side of a silhouette's frame as a multiple of the region's size.
    """

    def __init__(
        self,
        token_dim: int,
        channels: int = 16,
        spread: float = 1.25,
        sharpness: float = 6.0,
        shape: str = "disc",
        silhouette_size: int = 32,
        silhouette_extent: float = 1.5,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise OptionError(f"TokenLayout.channels: must be positive, got {channels}")
        if shape not in LAYOUT_SHAPES:
            raise OptionError(f"TokenLayout.shape: {shape!r} is not one of {', '.join(LAYOUT_SHAPES)}")
        if silhouette_size < 1 or silhouette_extent <= 0:
            raise ValueError(
                f"TokenLayout: silhouette_size must be positive and silhouette_extent > 0, got {silhouette_size} "
                f"and {silhouette_extent}"
            )
        self.channels, self.spread, self.sharpness = channels, spread, sharpness
        self.shape, self.silhouette_size, self.silhouette_extent = shape, silhouette_size, silhouette_extent
        self.project = nn.Linear(token_dim, channels)

    def coverage(self, positions: Tensor, valid: Tensor, height: int, width: int) -> Tensor:
        """(B, K, H, W) soft disc of each region in [0, 1]; zero on invalid slots."""
        ys = (torch.arange(height, device=positions.device, dtype=positions.dtype) + 0.5) / height
        xs = (torch.arange(width, device=positions.device, dtype=positions.dtype) + 0.5) / width
        centre_x, centre_y = positions[..., 0, None, None], positions[..., 1, None, None]
        radius = (positions[..., 2].clamp(min=1.0 / max(height, width)) / math.sqrt(math.pi) * self.spread)
        distance = torch.sqrt((xs - centre_x) ** 2 + (ys[:, None] - centre_y) ** 2) / radius[..., None, None]
        return torch.sigmoid(self.sharpness * (1.0 - distance)) * valid[..., None, None].to(positions.dtype)

    def forward(
        self,
        tokens: Tensor,
        positions: Tensor,
        valid: Tensor,
        height: int,
        width: int,
        silhouettes: Tensor | None = None,
    ) -> Tensor:
        """Composite the regions, largest first (no loop over the batch; one step per slot).

        Args:
            tokens: (B, K, D) appearance tokens.
            positions: (B, K, 3) ``x, y, size``.
            valid: (B, K) bool.
            height, width: the layout's size (the UNet input's).
            silhouettes: (B, K, S, S) for ``shape="silhouette"`` (required there, ignored for discs).
        """
        features = self.project(tokens)  # (B, K, C)
        if self.shape == "silhouette":
            if silhouettes is None:
                raise ValueError(
                    "TokenLayout: this layout paints silhouettes but the token set has none; encode with "
                    "RegionAutoencoder.encode (it adds them) or give RegionTokenSet(silhouettes=...)"
                )
            alpha = paint_silhouettes(
                silhouettes.to(features.dtype), positions, valid, height, width, self.silhouette_extent
            )
        else:
            alpha = self.coverage(positions.to(features.dtype), valid, height, width)  # (B, K, H, W)
        order = torch.argsort(torch.where(valid, positions[..., 2], torch.full_like(positions[..., 2], -1.0)),
                              dim=1, descending=True)
        features = torch.gather(features, 1, order[..., None].expand_as(features))
        alpha = torch.gather(alpha, 1, order[..., None, None].expand_as(alpha))
        canvas = features.new_zeros(features.shape[0], self.channels, height, width)
        if self.shape == "silhouette":
            # Pixels no silhouette covers (where a removed region was) show the largest region, as the largest
            # disc of a disc layout would: the background in the shapes world.
            canvas = canvas + features[:, 0, :, None, None] * valid.any(dim=1)[:, None, None, None].to(canvas.dtype)
        for slot in range(features.shape[1]):
            a = alpha[:, slot, None]
            canvas = canvas * (1 - a) + a * features[:, slot, :, None, None]
        return canvas
