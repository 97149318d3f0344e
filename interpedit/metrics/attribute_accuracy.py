"""Did the edited object come out with the requested colour and shape? Decided from the edit's pixels (shapes world).

Colour: each pixel of the edited image gets its nearest palette colour (``interpedit.shapes.PALETTE``), or
"none" when it is farther than ``max_palette_distance`` (RGB, 0-255 units) from every palette colour. The
colour of the object is the majority label of the pixels inside the true target mask of the edited object (its
visible label mask in the true target render); a tie with "none" counts as none. Correct when it equals the
requested colour.

Shape: every candidate shape is rendered alone with the object's true position, radius and rotation
(``interpedit.shapes.render``, label mask). Pixels of the requested shape's render that the true target mask
lacks are occluded by objects drawn later and are ignored for every candidate. The silhouette is the set of
pixels, inside the union of the candidates' renders, whose palette label is the object's colour as drawn (its
majority colour above); the predicted shape is the candidate whose render has the highest IoU with the
silhouette. Correct when it is the requested shape; wrong when no palette colour is in the majority inside the
target mask (there is no object to classify). The drawn colour, not the requested one, makes the silhouette so
that shape accuracy does not also count colour failures: a triangle left green when blue was asked still has
the right shape. Limitation: occluders outside the
requested shape's footprint are unknown, and an unrelated object of the same colour inside a larger candidate's
footprint counts towards that candidate.

Requested ids are indices into ``COLOURS`` and ``SHAPES``; -1 means not applicable and gives NaN, as does an
empty target object mask.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from interpedit.shapes import COLOURS, PALETTE, SHAPES, Background, Scene, ShapeObject, render

MAX_PALETTE_DISTANCE = 49.0
"""Palette colours are at least 99 apart and every background colour at least 100 from each of them
(``interpedit.shapes.attributes``), so balls of radius 49 around the palette colours are disjoint and hold no
background colour: a pixel inside one is that colour, anything else (background, a blend at an edge) is none."""

_NEUTRAL_BACKGROUND = Background(kind="solid", colours=((128, 128, 128),))


def palette_labels(images: Tensor, max_distance: float = MAX_PALETTE_DISTANCE) -> Tensor:
    """Nearest palette colour id per pixel, -1 beyond ``max_distance``: (B, 3, H, W) in [0, 1] -> (B, H, W) long."""
    palette = torch.tensor([PALETTE[name] for name in COLOURS], dtype=torch.float32, device=images.device)
    pixels = images.float().permute(0, 2, 3, 1) * 255.0  # (B, H, W, 3)
    distances = torch.cdist(pixels.reshape(-1, 3), palette).reshape(*pixels.shape[:3], len(COLOURS))
    nearest, labels = distances.min(dim=-1)
    return torch.where(nearest <= max_distance, labels, torch.full_like(labels, -1))


def majority_colour(labels: Tensor, object_mask: Tensor) -> Tensor:
    """Majority palette label inside each mask, -1 for none (also for an empty mask): (B, H, W) x 2 -> (B,)."""
    votes = F.one_hot(labels + 1, num_classes=len(COLOURS) + 1) * object_mask[..., None]
    # argmax takes the first maximum, so a tie with "none" (column 0) is none.
    return votes.sum(dim=(1, 2)).argmax(dim=-1) - 1


def colour_accuracy(
    edited: Tensor, object_mask: Tensor, requested_colour: Tensor, max_distance: float = MAX_PALETTE_DISTANCE
) -> Tensor:
    """1 where the object's majority colour is the requested one, else 0; NaN where not applicable.

    Args:
        edited: (B, 3, H, W) in [0, 1].
        object_mask: (B, H, W) bool, the edited object's true target mask.
        requested_colour: (B,) long ids into ``COLOURS``, -1 = not applicable.
        max_distance: see ``MAX_PALETTE_DISTANCE``.
    """
    predicted = majority_colour(palette_labels(edited, max_distance), object_mask)
    requested = requested_colour.to(predicted.device)
    correct = (predicted == requested).float()
    applicable = (requested >= 0) & object_mask.flatten(1).any(dim=1)
    return torch.where(applicable, correct, torch.full_like(correct, float("nan")))


def candidate_shape_masks(
    position: tuple[float, float], radius: float, rotation: float, resolution: int, supersample: int = 4
) -> Tensor:
    """Label masks of every shape in ``SHAPES`` rendered alone with one pose: (len(SHAPES), H, W) bool."""
    masks = []
    for shape in SHAPES:
        obj = ShapeObject(shape=shape, colour=COLOURS[0], radius=radius, position=position, rotation=rotation)
        rendered = render(Scene(background=_NEUTRAL_BACKGROUND, objects=(obj,)), resolution, supersample)
        masks.append(torch.from_numpy(rendered.labels == 1))
    return torch.stack(masks)


def predict_shape(silhouette: Tensor, candidates: Tensor, visible: Tensor) -> int:
    """Index of the candidate whose visible render best matches the silhouette (IoU): (H, W), (S, H, W), (H, W)."""
    candidates = candidates & visible
    intersection = (candidates & silhouette).flatten(1).sum(dim=1)
    union = (candidates | silhouette).flatten(1).sum(dim=1)
    return int((intersection / union.clamp(min=1)).argmax())


def shape_accuracy(
    edited: Tensor,
    object_mask: Tensor,
    requested_shape: Tensor,
    target_object: Mapping[str, Tensor],
    max_distance: float = MAX_PALETTE_DISTANCE,
    supersample: int = 4,
) -> Tensor:
    """1 where the silhouette of the object's drawn colour is best explained by the requested shape, else 0; NaN
    where not applicable (module docstring).

    Args:
        edited: (B, 3, H, W) in [0, 1], square.
        object_mask: (B, H, W) bool, the edited object's true target mask.
        requested_shape: (B,) long ids into ``SHAPES``, -1 = not applicable.
        target_object: the true target object's ``position`` (B, 2) normalised ``(x, y)``, ``radius`` (B,) and
            ``rotation`` (B,) radians; other keys are ignored.
        max_distance: see ``MAX_PALETTE_DISTANCE``.
        supersample: the renderer's samples per pixel side; match the data's renders.
    """
    batch, _, height, width = edited.shape
    if height != width:
        raise ValueError(f"shape_accuracy: shapes-world images are square, got {height}x{width}")
    labels = palette_labels(edited, max_distance).cpu()
    object_mask = object_mask.cpu()
    requested_shape = requested_shape.cpu()
    colours = majority_colour(labels, object_mask)
    positions = target_object["position"].detach().cpu().double()
    radii = target_object["radius"].detach().cpu().double()
    rotations = target_object["rotation"].detach().cpu().double()
    result = torch.full((batch,), float("nan"))
    for index in range(batch):
        shape_id = int(requested_shape[index])
        if shape_id < 0 or not bool(object_mask[index].any()):
            continue
        if int(colours[index]) < 0:  # no palette colour at all where the object should be: no object, wrong
            result[index] = 0.0
            continue
        candidates = candidate_shape_masks(
            (float(positions[index, 0]), float(positions[index, 1])),
            float(radii[index]),
            float(rotations[index]),
            height,
            supersample,
        )
        visible = ~(candidates[shape_id] & ~object_mask[index])
        silhouette = (labels[index] == colours[index]) & candidates.any(dim=0) & visible
        result[index] = float(predict_shape(silhouette, candidates, visible) == shape_id)
    return result.to(edited.device)
