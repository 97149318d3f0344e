"""AnchorNet: the tiny network that picks a box size for each anchor (Learnable Regions, Eq. 1-2).

Over the ROI features of every candidate size around an anchor, stacked on channels, it outputs a categorical
distribution over the sizes. The layers are the paper's (and the released code's): a 1x1 projection of the
backbone's features to ``feature_dim`` (12) channels, then two 1x1 convolutions (to 8 and 4 channels), a linear
layer to 4 and one to the S sizes. Unlike the released code, the projection is trained with the rest.

``score_anchors=True`` adds, beyond the paper, one more linear output: a logit per anchor, so that the policy can
also learn which anchors to trust (``AnchorNetOutput.anchor_logits``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class AnchorNetOutput(NamedTuple):
    size_logits: Tensor
    """(N, S) unnormalised log-probabilities of the sizes, N = images x anchors."""
    anchor_logits: Tensor | None
    """(N,) anchor scores (``score_anchors=True``), else None."""


class FeatureProjection(nn.Module):
    """The 1x1 convolution from the backbone's width to AnchorNet's ``feature_dim`` channels."""

    def __init__(self, in_channels: int, feature_dim: int = 12) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, feature_dim, kernel_size=1)

    def forward(self, features: Tensor) -> Tensor:
        return self.conv(features)


class AnchorNet(nn.Module):
    """The size policy over ``num_sizes`` candidate boxes per anchor.

    Args:
        num_sizes: S, the number of candidate half-sizes.
        feature_dim: channels per size after the projection (the paper's 12).
        roi_size: side of each ROI crop (8).
        hidden: widths of the two 1x1 convolutions and the first linear layer (8, 4, 4).
        score_anchors: also output an anchor score.
    """

    def __init__(self, num_sizes: int, feature_dim: int = 12, roi_size: int = 8,
                 hidden: tuple[int, int, int] = (8, 4, 4), score_anchors: bool = False) -> None:
        super().__init__()
        if num_sizes < 1:
            raise ValueError(f"AnchorNet.num_sizes must be >= 1, got {num_sizes}")
        first, second, linear = hidden
        self.num_sizes = num_sizes
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(num_sizes * feature_dim, first, kernel_size=1), nn.ReLU(),
            nn.Conv2d(first, second, kernel_size=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(second * roi_size * roi_size, linear), nn.ReLU(),
        )
        self.size_head = nn.Linear(linear, num_sizes)
        self.anchor_head = nn.Linear(linear, 1) if score_anchors else None

    def forward(self, roi_features: Tensor) -> AnchorNetOutput:
        """(N, S * feature_dim, roi, roi) -> ``AnchorNetOutput``."""
        expected = self.num_sizes * self.feature_dim
        if roi_features.shape[1] != expected:
            raise ValueError(f"AnchorNet expects {expected} channels ({self.num_sizes} sizes x {self.feature_dim}), "
                             f"got {roi_features.shape[1]}")
        hidden = self.body(roi_features)
        anchor = self.anchor_head(hidden)[:, 0] if self.anchor_head is not None else None
        return AnchorNetOutput(self.size_head(hidden), anchor)

    def distribution(self, roi_features: Tensor) -> torch.distributions.Categorical:
        """The categorical over sizes per anchor."""
        return torch.distributions.Categorical(logits=self(roi_features).size_logits)
