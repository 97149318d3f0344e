"""Anti-aliased rendering of scenes with exact, occlusion-aware ground truth.

Each pixel holds ``supersample x supersample`` samples. Every sample shows exactly one thing: the last-drawn
object covering it, or the background. From the samples:

- the image is the mean colour of the samples (the background's colour is taken at the pixel centre);
- ``coverage[i]`` is the fraction of samples where object ``i`` is the visible one;
- ``labels`` is ``i + 1`` where object ``i`` is visible in strictly more than half of the samples, else 0
  (background, or an edge pixel shared without a majority). So ``labels == i + 1`` implies ``coverage[i] > 0.5``,
  and the footprint ``coverage[i] > 0`` contains the label mask and its anti-aliased rim.

An object's samples are computed on a local patch from the fractional part of its pixel position and pasted at the
integer part. Moving an object by whole pixels therefore moves bit-identical coverage, and on a solid background
bit-identical pixels (positions are multiples of ``POSITION_QUANTUM``, so scaling by a power-of-two resolution is
exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from interpedit.data.regions import boxes_from_masks
from interpedit.shapes.attributes import NOISE_GRID, PALETTE
from interpedit.shapes.caption import caption as scene_caption
from interpedit.shapes.geometry import shape_contains
from interpedit.shapes.scene import Background, Scene, ShapeObject


@dataclass(frozen=True)
class Render:
    """A rendered scene and its ground truth (``N`` objects, ``H = W = resolution``).

    Attributes:
        image: (H, W, 3) uint8.
        labels: (H, W) int32 instance labels, 0 = background, ``i + 1`` = object ``i`` (majority rule above).
        coverage: (N, H, W) float32 in [0, 1], fraction of each pixel's samples where object ``i`` is visible.
        boxes: (N, 4) float32 ``x0, y0, x1, y1`` in pixels (exclusive end) around each label mask; zeros if empty.
        objects: the scene's objects, in drawing order.
        caption: the scene's caption.
        background: (H, W, 3) uint8, the background alone (what the image shows where no object is).
    """

    image: np.ndarray
    labels: np.ndarray
    coverage: np.ndarray
    boxes: np.ndarray
    objects: tuple[ShapeObject, ...]
    caption: str
    background: np.ndarray

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool label masks, ``labels == i + 1``."""
        return self.labels[None] == np.arange(1, len(self.objects) + 1)[:, None, None]

    @property
    def footprints(self) -> np.ndarray:
        """(N, H, W) bool, pixels where object ``i`` is visible in at least one sample (``coverage > 0``)."""
        return self.coverage > 0

    @property
    def attributes(self) -> list[dict[str, Any]]:
        """Per-object attribute dicts (shape, colour, size, radius, position, rotation)."""
        return [obj.to_dict() for obj in self.objects]


def render(scene: Scene, resolution: int = 32, supersample: int = 4) -> Render:
    """Render a scene.

    Args:
        scene: the scene, in normalised coordinates.
        resolution: output side in pixels; pixel moves are exact for powers of two.
        supersample: samples per pixel side (anti-aliasing).

    Returns:
        The image and its ground truth; see ``Render``.
    """
    if resolution < 1 or supersample < 1:
        raise ValueError(f"render: resolution ({resolution}) and supersample ({supersample}) must be positive")
    size, step = resolution, supersample
    samples = step * step
    count = len(scene.objects)
    background = render_background(scene.background, size)
    sample_labels = np.zeros((size * step, size * step), dtype=np.int32)
    for index, obj in enumerate(scene.objects):
        _paint_object(sample_labels, obj, index + 1, size, step)

    # Per-pixel sample counts of every label in one bincount: row p, column l = samples of label l in pixel p.
    per_pixel = sample_labels.reshape(size, step, size, step).transpose(0, 2, 1, 3).reshape(size * size, samples)
    flat = np.arange(size * size)[:, None] * (count + 1) + per_pixel
    counts = np.bincount(flat.ravel(), minlength=size * size * (count + 1)).reshape(size * size, count + 1)

    colours = np.array([PALETTE[obj.colour] for obj in scene.objects], dtype=np.int64).reshape(count, 3)
    object_sum = counts[:, 1:] @ colours  # exact integer sums of the object samples' colours
    background_share = counts[:, :1] / samples
    mixed = background.reshape(-1, 3).astype(np.float64) * background_share + object_sum / samples
    image = np.clip(np.rint(mixed), 0, 255).astype(np.uint8).reshape(size, size, 3)

    object_counts = counts[:, 1:]
    labels = np.zeros(size * size, dtype=np.int32)
    if count:
        best = object_counts.argmax(axis=1)
        majority = 2 * object_counts[np.arange(size * size), best] > samples
        labels[majority] = best[majority] + 1
    labels = labels.reshape(size, size)
    coverage = (object_counts.T.reshape(count, size, size) / samples).astype(np.float32)
    masks = labels[None] == np.arange(1, count + 1)[:, None, None]
    boxes = boxes_from_masks(torch.from_numpy(masks)).numpy()
    return Render(
        image=image,
        labels=labels,
        coverage=coverage,
        boxes=boxes,
        objects=scene.objects,
        caption=scene_caption(scene.objects),
        background=background,
    )


