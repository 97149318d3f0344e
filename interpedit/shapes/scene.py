"""Scenes of the shapes world and their sampler.

A scene lives in normalised coordinates (``x`` right, ``y`` down, both in [0, 1] over the image), so one scene
renders at any resolution. Object list order is drawing order: later objects occlude earlier ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from interpedit.shapes.attributes import (
    BACKGROUND_KINDS,
    BACKGROUND_MAX_CHROMA,
    BACKGROUND_MEAN_RANGE,
    COLOURS,
    NOISE_GRID,
    SHAPE_EXTENT,
    SHAPES,
    SIZE_RADII,
    SIZES,
    position_cell,
    size_of_radius,
)
from interpedit.shapes.geometry import shape_contains
from interpedit.user_errors import OptionError

POSITION_QUANTUM = 2.0**-16
"""Object centres are multiples of this. Scaling by a power-of-two resolution is then exact in floating point,
so moving an object by whole pixels moves its rendered pixels exactly (see ``render``)."""

VISIBILITY_GRID = 64
"""Points per side of the grid on which the sampler measures how much of each object stays visible."""


def quantise(value: float) -> float:
    """Round a normalised coordinate to the nearest multiple of ``POSITION_QUANTUM``."""
    return round(value / POSITION_QUANTUM) * POSITION_QUANTUM


@dataclass(frozen=True)
class Background:
    """The backdrop of a scene.

    Attributes:
        kind: one of ``BACKGROUND_KINDS``.
        colours: one RGB colour for ``solid``, two (start, end) for ``gradient`` and ``noise``.
        angle: gradient direction in radians (0 runs left to right, pi/2 top to bottom); unused otherwise.
        noise: value-noise lattice of ``(NOISE_GRID + 1)`` rows of ``NOISE_GRID + 1`` values in [0, 1], mixing
            the two colours; empty unless ``kind == "noise"``.
    """

    kind: str
    colours: tuple[tuple[int, int, int], ...]
    angle: float = 0.0
    noise: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in BACKGROUND_KINDS:
            raise ValueError(
                f"background.kind: unknown kind {self.kind!r}; expected one of {', '.join(BACKGROUND_KINDS)}"
            )
        expected = 1 if self.kind == "solid" else 2
        if len(self.colours) != expected or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.colours):
            raise OptionError(f"background.colours: a {self.kind} background needs {expected} RGB colour(s) in 0..255")
        if self.kind == "noise" and (
            len(self.noise) != NOISE_GRID + 1 or any(len(row) != NOISE_GRID + 1 for row in self.noise)
        ):
            raise OptionError(f"background.noise: expected a {NOISE_GRID + 1}x{NOISE_GRID + 1} lattice")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "kind": self.kind,
            "colours": [list(c) for c in self.colours],
            "angle": self.angle,
            "noise": [list(row) for row in self.noise],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Background:
        """Inverse of ``to_dict``."""
        return cls(
            kind=data["kind"],
            colours=tuple(tuple(int(v) for v in c) for c in data["colours"]),
            angle=float(data.get("angle", 0.0)),
            noise=tuple(tuple(float(v) for v in row) for row in data.get("noise", ())),
        )


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene.

    Attributes:
        shape: one of ``SHAPES``.
        colour: one of ``COLOURS``.
        radius: equal-area radius as a fraction of the image side; its size word is derived from it.
        position: centre ``(x, y)`` in normalised coordinates.
        rotation: radians, clockwise on screen.
    """

    shape: str
    colour: str
    radius: float
    position: tuple[float, float]
    rotation: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise OptionError(f"object.shape: unknown shape {self.shape!r}; expected one of {', '.join(SHAPES)}")
        if self.colour not in COLOURS:
            raise OptionError(f"object.colour: unknown colour {self.colour!r}; expected one of {', '.join(COLOURS)}")
        if not (math.isfinite(self.radius) and 0.0 < self.radius < 0.5):
            raise OptionError(f"object.radius: {self.radius} is outside (0, 0.5)")
        if len(self.position) != 2 or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in self.position):
            raise OptionError(f"object.position: {self.position} is not an (x, y) pair in [0, 1]")
        if not math.isfinite(self.rotation):
            raise OptionError(f"object.rotation: {self.rotation} is not finite")

    @property
    def size(self) -> str:
        """Size word (``small``, ``medium`` or ``large``) of the radius."""
        return size_of_radius(self.radius)

    @property
    def extent(self) -> float:
        """Circumradius: no point of the object is farther than this from its centre."""
        return self.radius * SHAPE_EXTENT[self.shape]

    def fits_in_frame(self) -> bool:
        """Whether the whole object lies inside the image."""
        return all(self.extent <= v <= 1.0 - self.extent for v in self.position)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; ``size`` is included for readers and ignored by ``from_dict``."""
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "radius": self.radius,
            "position": [self.position[0], self.position[1]],
            "rotation": self.rotation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShapeObject:
        """Inverse of ``to_dict``."""
        return cls(
            shape=data["shape"],
            colour=data["colour"],
            radius=float(data["radius"]),
            position=(float(data["position"][0]), float(data["position"][1])),
            rotation=float(data.get("rotation", 0.0)),
        )


@dataclass(frozen=True)
class Scene:
    """A background and objects in drawing order (later ones occlude earlier ones)."""

    background: Background
    objects: tuple[ShapeObject, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"background": self.background.to_dict(), "objects": [o.to_dict() for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Inverse of ``to_dict``."""
        return cls(
            background=Background.from_dict(data["background"]),
            objects=tuple(ShapeObject.from_dict(o) for o in data["objects"]),
        )


