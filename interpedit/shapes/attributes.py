"""Vocabularies of the shapes world: shapes, palette colours, size classes, position grid, backgrounds.

The integer index of a value in ``SHAPES``, ``COLOURS`` or ``SIZES`` is its class id in batches and exports,
so these orders are part of the data format: append new values, never reorder.
"""

from __future__ import annotations

import math

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "hexagon", "star")
"""Shape names, in class-id order."""

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (10, 180, 20),
    "blue": (30, 60, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 20, 210),
    "orange": (245, 125, 0),
    "cyan": (20, 200, 210),
}
"""Object colours. Every pair is at least 99 apart in RGB (Euclidean), so a pixel fully covered by an object
can be classified by its nearest palette colour even after moderate noise or blur."""

COLOURS: tuple[str, ...] = tuple(PALETTE)
"""Colour names, in class-id order."""

SIZES: tuple[str, ...] = ("small", "medium", "large")
"""Size names, in class-id order."""

SIZE_RADII: dict[str, tuple[float, float]] = {
    "small": (0.06, 0.08),
    "medium": (0.10, 0.125),
    "large": (0.15, 0.17),
}
"""Radius range of each size class, as a fraction of the image side. The radius is that of a circle of the same
area: every shape of radius r covers pi * r**2 (see ``SHAPE_EXTENT``), so size words mean area."""

STAR_INNER_RATIO = 0.5
"""Inner to outer radius of the five-pointed star."""

# Area of each shape with circumradius 1; the circumradius of a shape of radius r is r * sqrt(pi / area).
_UNIT_AREA = {
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3.0 * math.sqrt(3.0) / 4.0,
    "hexagon": 3.0 * math.sqrt(3.0) / 2.0,
    "star": 5.0 * STAR_INNER_RATIO * math.sin(math.radians(36.0)),
}

SHAPE_EXTENT: dict[str, float] = {shape: math.sqrt(math.pi / _UNIT_AREA[shape]) for shape in SHAPES}
"""Circumradius of each shape per unit radius (1 for the circle, about 1.56 for the triangle)."""

SHAPE_SYMMETRY_DEGREES: dict[str, float] = {
    "circle": 0.0,
    "square": 90.0,
    "triangle": 120.0,
    "hexagon": 60.0,
    "star": 72.0,
}
"""Smallest rotation (degrees) that maps the shape onto itself; 0 means every rotation does (circle)."""

POSITION_GRID: tuple[tuple[str, str, str], ...] = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)
"""Position words of the 3x3 grid cells, indexed ``[row][column]`` (row 0 is the top of the image)."""

POSITION_WORDS: tuple[str, ...] = tuple(words for row in POSITION_GRID for words in row)
"""All position phrases, row-major over the grid."""

BACKGROUND_KINDS: tuple[str, ...] = ("solid", "gradient", "noise")
"""Background kinds: one colour, a two-colour linear gradient at a random angle, or smooth value noise
between two colours."""

BACKGROUND_MEAN_RANGE: tuple[int, int] = (70, 180)
"""Range of the channel mean of background colours."""

BACKGROUND_MAX_CHROMA = 30
"""Largest difference between the channels of a background colour: backgrounds are greyish, muted tones."""

BACKGROUND_MIN_PALETTE_DISTANCE = 100.0
"""Every colour with its channel mean in ``BACKGROUND_MEAN_RANGE`` and chroma at most ``BACKGROUND_MAX_CHROMA``
is at least this far (RGB, Euclidean) from every palette colour; the nearest is green at about 110. This set is
convex, so gradients and noise, which mix two such colours, stay in it too."""

NOISE_GRID = 4
"""Cells per side of the value-noise lattice (the noise has about this many blobs across the image)."""


def position_cell(position: tuple[float, float]) -> tuple[int, int]:
    """Grid cell ``(row, column)`` of a normalised centre ``(x, y)``."""
    x, y = position
    return min(max(int(y * 3.0), 0), 2), min(max(int(x * 3.0), 0), 2)


def position_phrase(position: tuple[float, float]) -> str:
    """Position words of a normalised centre ``(x, y)``, e.g. ``"top left"``."""
    row, column = position_cell(position)
    return POSITION_GRID[row][column]


def cell_of_phrase(phrase: str) -> tuple[int, int]:
    """Grid cell ``(row, column)`` named by position words such as ``"bottom right"``."""
    for row, names in enumerate(POSITION_GRID):
        if phrase in names:
            return row, names.index(phrase)
    raise ValueError(f"unknown position {phrase!r}; expected one of {', '.join(POSITION_WORDS)}")


def size_of_radius(radius: float) -> str:
    """Size class whose radius range contains ``radius`` (the nearest range when it falls between two)."""
    return min(SIZES, key=lambda size: _distance_to_range(radius, SIZE_RADII[size]))


def _distance_to_range(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return max(low - value, 0.0, value - high)
