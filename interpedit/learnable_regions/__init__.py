"""Learnable Regions (Lin et al., CVPR 2024) as plain PyTorch: anchors from ViT attention, candidate boxes and
their ROI features, AnchorNet's size policy with a REINFORCE gradient, the CLIP/directional/structure objective,
and the paper's final ranking."""

from interpedit.learnable_regions.anchor_net import AnchorNet
from interpedit.learnable_regions.anchors import anchor_points, cls_attention, patch_grid
from interpedit.learnable_regions.boxes import anchor_boxes, box_masks, roi_features
from interpedit.learnable_regions.policy_gradient import draw_sizes, leave_one_out_advantages, reinforce_loss
from interpedit.learnable_regions.ranking import rank_candidates
from interpedit.learnable_regions.rewards import EditReward
from interpedit.learnable_regions.views import ViewAugmentation, ViewParameters

__all__ = [
    "AnchorNet",
    "EditReward",
    "ViewAugmentation",
    "ViewParameters",
    "anchor_boxes",
    "anchor_points",
    "box_masks",
    "cls_attention",
    "draw_sizes",
    "leave_one_out_advantages",
    "patch_grid",
    "rank_candidates",
    "reinforce_loss",
    "roi_features",
]
