"""Where did the edited object end up? Its pixels in the edited image against its true mask (shapes world).

1. The edited object's pixels in a method's output (the *predicted mask*) are found by colour. Candidates per
   pixel: every palette colour (``interpedit.shapes.PALETTE``) and the true background's colour at that pixel (the
   target scene's background rendered alone by ``interpedit.shapes.render_background`` at the image's side; the
   renderer samples backgrounds at pixel centres, so the export's ``supersample`` does not change it). A pixel
   belongs to the object when its nearest candidate (Euclidean RGB, 0-255 units, float32) is the object's palette
   colour (``requested_colour``); a tie with the background counts as background. Unlike ``palette_labels`` there
   is no distance cut-off: a background pixel is nearest to itself however close a gradient or noise background
   comes to a palette colour.
2. Pixels that the true target label map gives to *another* object of the same colour are left out of it (that
   object is not the edited one). Without a label map nothing is left out.
3. The true target's *ambiguous* pixels are left out of both the predicted and the true mask
   (``ambiguous_truth_mask``): pixels whose 8-bit colour is neither a palette colour nor the background's colour
   there (anti-aliased rims and blends of objects), and, with a label map, palette-coloured pixels labelled
   background (shared by objects of one colour without a majority). Their label comes from the renderer's
   sample-majority rule, which no colour rule reproduces: a half-covered rim pixel is an exact tie, and a blend of
   two palette colours can be nearer a third colour or the background than either. Every other pixel of the true
   target is exactly one candidate colour, so the true target's predicted mask is exactly its label mask there,
   and the true target scores IoU 1, found 1 and centroid error 0 on every exported sample.

Per image, from the two masks less the ambiguous pixels (NaN where the edited object is not in the target,
``target_object_index < 0`` or ``requested_colour < 0``, or its true mask has no unambiguous pixel):

- ``gt/object_iou``: intersection over union of the predicted and the true mask.
- ``gt/object_found``: 1 if the predicted mask has any pixel, else 0.
- ``gt/centroid_error``: Euclidean distance in pixels between the centroids (mean pixel coordinates) of the
  predicted and the true mask; NaN where the predicted mask is empty (``gt/object_found`` counts those misses).

A benchmark read at another resolution than its export has resized targets: more of their pixels are blends, so
more are left out, and the background is rendered at the new side rather than resized.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from interpedit.metrics.attribute_accuracy import parse_target_scene
from interpedit.shapes import COLOURS, PALETTE, Scene, render_background

PLACEMENT_KEYS: tuple[str, ...] = ("gt/object_iou", "gt/object_found", "gt/centroid_error")
"""The keys ``object_placement`` returns, in ``GroundTruthMetrics``' naming."""


def palette_tensor(device: torch.device | str | None = None) -> Tensor:
    """(len(COLOURS), 3) float32 palette RGB in 0-255 units, in ``COLOURS`` order."""
    return torch.tensor([PALETTE[name] for name in COLOURS], dtype=torch.float32, device=device)


def parse_scenes(where: str, target_scenes: Sequence[str], target_object_index: Tensor) -> list[Scene | None]:
    """The true target scenes of the images whose edited object is in the target (``target_object_index >= 0``).

    Args:
        where: the caller, for messages.
        target_scenes: B scenes as JSON (``Scene.to_dict``), ``""`` where there is none.
        target_object_index: (B,) integer, the edited object's index in its scene, -1 where there is none.

    Returns:
        B scenes, None where ``target_object_index < 0``.

    Raises:
        ValueError: a needed scene is empty or malformed, or the index is not one of its objects (names the image).
    """
    if isinstance(target_scenes, str) or len(target_scenes) != len(target_object_index):
        raise ValueError(
            f"{where}: target_scene must be a list of {len(target_object_index)} JSON strings, one per image"
        )
    scenes: list[Scene | None] = []
    for index, (text, object_index) in enumerate(zip(target_scenes, target_object_index.tolist())):
        if object_index < 0:
            scenes.append(None)
            continue
        scene, _ = parse_target_scene(where, index, text, object_index, "the edited object is in the target")
        scenes.append(scene)
    return scenes


def render_backgrounds(scenes: Sequence[Scene | None], side: int, device: torch.device | str | None = None) -> Tensor:
    """Each scene's background alone, as the benchmark loads images: (B, 3, side, side) float32 in [0, 1].

    Zeros where the scene is None. The renderer samples backgrounds at pixel centres, so this is exactly the
    background of a render at ``side`` whatever its supersampling.
    """
    images = np.zeros((len(scenes), side, side, 3), dtype=np.uint8)
    for index, scene in enumerate(scenes):
        if scene is not None:
            images[index] = render_background(scene.background, side)
    # uint8 -> float32 / 255, the benchmark loader's conversion, so an exact background matches bit for bit.
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255.0


