"""Attribute labels of generated single-object shapes scenes, for supervised h-space directions.

Colour, size and position cell are read off the pixels exactly (``single_object_readout``: palette labels, the
object's area and centroid). The shape comes from the shapes CLIP zero-shot: the caption of the read-off colour,
size and position with each of the five shapes, and the best-scoring one wins. Labels are -1 where no object
colour is found.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from interpedit.shapes.attributes import COLOURS, POSITION_GRID, POSITION_WORDS, SHAPES, SIZES

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {"colour": COLOURS, "shape": SHAPES, "size": SIZES,
                                                "position": POSITION_WORDS}
"""The attributes a single-object scene has, and their values (ids index these)."""


def shapes_attribute_labels(images: Tensor, clip: Any | None = None) -> dict[str, Tensor]:
    """(B, 3, H, W) in [0, 1] -> ``{attribute: (B,) long id}``; ``shape`` needs ``clip`` (a ``ShapesCLIP``)."""
    from interpedit.stable_diffusion.quality import single_object_readout

    readout = single_object_readout(images.float().cpu())
    found = readout["colour"] >= 0
    position = torch.where(found, readout["row"] * 3 + readout["column"], torch.full_like(readout["row"], -1))
    labels = {"colour": readout["colour"], "size": readout["size"], "position": position}
    if clip is not None:
        shapes = torch.full_like(position, -1)
        captions, owners = [], []
        for b in torch.nonzero(found).flatten().tolist():
            row, column = int(readout["row"][b]), int(readout["column"][b])
            words = f"{SIZES[int(readout['size'][b])]} {COLOURS[int(readout['colour'][b])]}"
            captions += [f"a {words} {shape} at the {POSITION_GRID[row][column]}" for shape in SHAPES]
            owners.append(b)
        if owners:
            device = next(clip.parameters()).device
            with torch.no_grad():
                pixels = images[owners].float().to(device)  # get_image_features takes [0, 1]
                size = tuple(clip.vision_model.patch_embed.img_size)
                if tuple(pixels.shape[-2:]) != size:
                    pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True, align_corners=False)
                image_features = F.normalize(clip.get_image_features(pixels), dim=-1)
                text_features = F.normalize(clip.get_text_features(**clip.tokenize(captions, device)), dim=-1)
            scores = (image_features[:, None] * text_features.reshape(len(owners), len(SHAPES), -1)).sum(-1)
            shapes[owners] = scores.argmax(-1).cpu()
        labels["shape"] = shapes
    return labels
