"""Did the edited object come out with the requested colour and shape? Decided from the edit's pixels (shapes world).

Colour: each pixel of the edited image gets its nearest palette colour (``interpedit.shapes.PALETTE``), or
"none" when it is farther than ``max_palette_distance`` (RGB, 0-255 units) from every palette colour. The
colour of the object is the majority label of the pixels inside the true target mask of the edited object (its
visible label mask in the true target render); a tie with "none" counts as none. Correct when it equals the
requested colour.

Shape, by analysis by synthesis: the whole true target scene is re-rendered once per candidate shape
(``interpedit.shapes.SHAPES``), with the edited object given that shape and the colour it was drawn in (its
majority colour above), by the benchmark's own renderer and settings (``interpedit.shapes.render``, the edited
image's side, the export's ``supersample``). Each re-render is compared with the edited image by the mean squared
error over the union of the object's footprints (render coverage > 0) across the candidates; the predicted shapes
are the candidates whose error is within ``SHAPE_TIE_TOLERANCE`` of the smallest. Correct when the requested shape
is among them. Re-rendering the whole scene accounts for what a lone-shape template cannot: objects drawn later
occlude the edited one, anti-aliased rims blend it with what lies behind, and at 32 px small shapes differ only in
a few such blended pixels. The true target therefore has error exactly 0 for its own shape, and scores 1
whenever its drawn colour is found (next point).

- The drawn colour, not the requested one, is used so that shape accuracy does not also count colour failures:
  a triangle left green when blue was asked still has the right shape. Where no palette colour is in the majority
  inside the target mask there is no object to classify, and the answer is 0. This also happens to the true
  target when an object is so occluded that most of its label pixels are anti-aliased blends farther than
  ``max_palette_distance`` from its colour (colour accuracy is then 0 as well).
- Ties count as correct: two candidates whose renders are identical at this resolution (e.g. a tiny shape whose
  samples land the same way, or a shape hidden behind an occluder but for the same pixels) cannot be told apart
  from pixels, so asking for either one is satisfied by either render.
- Everything except the edited object's shape is taken from the true target scene: a method that also moved,
  resized or rotated the object, or changed its surroundings inside the footprints, is compared with renders that
  differ from its result in those respects too; the candidate least hurt by them wins, which is not necessarily the
  shape a person would name. The rule is exact for edits that get everything else right, and a nearest-render
  judgement otherwise.
- The edited image must be square with a side the renderer exports (``EXPORT_RESOLUTIONS``). When a benchmark is
  read at another resolution than its export, the target was resized while the candidates are rendered at the new
  side, so even the true target no longer matches its own render exactly and is judged by the nearest render,
  which is not always its own shape (a 32 px export read at 64 px loses small shapes to the resize blur).
- Cost: one render of the whole scene per candidate shape and image, on the CPU.

Requested ids are indices into ``COLOURS`` and ``SHAPES``; -1 means not applicable and gives NaN, as does an
empty target object mask or a target scene in which the object has no footprint whatever its shape.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from interpedit.shapes import COLOURS, EXPORT_RESOLUTIONS, PALETTE, SHAPES, Scene, render

MAX_PALETTE_DISTANCE = 49.0
"""Palette colours are at least 99 apart and every background colour at least 100 from each of them
(``interpedit.shapes.attributes``), so balls of radius 49 around the palette colours are disjoint and hold no
background colour: a pixel inside one is that colour, anything else (background, a blend at an edge) is none."""

SHAPE_TIE_TOLERANCE = 1e-12
"""Mean squared errors (images in [0, 1]) this close to the smallest one count as a tie. Identical renders give
bit-identical errors, so this only absorbs float64 rounding; it stays below the smallest difference one 8-bit
level in one channel of one pixel makes at the largest export side, (1/255)^2 / (3 * 256^2) ~ 7.8e-11, so
renders that differ anywhere are still told apart."""


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


def shape_render_errors(edited: Tensor, scene: Scene, object_index: int, colour: str, supersample: int) -> Tensor:
    """Mean squared error of one edited image against the scene re-rendered with each candidate shape.

    Args:
        edited: (3, H, W) in [0, 1], H = W = the render side.
        scene: the true target scene.
        object_index: the edited object in ``scene.objects``.
        colour: the colour the candidates are drawn in.
        supersample: the renderer's samples per pixel side.

    Returns:
        (len(SHAPES),) float64 errors over the union of the candidates' footprints of the object; NaN where that
        union is empty.
    """
    side = edited.shape[-1]
    obj = scene.objects[object_index]
    images, footprints = [], []
    for shape in SHAPES:
        candidate = dataclasses.replace(obj, shape=shape, colour=colour)
        objects = scene.objects[:object_index] + (candidate,) + scene.objects[object_index + 1 :]
        rendered = render(dataclasses.replace(scene, objects=objects), side, supersample)
        # The same uint8 -> float32 -> / 255 as the benchmark's image loader, so an exact render gives error 0.
        images.append(torch.from_numpy(rendered.image).permute(2, 0, 1).float() / 255.0)
        footprints.append(torch.from_numpy(rendered.coverage[object_index] > 0))
    union = torch.stack(footprints).any(dim=0)
    if not bool(union.any()):
        return torch.full((len(SHAPES),), float("nan"), dtype=torch.float64)
    differences = torch.stack(images).double() - edited.detach().cpu().double()[None]  # (S, 3, H, W)
    return differences.square()[:, :, union].mean(dim=(1, 2))


def shape_accuracy(
    edited: Tensor,
    object_mask: Tensor,
    requested_shape: Tensor,
    target_scenes: Sequence[str],
    target_object_index: Tensor,
    supersample: Tensor | int,
    max_distance: float = MAX_PALETTE_DISTANCE,
    tie_tolerance: float = SHAPE_TIE_TOLERANCE,
) -> Tensor:
    """1 where the requested shape is among the candidates whose re-render of the true target scene is nearest to
    the edited image, else 0; NaN where not applicable (module docstring).

    Args:
        edited: (B, 3, H, W) in [0, 1], square with a side in ``EXPORT_RESOLUTIONS``.
        object_mask: (B, H, W) bool, the edited object's true target mask.
        requested_shape: (B,) long ids into ``SHAPES``, -1 = not applicable.
        target_scenes: B true target scenes as JSON (``Scene.to_dict``); ``""`` where there is none.
        target_object_index: (B,) long, the edited object's index in its target scene, -1 where there is none.
        supersample: (B,) long or one int, the renderer's samples per pixel side the benchmark was rendered with.
        max_distance: see ``MAX_PALETTE_DISTANCE``.
        tie_tolerance: see ``SHAPE_TIE_TOLERANCE``.

    Raises:
        ValueError: a non-square or unsupported image side, or missing, malformed or inconsistent scene data for a
            sample whose shape is requested (the message names the sample).
    """
    where = "shape_accuracy"
    batch, _, height, width = edited.shape
    if height != width or height not in EXPORT_RESOLUTIONS:
        raise ValueError(
            f"{where}: candidates are rendered at the edited image's side, which must be square and one of "
            f"{', '.join(map(str, EXPORT_RESOLUTIONS))}; got {height}x{width} (read the benchmark at its export "
            "resolution or one of these)"
        )
    if len(target_scenes) != batch:
        raise ValueError(f"{where}: target_scenes has {len(target_scenes)} entries for a batch of {batch}")
    indices = target_object_index.detach().cpu().long().reshape(-1)
    if indices.numel() != batch:
        raise ValueError(f"{where}: target_object_index is {tuple(target_object_index.shape)}, expected ({batch},)")
    if isinstance(supersample, Tensor):
        samples = supersample.detach().cpu().long().reshape(-1)
        if samples.numel() != batch:
            raise ValueError(f"{where}: supersample is {tuple(supersample.shape)}, expected ({batch},) or an int")
    else:
        samples = torch.full((batch,), int(supersample), dtype=torch.long)
    labels = palette_labels(edited, max_distance).cpu()
    object_mask = object_mask.cpu()
    requested_shape = requested_shape.cpu()
    colours = majority_colour(labels, object_mask)
    result = torch.full((batch,), float("nan"))
    for index in range(batch):
        shape_id = int(requested_shape[index])
        if shape_id < 0 or not bool(object_mask[index].any()):
            continue
        if int(colours[index]) < 0:  # no palette colour at all where the object should be: no object, wrong
            result[index] = 0.0
            continue
        scene, object_index = parse_target_scene(
            where, index, target_scenes[index], int(indices[index]), "the shape is requested"
        )
        if int(samples[index]) < 1:
            raise ValueError(f"{where}: sample {index}: supersample is {int(samples[index])}, expected >= 1")
        errors = shape_render_errors(
            edited[index], scene, object_index, COLOURS[int(colours[index])], int(samples[index])
        )
        if bool(errors.isnan().any()):
            continue
        predicted = errors <= errors.min() + tie_tolerance
        result[index] = float(predicted[shape_id])
    return result.to(edited.device)


def parse_target_scene(
    where: str, index: int, scene_json: str, object_index: int, needed_because: str
) -> tuple[Scene, int]:
    """Sample ``index``'s true target scene from its JSON, checked to hold object ``object_index``.

    Raises:
        ValueError: naming ``where`` and the sample, for an empty or malformed scene or an index outside it;
            ``needed_because`` says why the scene was needed when it is empty.
    """
    if not isinstance(scene_json, str) or not scene_json:
        raise ValueError(f"{where}: sample {index}: {needed_because} but target_scene is empty")
    try:
        scene = Scene.from_dict(json.loads(scene_json))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{where}: sample {index}: target_scene is not a scene ({problem})") from exc
    if not 0 <= object_index < len(scene.objects):
        raise ValueError(
            f"{where}: sample {index}: target_object_index {object_index} is not an object of the target scene's "
            f"{len(scene.objects)}"
        )
    return scene, object_index