def label_colours(scenes: Sequence[Scene | None], target_object_index: Tensor, num_labels: int) -> Tensor:
    """Palette colour id of each label of each target label map, -1 for the background, the edited object and
    labels the scene does not have: -> (B, num_labels) long (label ``l`` is object ``l - 1``)."""
    table = torch.full((len(scenes), num_labels), -1, dtype=torch.long)
    for index, (scene, edited) in enumerate(zip(scenes, target_object_index.tolist())):
        if scene is None:
            continue
        for object_index, obj in enumerate(scene.objects[: num_labels - 1]):
            if object_index != edited:
                table[index, object_index + 1] = COLOURS.index(obj.colour)
    return table


def same_colour_objects_mask(target_labels: Tensor, colours_of_labels: Tensor, colour: Tensor) -> Tensor:
    """Pixels the true target label map gives to another object of the edited object's colour.

    Args:
        target_labels: (B, H, W) integer label maps, 0 = background, ``i + 1`` = object ``i``; negative values
            (no ground truth) count as background.
        colours_of_labels: (B, L) long, ``label_colours`` (-1 for the edited object itself), L > every label.
        colour: (B,) long ``COLOURS`` id of the edited object, -1 = none.

    Returns:
        (B, H, W) bool.
    """
    labels = target_labels.long().clamp(min=0).flatten(1)  # (B, H * W)
    table = colours_of_labels.to(labels.device)
    pixel_colours = table.gather(1, labels).view(target_labels.shape)
    wanted = colour.to(labels.device).long()[:, None, None]
    return (pixel_colours == wanted) & (wanted >= 0)


def candidate_distances(images: Tensor, backgrounds: Tensor) -> Tensor:
    """Squared RGB distances (0-255 units) of every pixel to the candidates: the background's colour at that pixel
    first, then the palette in ``COLOURS`` order: (B, 3, H, W) x 2 in [0, 1] -> (B, H, W, 1 + len(COLOURS))."""
    pixels = images.float().permute(0, 2, 3, 1) * 255.0  # (B, H, W, 3)
    background = backgrounds.to(pixels.device).float().permute(0, 2, 3, 1) * 255.0
    to_palette = (pixels[..., None, :] - palette_tensor(pixels.device)).square().sum(dim=-1)  # (B, H, W, P)
    to_background = (pixels - background).square().sum(dim=-1, keepdim=True)  # (B, H, W, 1)
    return torch.cat([to_background, to_palette], dim=-1)


def nearest_candidates(images: Tensor, backgrounds: Tensor) -> Tensor:
    """Nearest candidate per pixel: -1 the background, else the ``COLOURS`` id: -> (B, H, W) long.

    The background comes first and ``argmin`` takes the first minimum, so a tie with the background is background.
    """
    return candidate_distances(images, backgrounds).argmin(dim=-1) - 1


def ambiguous_truth_mask(target: Tensor, backgrounds: Tensor, target_labels: Tensor | None = None) -> Tensor:
    """Pixels of the true target whose owner its colours cannot show, left out of both masks: (B, H, W) bool.

    A true target pixel is *exact* when its 8-bit colour (``round(255 x)``) equals a candidate: the background's
    colour there or a palette colour. The rest are anti-aliased blends (object rims, two objects meeting), whose
    label comes from the renderer's sample-majority rule, which nearest colours cannot reproduce: a rim half
    covered ties, and a blend of two palette colours can be nearest to a third colour or the background. Also
    ambiguous, given label maps: exact palette pixels labelled background (0), i.e. covered by several objects of
    one colour with no majority.
    """
    pixels = (target.float() * 255.0).round().permute(0, 2, 3, 1)  # (B, H, W, 3)
    background = (backgrounds.to(pixels.device).float() * 255.0).round().permute(0, 2, 3, 1)
    on_palette = (pixels[..., None, :] == palette_tensor(pixels.device)).all(dim=-1).any(dim=-1)
    on_background = (pixels == background).all(dim=-1)
    ambiguous = ~(on_palette | on_background)
    if target_labels is not None:
        ambiguous = ambiguous | (on_palette & ~on_background & (target_labels.to(pixels.device) == 0))
    return ambiguous


def predicted_object_mask(
    edited: Tensor, backgrounds: Tensor, colour: Tensor, exclude: Tensor | None = None
) -> Tensor:
    """Pixels whose nearest candidate colour is the edited object's palette colour (module docstring).

    Args:
        edited: (B, 3, H, W) in [0, 1], the method's results.
        backgrounds: (B, 3, H, W) in [0, 1], the true target scenes' backgrounds (``render_backgrounds``).
        colour: (B,) long ``COLOURS`` id of the edited object; -1 gives an empty mask.
        exclude: optional (B, H, W) bool pixels never counted (``same_colour_objects_mask``).

    Returns:
        (B, H, W) bool.
    """
    nearest = nearest_candidates(edited, backgrounds)
    wanted = colour.to(nearest.device).long()[:, None, None]
    mask = (nearest == wanted) & (wanted >= 0)
    if exclude is not None:
        mask = mask & ~exclude.to(mask.device)
    return mask


