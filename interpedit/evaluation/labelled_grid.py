"""A picture of image columns with a label over each column, written as a PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def labelled_grid(columns: Mapping[str, torch.Tensor], *, scale: int = 4, padding: int = 2) -> Image.Image:
    """Rows are samples, columns the named image batches, each (B, 3, H, W) in [0, 1] with one B and size.

    Args:
        columns: column label -> images.
        scale: nearest-neighbour upscaling (small shapes images stay crisp).
        padding: white pixels between tiles.
    """
    if not columns:
        raise ValueError("labelled_grid: no columns")
    shapes = {name: tuple(images.shape) for name, images in columns.items()}
    first = next(iter(shapes.values()))
    if any(shape != first for shape in shapes.values()) or len(first) != 4 or first[1] != 3:
        raise ValueError(f"labelled_grid: columns must all be (B, 3, H, W) of one shape, got {shapes}")
    count, _, height, width = first
    tile_h, tile_w = height * scale, width * scale
    header = 14
    canvas = Image.new("RGB", (len(columns) * (tile_w + padding) + padding, header + count * (tile_h + padding) + padding), "white")
    draw = ImageDraw.Draw(canvas)
    for col, (name, images) in enumerate(columns.items()):
        x = padding + col * (tile_w + padding)
        draw.text((x + 1, 1), name[: max(1, tile_w // 6)], fill="black")
        pixels = (images.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for row in range(count):
            tile = Image.fromarray(np.ascontiguousarray(pixels[row])).resize((tile_w, tile_h), Image.NEAREST)
            canvas.paste(tile, (x, header + padding + row * (tile_h + padding)))
    return canvas


def save_labelled_grid(columns: Mapping[str, torch.Tensor], path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`labelled_grid` as a PNG (under a temporary name, then renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    labelled_grid(columns, **kwargs).save(temporary, format="PNG")
    os.replace(temporary, path)
    return path