@dataclass(frozen=True)
class SceneConfig:
    """What ``sample_scene`` may draw.

    Attributes:
        min_objects: fewest objects in a scene.
        max_objects: most objects in a scene.
        backgrounds: background kinds to draw from.
        shapes: shapes to draw from.
        colours: colours to draw from.
        sizes: size classes to draw from.
        min_visible_fraction: every object keeps at least this fraction of its area visible after occlusion.
        max_attempts: placements tried per object before the whole scene is redrawn.
    """

    min_objects: int = 1
    max_objects: int = 4
    backgrounds: tuple[str, ...] = BACKGROUND_KINDS
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = COLOURS
    sizes: tuple[str, ...] = SIZES
    min_visible_fraction: float = 0.4
    max_attempts: int = 50

    def __post_init__(self) -> None:
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"scene config: need 0 <= min_objects <= max_objects, got {self.min_objects} and {self.max_objects}"
            )
        for name, chosen, known in (
            ("backgrounds", self.backgrounds, BACKGROUND_KINDS),
            ("shapes", self.shapes, SHAPES),
            ("colours", self.colours, COLOURS),
            ("sizes", self.sizes, SIZES),
        ):
            unknown = [v for v in chosen if v not in known]
            if not chosen or unknown:
                raise ValueError(
                    f"scene config.{name}: {unknown or 'empty'} not valid; choose from {', '.join(known)}"
                )
        if not 0.0 <= self.min_visible_fraction <= 1.0:
            raise ValueError(f"scene config.min_visible_fraction: {self.min_visible_fraction} is outside [0, 1]")


def sample_scene(rng: np.random.Generator, config: SceneConfig | None = None) -> Scene:
    """Draw a scene: a background and ``min_objects..max_objects`` objects.

    Every object is fully inside the image, keeps at least ``config.min_visible_fraction`` of its area visible,
    and differs from the others in size, colour, shape or position cell, so a caption names each one
    unambiguously. Objects may overlap, so occlusion happens in a good share of multi-object scenes.
    """
    config = config or SceneConfig()
    background = sample_background(rng, config.backgrounds)
    while True:
        count = int(rng.integers(config.min_objects, config.max_objects + 1))
        objects: list[ShapeObject] = []
        for _ in range(count):
            placed = place_object(objects, rng, config)
            if placed is None:
                break
            objects.append(placed)
        if len(objects) == count:
            return Scene(background=background, objects=tuple(objects))


def place_object(
    objects: list[ShapeObject] | tuple[ShapeObject, ...], rng: np.random.Generator, config: SceneConfig | None = None
) -> ShapeObject | None:
    """Draw a new object to put on top of ``objects`` that keeps the scene's guarantees, or None if none found."""
    config = config or SceneConfig()
    for _ in range(config.max_attempts):
        candidate = sample_object(rng, config)
        if is_distinguishable([*objects, candidate]) and all(
            visible_fractions([*objects, candidate]) >= config.min_visible_fraction
        ):
            return candidate
    return None