def mask_centroids(masks: Tensor) -> Tensor:
    """Mean pixel coordinates ``(x, y)`` of each mask: (B, H, W) bool -> (B, 2) float32; NaN where empty."""
    height, width = masks.shape[-2:]
    weight = masks.float()
    pixels = weight.sum(dim=(1, 2))
    ys = torch.arange(height, dtype=torch.float32, device=masks.device)
    xs = torch.arange(width, dtype=torch.float32, device=masks.device)
    x = (weight.sum(dim=1) * xs).sum(dim=1)
    y = (weight.sum(dim=2) * ys).sum(dim=1)
    centroids = torch.stack([x, y], dim=1) / pixels.clamp(min=1)[:, None]
    return torch.where(pixels[:, None] > 0, centroids, torch.full_like(centroids, float("nan")))


def object_placement(predicted: Tensor, true_mask: Tensor, ignore: Tensor | None = None) -> dict[str, Tensor]:
    """IoU, found and centroid error of predicted object masks against the true ones (module docstring).

    Args:
        predicted: (B, H, W) bool, ``predicted_object_mask``.
        true_mask: (B, H, W) bool, the edited object's label mask in the true target.
        ignore: optional (B, H, W) bool pixels taken out of both masks first (``ambiguous_truth_mask``).

    Returns:
        ``{key: (B,) float32}`` for ``PLACEMENT_KEYS``; every value NaN where the true mask (less ``ignore``) is
        empty, the centroid error also where the predicted one is.
    """
    true_mask = true_mask.to(predicted.device)
    if ignore is not None:
        keep = ~ignore.to(predicted.device)
        predicted, true_mask = predicted & keep, true_mask & keep
    intersection = (predicted & true_mask).flatten(1).sum(dim=1).float()
    union = (predicted | true_mask).flatten(1).sum(dim=1).float()
    found = predicted.flatten(1).any(dim=1).float()
    error = (mask_centroids(predicted) - mask_centroids(true_mask)).square().sum(dim=1).sqrt()
    defined = true_mask.flatten(1).any(dim=1)
    undefined = torch.full_like(found, float("nan"))
    return {
        "gt/object_iou": torch.where(defined, intersection / union.clamp(min=1), undefined),
        "gt/object_found": torch.where(defined, found, undefined),
        "gt/centroid_error": torch.where(defined, error, undefined),
    }


def placement_metrics(
    edited: Tensor,
    target: Tensor,
    colour: Tensor,
    true_mask: Tensor,
    target_scenes: Sequence[str],
    target_object_index: Tensor,
    target_labels: Tensor | None = None,
    where: str = "placement_metrics",
) -> dict[str, Tensor]:
    """The placement keys of a batch, end to end: backgrounds, candidate colours, exclusion, scores.

    Args:
        edited: (B, 3, H, W) in [0, 1], square.
        target: (B, 3, H, W) in [0, 1], the true targets (their ambiguous pixels are left out).
        colour: (B,) long ``COLOURS`` id of the edited object in the target, -1 = none.
        true_mask: (B, H, W) bool, its label mask in the true target.
        target_scenes: B true target scenes as JSON, ``""`` where there is none.
        target_object_index: (B,) integer, the edited object's index in its scene, -1 where there is none.
        target_labels: optional (B, H, W) integer true target label maps; other objects of the edited object's
            colour are left out of its predicted pixels (nothing is left out without them).
        where: the caller, for messages.

    Returns:
        ``{key: (B,) float32}`` for ``PLACEMENT_KEYS``, NaN where not applicable (module docstring).

    Raises:
        ValueError: non-square images, malformed scenes or label maps of the wrong shape.
    """
    batch, _, height, width = edited.shape
    indices = target_object_index.detach().cpu().long()
    colour = colour.to(edited.device).long()
    applicable = (indices.to(edited.device) >= 0) & (colour >= 0)
    if not bool(applicable.any()):
        undefined = torch.full((batch,), float("nan"), device=edited.device)
        return {key: undefined for key in PLACEMENT_KEYS}
    if height != width:
        raise ValueError(f"{where}: object placement renders square backgrounds; the images are {height}x{width}")
    scenes = parse_scenes(where, target_scenes, indices)
    backgrounds = render_backgrounds(scenes, height, edited.device)
    exclude = None
    if target_labels is not None:
        if not isinstance(target_labels, Tensor) or target_labels.is_floating_point() or target_labels.is_complex() \
                or target_labels.dtype == torch.bool:
            raise TypeError(f"{where}: target_labels must be an integer (B, H, W) label map")
        if tuple(target_labels.shape) != (batch, height, width):
            raise ValueError(
                f"{where}: target_labels is {tuple(target_labels.shape)} but the images need {(batch, height, width)}"
            )
        num_labels = max(int(target_labels.max()) if target_labels.numel() else 0, 0) + 1
        num_labels = max(num_labels, 1 + max((len(s.objects) for s in scenes if s is not None), default=0))
        exclude = same_colour_objects_mask(target_labels, label_colours(scenes, indices, num_labels), colour)
    predicted = predicted_object_mask(edited, backgrounds, colour, exclude)
    ignore = ambiguous_truth_mask(target.to(edited.device), backgrounds, target_labels)
    values = object_placement(predicted, true_mask.to(edited.device), ignore)
    undefined = torch.full((batch,), float("nan"), device=edited.device)
    return {key: torch.where(applicable, value, undefined) for key, value in values.items()}
