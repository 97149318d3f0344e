"""Region tokens painted onto the pixel grid at their explicit positions: a spatial input for the decoder.

Cross-attention alone has to learn which token a pixel belongs to (binding), and a small decoder trained from
scratch learns that slowly: it first renders a bag of the tokens' colours at places the noise suggests. The
layout gives every pixel the token of the region that covers it, from the explicit positions alone, so position
edits move what the decoder sees with no learned binding. Each region is a soft disc at its centroid whose radius
follows its size (``size = sqrt(area fraction)``, so the disc of the same area has radius ``size / sqrt(pi)``);
regions are painted largest first, so small regions lie on top and a removed region uncovers what lies beneath
(the background, for the shapes world). The tokens still condition the UNet through cross-attention too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TokenLayout(nn.Module):
    """``(tokens, positions, valid) -> (B, channels, H, W)``: projected tokens composited as soft discs.

    Args:
        token_dim: width of the region tokens.
        channels: channels of the layout (the UNet's extra input channels).
        spread: disc radius as a multiple of the radius of a disc with the region's area.
        sharpness: steepness of the disc edge, in units of the radius.
    """

    def __init__(self, token_dim: int, channels: int = 16, spread: float = 1.25, sharpness: float = 6.0) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"TokenLayout.channels: must be positive, got {channels}")
        self.channels, self.spread, self.sharpness = channels, spread, sharpness
        self.project = nn.Linear(token_dim, channels)

    def coverage(self, positions: Tensor, valid: Tensor, height: int, width: int) -> Tensor:
        """(B, K, H, W) soft disc of each region in [0, 1]; zero on invalid slots."""
        ys = (torch.arange(height, device=positions.device, dtype=positions.dtype) + 0.5) / height
        xs = (torch.arange(width, device=positions.device, dtype=positions.dtype) + 0.5) / width
        centre_x, centre_y = positions[..., 0, None, None], positions[..., 1, None, None]
        radius = (positions[..., 2].clamp(min=1.0 / max(height, width)) / math.sqrt(math.pi) * self.spread)
        distance = torch.sqrt((xs - centre_x) ** 2 + (ys[:, None] - centre_y) ** 2) / radius[..., None, None]
        return torch.sigmoid(self.sharpness * (1.0 - distance)) * valid[..., None, None].to(positions.dtype)

    def forward(self, tokens: Tensor, positions: Tensor, valid: Tensor, height: int, width: int) -> Tensor:
        """Composite the regions, largest first (no loop over the batch; one step per slot).

        Args:
            tokens: (B, K, D) appearance tokens.
            positions: (B, K, 3) ``x, y, size``.
            valid: (B, K) bool.
            height, width: the layout's size (the UNet input's).
        """
        features = self.project(tokens)  # (B, K, C)
        alpha = self.coverage(positions.to(features.dtype), valid, height, width)  # (B, K, H, W)
        order = torch.argsort(torch.where(valid, positions[..., 2], torch.full_like(positions[..., 2], -1.0)),
                              dim=1, descending=True)
        features = torch.gather(features, 1, order[..., None].expand_as(features))
        alpha = torch.gather(alpha, 1, order[..., None, None].expand_as(alpha))
        canvas = features.new_zeros(features.shape[0], self.channels, height, width)
        for slot in range(features.shape[1]):
            a = alpha[:, slot, None]
            canvas = canvas * (1 - a) + a * features[:, slot, :, None, None]
        return canvas
