"""Random masks for training an inpainting model on segmented scenes.

SD-inpainting was trained on random masks and on fully masked images (which makes it a text-to-image model too).
With exact object masks at hand, four kinds are drawn, each with its own probability:

- ``object``: one object's mask, dilated by a few pixels (repaint an object, or remove it);
- ``object_box``: the box around one object, grown by a random margin (what Learnable Regions and box-based
  editors ask for);
- ``random_box``: a box of random size and place;
- ``full``: the whole image (plain text-to-image).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

MASK_KINDS: tuple[str, ...] = ("object", "object_box", "random_box", "full")


def dilate(masks: Tensor, pixels: int) -> Tensor:
    """Grow (B, H, W) bool masks by ``pixels`` in every direction (a square structuring element)."""
    if pixels <= 0:
        return masks
    grown = F.max_pool2d(masks[:, None].float(), kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return grown[:, 0] > 0.5


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """(B, 4) float ``x0, y0, x1, y1`` pixel boxes (exclusive end) -> (B, H, W) bool masks."""
    ys = torch.arange(height, device=boxes.device)[None, :, None]
    xs = torch.arange(width, device=boxes.device)[None, None, :]
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def random_inpainting_masks(
    object_masks: Tensor,
    valid: Tensor,
    generator: torch.Generator,
    *,
    probabilities: Sequence[float] = (0.35, 0.3, 0.25, 0.1),
    object_dilation: int = 2,
    box_margin: tuple[int, int] = (0, 6),
    random_box_side: tuple[float, float] = (0.15, 0.6),
) -> tuple[Tensor, Tensor]:
    """One training mask per scene.

    Args:
        object_masks: (B, K, H, W) bool object masks.
        valid: (B, K) bool, which slots hold an object.
        generator: CPU generator for every choice.
        probabilities: of ``object``, ``object_box``, ``random_box`` and ``full`` (normalised).
        object_dilation: pixels by which ``object`` masks grow.
        box_margin: range of the pixels added on every side of ``object_box`` boxes.
        random_box_side: range of a ``random_box``'s sides as a fraction of the image side.

    Returns:
        ``(masks (B, H, W) float in {0, 1}, kinds (B,) long indices into MASK_KINDS)``. A scene without objects
        gets a random box where an object kind was drawn.
    """
    if len(probabilities) != len(MASK_KINDS) or any(p < 0 for p in probabilities) or sum(probabilities) <= 0:
        raise ValueError(f"probabilities: need {len(MASK_KINDS)} non-negative values for {MASK_KINDS}")
    batch, _, height, width = object_masks.shape
    device = object_masks.device
    weights = torch.tensor([float(p) for p in probabilities])
    kinds = torch.multinomial(weights, batch, replacement=True, generator=generator)
    # One object per scene, uniformly among the valid ones (scores are random, invalid slots score -1).
    scores = torch.rand(valid.shape, generator=generator).to(device)
    chosen = torch.where(valid, scores, torch.full_like(scores, -1.0)).argmax(dim=1)
    has_object = valid.any(dim=1).cpu()
    kinds = torch.where((kinds <= 1) & ~has_object, torch.full_like(kinds, 2), kinds)
    one_object = object_masks[torch.arange(batch, device=device), chosen]

    object_kind = dilate(one_object, object_dilation)
    rows, columns = one_object.any(dim=2), one_object.any(dim=1)
    first = lambda line: line.float().argmax(dim=1)  # noqa: E731
    last = lambda line: line.shape[1] - line.flip(1).float().argmax(dim=1)  # noqa: E731
    margins = torch.randint(box_margin[0], box_margin[1] + 1, (batch, 4), generator=generator).to(device).float()
    object_boxes = torch.stack([first(columns) - margins[:, 0], first(rows) - margins[:, 1],
                                last(columns) + margins[:, 2], last(rows) + margins[:, 3]], dim=1)
    box_kind = box_masks(object_boxes, height, width)

    low, high = random_box_side
    sides = torch.empty(batch, 2).uniform_(low, high, generator=generator) * torch.tensor([width, height])
    corners = torch.rand(batch, 2, generator=generator) * (torch.tensor([width, height]) - sides)
    random_boxes = torch.cat([corners, corners + sides], dim=1).round().to(device)
    random_kind = box_masks(random_boxes, height, width)

    full_kind = torch.ones_like(one_object)
    stacked = torch.stack([object_kind, box_kind, random_kind, full_kind], dim=1)
    masks = stacked[torch.arange(batch, device=device), kinds.to(device)]
    return masks.float(), kinds
