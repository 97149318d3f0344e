"""AnchorNet: the tiny network that picks a box size for each anchor (Learnable Regions, Eq. 1-2).

Over the ROI features of every candidate size around an anchor, stacked on channels, it outputs a categorical
distribution over the sizes. The layers are the paper's (and the released code's): a 1x1 projection of the
backbone's features to ``feature_dim`` (12) channels, then two 1x1 convolutions (to 8 and 4 channels), a linear
layer to 4 and one to the S sizes. Unlike the released code, the projection is trained with the rest
(``AnchorNet`` owns it). It scores sizes only, as in the paper; which anchor wins is left to the final ranking.
"""

from __future__ import annotations

from torch import Tensor, nn


class AnchorNet(nn.Module):
    """The size policy over ``num_sizes`` candidate boxes per anchor.

    Args:
        in_channels: the backbone's feature width (768 for DINO ViT-B/8).
        num_sizes: S, the number of candidate half-sizes.
        feature_dim: channels per size after the projection (the paper's 12).
        roi_size: side of each ROI crop (8).
        hidden: widths of the two 1x1 convolutions and the first linear layer (8, 4, 4).
    """

    def __init__(self, in_channels: int, num_sizes: int, feature_dim: int = 12, roi_size: int = 8,
                 hidden: tuple[int, int, int] = (8, 4, 4)) -> None:
        super().__init__()
        if num_sizes < 1:
            raise ValueError(f"AnchorNet.num_sizes must be >= 1, got {num_sizes}")
        first, second, linear = hidden
        self.num_sizes = num_sizes
        self.feature_dim = feature_dim
        self.roi_size = roi_size
        self.projection = nn.Conv2d(in_channels, feature_dim, kernel_size=1)
        self.body = nn.Sequential(
            nn.Conv2d(num_sizes * feature_dim, first, kernel_size=1), nn.ReLU(),
            nn.Conv2d(first, second, kernel_size=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(second * roi_size * roi_size, linear), nn.ReLU(),
        )
        self.size_head = nn.Linear(linear, num_sizes)

    def project(self, features: Tensor) -> Tensor:
        """(B, in_channels, rows, cols) backbone features -> (B, feature_dim, rows, cols)."""
        return self.projection(features)

    def forward(self, roi_features: Tensor) -> Tensor:
        """(N, S * feature_dim, roi, roi) ROI features of projected maps -> (N, S) size logits."""
        expected = self.num_sizes * self.feature_dim
        if roi_features.shape[1] != expected:
            raise ValueError(f"AnchorNet expects {expected} channels ({self.num_sizes} sizes x {self.feature_dim}), "
                             f"got {roi_features.shape[1]}")
        return self.size_head(self.body(roi_features))