def _paint_object(sample_labels: np.ndarray, obj: ShapeObject, label: int, size: int, step: int) -> None:
    # Pixel p spans [p, p + 1); its samples sit at p + (k + 0.5) / step. Offsets from the centre are computed
    # relative to the integer pixel floor(centre), so they depend only on the fractional part of the centre.
    centre_x, centre_y = obj.position[0] * size, obj.position[1] * size
    origin_x, origin_y = math.floor(centre_x), math.floor(centre_y)
    half = math.ceil(obj.extent * size) + 1
    relative = np.arange(-half, half + 1)
    sub = (np.arange(step) + 0.5) / step
    offsets = (relative[:, None] + sub[None, :]).reshape(-1)
    inside = shape_contains(
        obj.shape,
        (offsets - (centre_x - origin_x))[None, :],
        (offsets - (centre_y - origin_y))[:, None],
        obj.radius * size,
        obj.rotation,
    )
    # Paste the patch at pixel (origin - half), cropped to the image.
    top, left = origin_y - half, origin_x - half
    span = 2 * half + 1
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + span, size), min(left + span, size)
    if y1 <= y0 or x1 <= x0:
        return
    patch = inside[(y0 - top) * step : (y1 - top) * step, (x0 - left) * step : (x1 - left) * step]
    region = sample_labels[y0 * step : y1 * step, x0 * step : x1 * step]
    region[patch] = label


def render_background(background: Background, resolution: int) -> np.ndarray:
    """Render a background alone, sampled at pixel centres.

    Returns:
        (H, W, 3) uint8.
    """
    centres = (np.arange(resolution) + 0.5) / resolution
    v, u = np.meshgrid(centres, centres, indexing="ij")
    start = np.array(background.colours[0], dtype=np.float64)
    if background.kind == "solid":
        mix = np.zeros((resolution, resolution))
        end = start
    else:
        end = np.array(background.colours[1], dtype=np.float64)
        if background.kind == "gradient":
            cos, sin = math.cos(background.angle), math.sin(background.angle)
            # Divide by the projection's half-range over the unit square so the gradient spans exactly [0, 1].
            mix = 0.5 + ((u - 0.5) * cos + (v - 0.5) * sin) / (abs(cos) + abs(sin))
        else:
            mix = _value_noise(np.array(background.noise, dtype=np.float64), u, v)
    rgb = start + mix[..., None] * (end - start)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _value_noise(lattice: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Bilinear interpolation of lattice values with a smoothstep weight: continuous with continuous slope
    # across cells, and always within the lattice's value range (so within [0, 1]).
    gx, gy = u * NOISE_GRID, v * NOISE_GRID
    ix = np.clip(np.floor(gx).astype(int), 0, NOISE_GRID - 1)
    iy = np.clip(np.floor(gy).astype(int), 0, NOISE_GRID - 1)
    tx, ty = gx - ix, gy - iy
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    top = lattice[iy, ix] * (1 - tx) + lattice[iy, ix + 1] * tx
    bottom = lattice[iy + 1, ix] * (1 - tx) + lattice[iy + 1, ix + 1] * tx
    return top * (1 - ty) + bottom * ty