def sample_object(rng: np.random.Generator, config: SceneConfig | None = None) -> ShapeObject:
    """Draw one object anywhere inside the image, ignoring the rest of the scene."""
    config = config or SceneConfig()
    shape = str(rng.choice(config.shapes))
    colour = str(rng.choice(config.colours))
    size = str(rng.choice(config.sizes))
    radius = float(rng.uniform(*SIZE_RADII[size]))
    # Circles are rotation-invariant; a zero rotation keeps their attributes canonical.
    rotation = 0.0 if shape == "circle" else float(rng.uniform(0.0, 2 * math.pi))
    extent = radius * SHAPE_EXTENT[shape]
    position = (sample_coordinate(rng, extent, 1.0 - extent), sample_coordinate(rng, extent, 1.0 - extent))
    return ShapeObject(shape=shape, colour=colour, radius=radius, position=position, rotation=rotation)


def sample_coordinate(rng: np.random.Generator, low: float, high: float) -> float:
    """A multiple of ``POSITION_QUANTUM`` drawn uniformly from ``[low, high)``."""
    first = math.ceil(low / POSITION_QUANTUM)
    last = math.ceil(high / POSITION_QUANTUM) - 1
    if last < first:
        raise ValueError(f"empty coordinate range [{low}, {high})")
    return int(rng.integers(first, last + 1)) * POSITION_QUANTUM


def sample_position_in_cell(
    rng: np.random.Generator, extent: float, cell: tuple[int, int]
) -> tuple[float, float]:
    """A centre ``(x, y)`` in grid cell ``(row, column)`` keeping an object of circumradius ``extent`` in the image."""
    row, column = cell
    x = sample_coordinate(rng, max(column / 3.0, extent), min((column + 1) / 3.0, 1.0 - extent))
    y = sample_coordinate(rng, max(row / 3.0, extent), min((row + 1) / 3.0, 1.0 - extent))
    return x, y


def sample_background(rng: np.random.Generator, kinds: tuple[str, ...] = BACKGROUND_KINDS) -> Background:
    """Draw a background of one of ``kinds`` from the muted colours (see ``BACKGROUND_MIN_PALETTE_DISTANCE``)."""
    kind = str(rng.choice(kinds))
    if kind == "solid":
        return Background(kind=kind, colours=(sample_muted_colour(rng),))
    colours = (sample_muted_colour(rng), sample_muted_colour(rng))
    if kind == "gradient":
        return Background(kind=kind, colours=colours, angle=float(rng.uniform(0.0, 2 * math.pi)))
    lattice = rng.random((NOISE_GRID + 1, NOISE_GRID + 1))
    return Background(kind=kind, colours=colours, noise=tuple(tuple(float(v) for v in row) for row in lattice))


def sample_muted_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A greyish RGB colour: channel mean in ``BACKGROUND_MEAN_RANGE``, chroma at most ``BACKGROUND_MAX_CHROMA``."""
    low, high = BACKGROUND_MEAN_RANGE
    half = BACKGROUND_MAX_CHROMA // 2
    while True:
        grey = int(rng.integers(low, high + 1))
        colour = grey + rng.integers(-half, half + 1, size=3)
        if low <= colour.mean() <= high:
            return int(colour[0]), int(colour[1]), int(colour[2])


def visible_fractions(objects: list[ShapeObject] | tuple[ShapeObject, ...], grid: int = VISIBILITY_GRID) -> np.ndarray:
    """Fraction of each object's area left visible by the objects drawn after it, measured on a point grid.

    Returns:
        (N,) float64; 0 for an object too small to cover any grid point.
    """
    centres = (np.arange(grid) + 0.5) / grid
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    top = np.full((grid, grid), -1)
    areas = np.zeros(len(objects))
    for index, obj in enumerate(objects):
        inside = shape_contains(obj.shape, xs - obj.position[0], ys - obj.position[1], obj.radius, obj.rotation)
        areas[index] = inside.sum()
        top[inside] = index
    visible = np.bincount(top[top >= 0], minlength=len(objects))[: len(objects)]
    return np.divide(visible, areas, out=np.zeros(len(objects)), where=areas > 0)


def is_distinguishable(objects: list[ShapeObject] | tuple[ShapeObject, ...]) -> bool:
    """Whether no two objects share size, colour, shape and position cell (so captions tell them apart)."""
    keys = [(o.size, o.colour, o.shape, position_cell(o.position)) for o in objects]
    return len(set(keys)) == len(keys)


def scene_is_valid(scene: Scene, min_visible_fraction: float) -> bool:
    """Whether a scene keeps ``sample_scene``'s guarantees (in frame, visible enough, distinguishable)."""
    objects = scene.objects
    return (
        all(o.fits_in_frame() for o in objects)
        and is_distinguishable(objects)
        and bool(np.all(visible_fractions(objects) >= min_visible_fraction))
    )

