"""Explicit region positions (centroid and size) from masks, and their sinusoidal embedding.

Coordinates are normalised image coordinates in [0, 1]: ``x`` left to right, ``y`` top to bottom, with the centre
of pixel column ``i`` of a ``W``-wide mask at ``(i + 0.5) / W`` (rows likewise). This convention is symmetric, so a
horizontal flip maps a centroid ``x`` to exactly ``1 - x``, and positions do not depend on the mask resolution.

The size is ``sqrt(area / (H * W))``, the side of a square with the region's area, as a fraction of the image.
One number rather than the box's width and height: it is unchanged by flips and rotations (a rotated box would
change), and resizing a region by a factor ``s`` is multiplying it by ``s``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from interpedit.user_errors import OptionError


POSITION_DIM = 3
"""Entries of a region position: ``x, y, size``."""

_LOWEST_FREQUENCY = 0.5


def region_positions(masks: torch.Tensor) -> torch.Tensor:
    """Centroid and size of every region.

    Args:
        masks: (B, K, H, W) bool.

    Returns:
        (B, K, 3) float32 ``x, y, size`` in [0, 1] (see the module docstring); zeros for empty masks.
    """
    if masks.dim() != 4:
        raise ValueError(f"region_positions: expected masks of shape (B, K, H, W), got {tuple(masks.shape)}")
    height, width = masks.shape[-2:]
    # float64 sums keep the flip symmetry x -> 1 - x exact to float32 precision on large masks.
    weights = masks.to(torch.float64)
    xs = (torch.arange(width, device=masks.device, dtype=torch.float64) + 0.5) / width
    ys = (torch.arange(height, device=masks.device, dtype=torch.float64) + 0.5) / height
    area = weights.sum(dim=(-2, -1))
    count = area.clamp_min(1.0)
    x = (weights.sum(dim=-2) * xs).sum(dim=-1) / count
    y = (weights.sum(dim=-1) * ys).sum(dim=-1) / count
    size = torch.sqrt(area / (height * width))
    positions = torch.stack([x, y, size], dim=-1)
    return torch.where((area > 0)[..., None], positions, torch.zeros_like(positions)).float()


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_frequency: float = 32.0) -> torch.Tensor:
    """Sine/cosine features of each coordinate at geometrically spaced frequencies.

    Each of the P coordinates gets ``F = dim / (2 P)`` frequencies from 1/2 to ``max_frequency`` cycles per unit;
    the embedding is ``[sin(2 pi f_j c), cos(2 pi f_j c)]`` for every coordinate ``c`` and frequency ``f_j``. The
    lowest frequency is half a cycle so that the whole [0, 1] range maps one-to-one (at one cycle, 0 and 1 would
    coincide and the left edge would look like the right edge).

    Args:
        positions: (..., P) coordinates in [0, 1].
        dim: embedding width; a multiple of ``2 * P``.
        max_frequency: highest frequency, in cycles per unit; about the patch grid's side resolves single patches.

    Returns:
        (..., dim) float32.
    """
    num_coordinates = positions.shape[-1]
    if dim % (2 * num_coordinates):
        raise ValueError(f"sinusoidal_embedding: dim {dim} is not a multiple of 2 * {num_coordinates} coordinates")
    num_frequencies = dim // (2 * num_coordinates)
    if max_frequency < _LOWEST_FREQUENCY:
        raise ValueError(f"sinusoidal_embedding: max_frequency {max_frequency} is below {_LOWEST_FREQUENCY}")
    steps = torch.linspace(0.0, 1.0, num_frequencies, device=positions.device, dtype=torch.float64)
    frequencies = (_LOWEST_FREQUENCY * (max_frequency / _LOWEST_FREQUENCY) ** steps).float()
    angles = 2 * math.pi * positions.float()[..., None] * frequencies  # (..., P, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class RegionPositionEmbedding(nn.Module):
    """Sinusoidal embedding of region positions (``x, y, size``), a module so that its settings are configured.

    Args:
        dim: embedding width; a multiple of ``2 * POSITION_DIM``.
        max_frequency: highest frequency in cycles per image side.
    """

    def __init__(self, dim: int = 96, max_frequency: float = 32.0) -> None:
        super().__init__()
        if dim % (2 * POSITION_DIM):
            raise OptionError(f"RegionPositionEmbedding.dim: {dim} is not a multiple of {2 * POSITION_DIM}")
        self.dim = dim
        self.max_frequency = max_frequency

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """(B, K, 3) positions -> (B, K, dim) embeddings."""
        if positions.shape[-1] != POSITION_DIM:
            raise ValueError(
                f"RegionPositionEmbedding: positions end in {positions.shape[-1]} entries; expected x, y, size"
            )
        return sinusoidal_embedding(positions, self.dim, self.max_frequency)
