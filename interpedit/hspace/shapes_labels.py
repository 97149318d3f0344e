"""Attribute labels of generated single-object shapes scenes, for supervised h-space directions.

Colour, size and position cell are read off the pixels exactly (``single_object_readout``: palette labels, the
object's area and centroid). The shape is matched against templates: each of the five shapes, drawn with the
object's equal-area radius at its centroid in 24 rotations (15 degree steps, ``interpedit.shapes.geometry``), and
the shape whose best rotation overlaps the object's pixels most (IoU) wins. (The shapes CLIP zero-shot, scoring
the five captions that differ only in the shape, was tried first: 0.202 on 500 held-out renders, i.e. chance.)
Labels are -1 where no object colour is found, and, with ``single_object`` (the default), also for every
sample whose pixels hold more than one object: the unconditional branch of the shapes pipeline draws scenes of 1-4
objects, and a scene's colour or position is only one attribute when it has one object. Objects are counted as
4-connected components of same-colour palette pixels of at least ``MIN_OBJECT_PIXELS`` pixels
(``count_objects``), so two touching objects of different colours count as two.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from interpedit.shapes.attributes import COLOURS, POSITION_WORDS, SHAPES, SIZES
from interpedit.user_errors import OptionError, run_command

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {"colour": COLOURS, "shape": SHAPES, "size": SIZES,
                                                "position": POSITION_WORDS}
"""The attributes a single-object scene has, and their values (ids index these)."""

ROTATIONS = 24

MIN_OBJECT_PIXELS = 6
"""Smallest same-colour component counted as an object (64 px scenes: the smallest shapes cover about 50 pixels;
a few stray pixels of a palette colour at an edge are not an object)."""


def count_objects(palette: Tensor, min_pixels: int = MIN_OBJECT_PIXELS) -> Tensor:
    """Objects per image: 4-connected components of equal palette labels with at least ``min_pixels`` pixels.

    Args:
        palette: (B, H, W) long palette labels, -1 for background (``palette_labels``).
        min_pixels: smaller components are ignored.

    Returns:
        (B,) long counts.
    """
    batch, height, width = palette.shape
    inside = palette >= 0
    # Every object pixel starts with its own id; ids spread to 4-neighbours of the same colour until nothing moves,
    # so each component ends up holding its largest id.
    ids = torch.arange(1, height * width + 1, dtype=torch.long).view(1, height, width).expand(batch, -1, -1)
    ids = torch.where(inside, ids, torch.zeros_like(ids))
    for _ in range(height * width):
        spread = ids.clone()
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            shifted_ids = torch.roll(ids, shifts=(dy, dx), dims=(1, 2))
            shifted_palette = torch.roll(palette, shifts=(dy, dx), dims=(1, 2))
            valid = torch.ones_like(inside)  # roll wraps around: the wrapped row or column is no neighbour
            if dy == 1:
                valid[:, 0] = False
            elif dy == -1:
                valid[:, -1] = False
            if dx == 1:
                valid[:, :, 0] = False
            elif dx == -1:
                valid[:, :, -1] = False
            same = valid & inside & (shifted_palette == palette)
            spread = torch.where(same, torch.maximum(spread, shifted_ids), spread)
        if torch.equal(spread, ids):
            break
        ids = spread
    counts = torch.zeros(batch, dtype=torch.long)
    for b in range(batch):
        _, sizes = torch.unique(ids[b][inside[b]], return_counts=True)
        counts[b] = int((sizes >= min_pixels).sum())
    return counts


def shape_by_template(mask: np.ndarray) -> int:
    """The id of the shape (and some rotation) whose template overlaps a (H, W) bool object mask most."""
    from interpedit.shapes.geometry import shape_contains

    height, width = mask.shape
    area = int(mask.sum())
    if area == 0:
        return -1
    ys, xs = np.nonzero(mask)
    centre_x, centre_y = (xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height
    radius = math.sqrt(area / math.pi) / width
    grid_y, grid_x = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    dx, dy = grid_x - centre_x, grid_y - centre_y
    best, best_iou = -1, -1.0
    for index, shape in enumerate(SHAPES):
        for step in range(ROTATIONS):
            template = shape_contains(shape, dx, dy, radius, 2 * math.pi * step / ROTATIONS)
            union = np.logical_or(template, mask).sum()
            iou = np.logical_and(template, mask).sum() / union if union else 0.0
            if iou > best_iou:
                best, best_iou = index, iou
    return best


def shapes_attribute_labels(images: Tensor, single_object: bool = True) -> dict[str, Tensor]:
    """(B, 3, H, W) in [0, 1] -> ``{attribute: (B,) long id}`` for colour, shape, size and position.

    With ``single_object``, every label of an image with more than one object (``count_objects``) is -1.
    """
    from interpedit.metrics.attribute_accuracy import palette_labels
    from interpedit.stable_diffusion.quality import single_object_readout

    images = images.float().cpu()
    readout = single_object_readout(images)
    palette = palette_labels(images)
    found = readout["colour"] >= 0
    if single_object:
        found = found & (count_objects(palette) == 1)
    position = torch.where(found, readout["row"] * 3 + readout["column"], torch.full_like(readout["row"], -1))
    shapes = torch.full_like(position, -1)
    for b in torch.nonzero(found).flatten().tolist():
        shapes[b] = shape_by_template((palette[b] == readout["colour"][b]).numpy())
    missing = torch.full_like(position, -1)
    return {"colour": torch.where(found, readout["colour"], missing), "shape": shapes,
            "size": torch.where(found, readout["size"], missing), "position": position}


def scene_attribute_labels(batch: dict) -> dict[str, Tensor]:
    """Exact labels of a batch of rendered shapes scenes (``datamodules.shapes``): ``{attribute: (B,) long id}`` for
    colour, shape, size and position cell, from the scene's own attributes. Scenes with more than one object get -1,
    since their colour or position is not one attribute."""
    from interpedit.shapes.attributes import position_cell

    valid = batch["region_valid"].bool()
    single = valid.sum(1) == 1
    attributes = batch["attributes"]
    missing = torch.full_like(attributes["colour"][:, 0], -1)
    labels = {name: torch.where(single, attributes[name][:, 0], missing) for name in ("colour", "shape", "size")}
    cells = [position_cell((float(x), float(y))) for x, y in batch["position"][:, 0].tolist()]
    position = torch.tensor([row * 3 + column for row, column in cells], dtype=torch.long, device=missing.device)
    labels["position"] = torch.where(single, position, missing)
    return labels


def labeller_accuracy(count: int, seed: int, batch_size: int = 64,
                      backgrounds: tuple[str, ...] = ("solid", "gradient")) -> dict[str, float]:
    """Accuracy of ``shapes_attribute_labels`` on ``count`` held-out single-object renders (64 px)."""
    from interpedit.shapes.scene import position_cell
    from interpedit.stable_diffusion.quality import held_out_scenes

    scenes = held_out_scenes(count, seed, min_objects=1, max_objects=1, backgrounds=backgrounds, namespace=7)
    hits: dict[str, list[bool]] = {name: [] for name in ATTRIBUTE_VALUES}
    for start in range(0, count, batch_size):
        chunk = scenes[start : start + batch_size]
        labels = shapes_attribute_labels(torch.stack([s["image"] for s in chunk]))
        for i, scene in enumerate(chunk):
            obj = scene["scene"].objects[0]
            row, column = position_cell(obj.position)
            truth = {"colour": COLOURS.index(obj.colour), "shape": SHAPES.index(obj.shape),
                     "size": SIZES.index(obj.size), "position": row * 3 + column}
            for name, value in truth.items():
                if name in labels:
                    hits[name].append(int(labels[name][i]) == value)
    return {name: sum(values) / len(values) for name, values in hits.items() if values}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m interpedit.hspace.shapes_labels",
                                     description="Accuracy of the shapes attribute labeller on held-out renders")
    parser.add_argument("--num-scenes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=41)
    args = parser.parse_args(argv)
    if args.num_scenes < 1:
        raise OptionError(f"--num-scenes: must be at least 1, got {args.num_scenes}")
    accuracy = labeller_accuracy(args.num_scenes, args.seed)
    print(f"attribute labeller on {args.num_scenes} held-out single-object renders (64 px, seed {args.seed}):")
    for name, value in accuracy.items():
        print(f"  {name:<9} {value:.3f}")


if __name__ == "__main__":
    run_command(main)
