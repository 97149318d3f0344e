"""Point-in-shape tests, shared by the renderer and the scene sampler's visibility check."""

from __future__ import annotations

import math

import numpy as np

from interpedit.shapes.attributes import SHAPE_EXTENT, SHAPES, STAR_INNER_RATIO


def shape_vertices(shape: str) -> np.ndarray:
    """Polygon vertices of a shape with circumradius 1 and rotation 0, pointing up (y grows downwards).

    Returns:
        (V, 2) float64 ``x, y``; empty for the circle.
    """
    if shape == "circle":
        return np.zeros((0, 2))
    if shape == "star":
        angles = -math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER_RATIO)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    corners = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
    # The square starts at -135 degrees so that its sides are axis-aligned at rotation 0.
    start = -3 * math.pi / 4 if shape == "square" else -math.pi / 2
    angles = start + np.arange(corners) * 2 * math.pi / corners
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


_VERTICES = {shape: shape_vertices(shape) for shape in SHAPES}


def shape_contains(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float, rotation: float) -> np.ndarray:
    """Which points lie inside a shape centred at the origin.

    Args:
        shape: one of ``SHAPES``.
        dx, dy: point offsets from the shape's centre (any common unit, y pointing down), same shape.
        radius: equal-area radius in the same unit (the circumradius is ``radius * SHAPE_EXTENT[shape]``).
        rotation: radians, clockwise on screen.

    Returns:
        bool array shaped like ``dx``.
    """
    if shape not in _VERTICES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    circumradius = radius * SHAPE_EXTENT[shape]
    # Rotate the points by -rotation instead of the polygon by +rotation: same result, and the polygon's
    # vertices stay the precomputed constants.
    cos, sin = math.cos(rotation), math.sin(rotation)
    u = (cos * dx + sin * dy) / circumradius
    v = (-sin * dx + cos * dy) / circumradius
    return _inside_polygon(_VERTICES[shape], u, v)


def _inside_polygon(vertices: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Even-odd crossing rule: works for the non-convex star as well as the convex polygons.
    inside = np.zeros(np.shape(x), dtype=bool)
    count = len(vertices)
    for k in range(count):
        x0, y0 = vertices[k]
        x1, y1 = vertices[(k + 1) % count]
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        x_at_y = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_at_y)
    return inside
