"""Edits of shapes-world scenes with exact ground truth.

Every edit function takes a source scene and either explicit parameters or an ``rng`` to draw the missing ones,
and returns an ``Edit``: both renders, the captions, bracketed prompts, an instruction, JSON-serialisable
parameters, the edited objects and the changed-pixel mask.

The changed-pixel mask is the union of the edited objects' footprints (``coverage > 0``) in the source and the
target render. It contains every pixel whose colour differs: a sample where no edited object is visible in either
render shows the same unedited object, or the background, in both.

Drawn edits (``rng``) keep the scene sensible: edited objects stay inside the image, no two objects share every
caption attribute, every object keeps ``min_visible_fraction`` of its area visible, and the image changes.
Explicit parameters are validated (``ValueError``) but not held to these rules.

Parameters (``Edit.params``) by type; ``object``/``objects`` are indices into the source scene's objects:

- ``move``: ``object``, ``position`` (new normalised centre ``[x, y]``).
- ``resize``: ``object``, ``radius`` (new equal-area radius; the size word follows from it).
- ``recolour``: ``object``, ``colour``.
- ``reshape``: ``object``, ``shape``.
- ``rotate``: ``object``, ``angle`` (degrees, clockwise, a non-zero multiple of 15 in [-180, 180]).
- ``remove``: ``object``.
- ``add``: ``new_object`` (attribute dict, see ``ShapeObject.to_dict``), ``z_index`` (its place in the
  drawing order of the target scene).
- ``swap``: ``objects`` (two indices); their colours, shapes and rotations trade places, positions and sizes stay.

``blended_word`` (PIE-Bench's words for local blending) is ``"<source word> <target word>"`` where one word
changes (recolour ``"red blue"``, reshape ``"circle square"``, resize ``"small large"``), the shape word twice
where the object changes place or pose but not name (move, rotate), and ``""`` otherwise (add, remove, swap, and
a resize within one size class).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from interpedit.shapes.attributes import (
    COLOURS,
    SHAPE_SYMMETRY_DEGREES,
    SHAPES,
    SIZE_RADII,
    SIZES,
    position_cell,
    position_phrase,
)
from interpedit.shapes.caption import caption, referring_expression
from interpedit.shapes.render import Render, render
from interpedit.shapes.scene import (
    Scene,
    ShapeObject,
    SceneConfig,
    is_distinguishable,
    sample_object,
    sample_position_in_cell,
    visible_fractions,
)

EDIT_TYPE_IDS: dict[str, str] = {
    "move": "10",
    "resize": "11",
    "recolour": "6",
    "reshape": "1",
    "rotate": "5",
    "remove": "3",
    "add": "2",
    "swap": "12",
}
"""``editing_type_id`` of each edit type. PIE-Bench ids where one fits (1 change object, 2 add object, 3 delete
object, 5 change pose, 6 change colour); 10 and up are shapes-world types that PIE-Bench does not have."""

EDIT_TYPES: tuple[str, ...] = tuple(EDIT_TYPE_IDS)
"""Edit type names."""

ROTATION_STEP_DEGREES = 15
"""Rotation edits turn by multiples of this, so instructions name the angle exactly."""

INSTRUCTION_WORDS: tuple[str, ...] = (
    "move", "to", "the", "a", "little", "left", "right", "up", "down", "make", "bigger", "smaller", "turn", "into",
    "rotate", "degrees", "clockwise", "counterclockwise", "remove", "add", "at", "swap", "colours", "shapes", "and",
    "of", *(str(angle) for angle in range(ROTATION_STEP_DEGREES, 181, ROTATION_STEP_DEGREES)),
)  # fmt: skip
"""Words that instruction templates add to the caption words (see ``vocabulary``)."""

DEFAULT_MIN_VISIBLE_FRACTION = 0.3
"""Drawn edits keep at least this fraction of every object's area visible."""

DRAW_ATTEMPTS = 40
"""Parameter draws tried before a drawn edit gives up with ``EditNotPossible``."""


class EditNotPossible(ValueError):
    """The scene offers no valid edit of the requested type (e.g. removing from a one-object scene)."""


@dataclass(frozen=True)
class Edit:
    """An edit and its exact ground truth (``H = W = resolution``).

    Attributes:
        edit_type: one of ``EDIT_TYPES``.
        params: JSON-serialisable parameters (see the module docstring).
        source_scene, target_scene: the scenes before and after.
        source, target: their renders.
        source_indices: edited objects in the source scene (empty for ``add``).
        target_indices: the same objects in the target scene (empty for ``remove``).
        instruction: e.g. ``"move the red circle to the top right"``.
        source_prompt, target_prompt: captions with the changed words in brackets.
        blended_word: PIE-Bench blended words (see the module docstring).
        changed_mask: (H, W) bool, union of the edited objects' source and target footprints.
    """

    edit_type: str
    params: dict[str, Any]
    source_scene: Scene
    target_scene: Scene
    source: Render
    target: Render
    source_indices: tuple[int, ...]
    target_indices: tuple[int, ...]
    instruction: str
    source_prompt: str
    target_prompt: str
    blended_word: str
    changed_mask: np.ndarray

    @property
    def type_id(self) -> str:
        """PIE-Bench-style ``editing_type_id``."""
        return EDIT_TYPE_IDS[self.edit_type]

    @property
    def source_caption(self) -> str:
        """Plain caption of the source scene."""
        return self.source.caption

    @property
    def target_caption(self) -> str:
        """Plain caption of the target scene."""
        return self.target.caption

    @property
    def target_masks(self) -> np.ndarray:
        """(N_target, H, W) bool label masks of the target render."""
        return self.target.masks


@dataclass(frozen=True)
class _Plan:
    # What an edit does before rendering; `_finish` turns it into an `Edit`.
    edit_type: str
    params: dict[str, Any]
    target_scene: Scene
    source_indices: tuple[int, ...]
    target_indices: tuple[int, ...]
    instruction: str
    source_highlights: Mapping[int, Collection[str]]
    target_highlights: Mapping[int, Collection[str]]
    blended_word: str


def move(
    scene: Scene,
    index: int | None = None,
    position: tuple[float, float] | None = None,
    *,
    rng: np.random.Generator | None = None,
    resolution: int = 32,
    supersample: int = 4,
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
) -> Edit:
    """Move one object to a new centre; drawn moves go to another grid cell."""

    def plan(index: int, position: tuple[float, float]) -> _Plan:
        obj = scene.objects[index]
        position = (float(position[0]), float(position[1]))
        if position == obj.position:
            raise ValueError(f"move: object {index} is already at {position}")
        moved = dataclasses.replace(obj, position=position)
        reference = referring_expression(scene.objects, index)
        if position_cell(position) != position_cell(obj.position):
            instruction = f"move {reference} to the {position_phrase(position)}"
        else:
            dx, dy = position[0] - obj.position[0], position[1] - obj.position[1]
            if abs(dx) >= abs(dy):
                direction = "to the right" if dx > 0 else "to the left"
            else:
                direction = "down" if dy > 0 else "up"
            instruction = f"move {reference} a little {direction}"
        return _Plan(
            "move",
            {"object": index, "position": [position[0], position[1]]},
            _replace_object(scene, index, moved),
            (index,),
            (index,),
            instruction,
            {index: ("position",)},
            {index: ("position",)},
            f"{obj.shape} {obj.shape}",
        )

    def draw(rng: np.random.Generator) -> _Plan:
        chosen = _draw_index(scene, rng, index)
        obj = scene.objects[chosen]
        cells = [(r, c) for r in range(3) for c in range(3) if (r, c) != position_cell(obj.position)]
        cell = cells[int(rng.integers(len(cells)))]
        return plan(chosen, sample_position_in_cell(rng, obj.extent, cell))

    explicit = None if index is None or position is None else (lambda: plan(_check_index(scene, index), position))
    return _run(scene, explicit, draw, rng, resolution, supersample, min_visible_fraction)


def resize(
    scene: Scene,
    index: int | None = None,
    radius: float | None = None,
    *,
    size: str | None = None,
    rng: np.random.Generator | None = None,
    resolution: int = 32,
    supersample: int = 4,
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
) -> Edit:
    """Change one object's radius; give ``radius``, or ``size`` (a radius is drawn in its range with ``rng``, the
    middle of the range without); drawn resizes change the size class."""
    if size is not None and size not in SIZES:
        raise ValueError(f"resize: unknown size {size!r}; expected one of {', '.join(SIZES)}")

    def plan(index: int, radius: float) -> _Plan:
        obj = scene.objects[index]
        if radius == obj.radius:
            raise ValueError(f"resize: object {index} already has radius {radius}")
        resized = dataclasses.replace(obj, radius=float(radius))
        reference = referring_expression(scene.objects, index)
        if resized.size != obj.size:
            instruction = f"make {reference} {resized.size}"
            blended = f"{obj.size} {resized.size}"
        else:
            instruction = f"make {reference} {'bigger' if radius > obj.radius else 'smaller'}"
            blended = ""
        return _Plan(
            "resize",
            {"object": index, "radius": float(radius)},
            _replace_object(scene, index, resized),
            (index,),
            (index,),
            instruction,
            {index: ("size",)},
            {index: ("size",)},
            blended,
        )

    def draw(rng: np.random.Generator) -> _Plan:
        chosen = _draw_index(scene, rng, index)
        current = scene.objects[chosen].size
        new_size = size or str(rng.choice([s for s in SIZES if s != current]))
        return plan(chosen, float(rng.uniform(*SIZE_RADII[new_size])))

    explicit = None
    if index is not None and radius is not None:
        explicit = lambda: plan(_check_index(scene, index), radius)  # noqa: E731
    elif index is not None and size is not None and rng is None:
        explicit = lambda: plan(_check_index(scene, index), sum(SIZE_RADII[size]) / 2)  # noqa: E731
    return _run(scene, explicit, draw, rng, resolution, supersample, min_visible_fraction)


def recolour(
    scene: Scene,
    index: int | None = None,
    colour: str | None = None,
    *,
    rng: np.random.Generator | None = None,
    resolution: int = 32,
    supersample: int = 4,
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
) -> Edit:
    """Change one object's colour; geometry, and so the label map, stay identical."""

    def plan(index: int, colour: str) -> _Plan:
        obj = scene.objects[index]
        if colour not in COLOURS:
            raise ValueError(f"recolour: unknown colour {colour!r}; expected one of {', '.join(COLOURS)}")
        if colour == obj.colour:
            raise ValueError(f"recolour: object {index} is already {colour}")
        return _Plan(
            "recolour",
            {"object": index, "colour": colour},
            _replace_object(scene, index, dataclasses.replace(obj, colour=colour)),
            (index,),
            (index,),
            f"make {referring_expression(scene.objects, index)} {colour}",
            {index: ("colour",)},
            {index: ("colour",)},
            f"{obj.colour} {colour}",
        )

    def draw(rng: np.random.Generator) -> _Plan:
        chosen = _draw_index(scene, rng, index)
        options = [c for c in COLOURS if c != scene.objects[chosen].colour]
        return plan(chosen, colour or options[int(rng.integers(len(options)))])

    explicit = None if index is None or colour is None else (lambda: plan(_check_index(scene, index), colour))
    return _run(scene, explicit, draw, rng, resolution, supersample, min_visible_fraction)


def reshape(
    scene: Scene,
    index: int | None = None,
    shape: str | None = None,
    *,
    rng: np.random.Generator | None = None,
    resolution: int = 32,
    supersample: int = 4,
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
) -> Edit:
    """Change one object's shape, keeping its centre, area and rotation (a circle's rotation is 0)."""

    def plan(index: int, shape: str) -> _Plan:
        obj = scene.objects[index]
        if shape not in SHAPES:
            raise ValueError(f"reshape: unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
        if shape == obj.shape:
            raise ValueError(f"reshape: object {index} is already a {shape}")
        rotation = 0.0 if shape == "circle" else obj.rotation
        return _Plan(
            "reshape",
            {"object": index, "shape": shape},
            _replace_object(scene, index, dataclasses.replace(obj, shape=shape, rotation=rotation)),
            (index,),
            (index,),
            f"turn {referring_expression(scene.objects, index)} into a {shape}",
            {index: ("shape",)},
            {index: ("shape",)},
            f"{obj.shape} {shape}",
        )

    def draw(rng: np.random.Generator) -> _Plan:
        chosen = _draw_index(scene, rng, index)
        options = [s for s in SHAPES if s != scene.objects[chosen].shape]
        return plan(chosen, shape or options[int(rng.integers(len(options)))])

    explicit = None if index is None or shape is None else (lambda: plan(_check_index(scene, index), shape))
    return _run(scene, explicit, draw, rng, resolution, supersample, min_visible_fraction)


def rotate(
    scene: Scene,
    index: int | None = None,
    angle: int | None = None,
    *,
    rng: np.random.Generator | None = None,
    resolution: int = 32,
    supersample: int = 4,
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
) -> Edit:
    """Rotate one object by ``angle`` degrees clockwise (negative: counterclockwise). Circles cannot be rotated,
    and drawn angles avoid the shape's symmetries, so the image always changes."""

    def plan(index: int, angle: int) -> _Plan:
        obj = scene.objects[index]
        if obj.shape == "circle":
            raise ValueError(f"rotate: object {index} is a circle, which no rotation changes")
        if angle != int(angle) or angle == 0 or abs(angle) > 180 or int(angle) % ROTATION_STEP_DEGREES:
            raise ValueError(
                f"rotate: angle {angle} must be a non-zero multiple of {ROTATION_STEP_DEGREES} degrees in [-180, 180]"
            )
        angle = int(angle)
        rotation = (obj.rotation + math.radians(angle)) % (2 * math.pi)
        direction = "clockwise" if angle > 0 else "counterclockwise"
        return _Plan(
            "rotate",
            {"object": index, "angle": angle},
            _replace_object(scene, index, dataclasses.replace(obj, rotation=rotation)),
            (index,),
            (index,),
            f"rotate {referring_expression(scene.objects, index)} {abs(angle)} degrees {direction}",
            {},
            {},
            f"{obj.shape} {obj.shape}",
        )

    def draw(rng: np.random.Generator) -> _Plan:
        candidates = [i for i, o in enumerate(scene.objects) if o.shape != "circle"]
        chosen = _draw_index(scene, rng, index, candidates)
        period = SHAPE_SYMMETRY_DEGREES[scene.objects[chosen].shape]
        steps = range(ROTATION_STEP_DEGREES, 181, ROTATION_STEP_DEGREES)
        options = [a for a in steps if a % period]
        magnitude = options[int(rng.integers(len(options)))]
        return plan(chosen, magnitude if rng.random() < 0.5 else -magnitude)

    explicit = None if index is None or angle is None else (lambda: plan(_check_index(scene, index), angle))
    return _run(scene, explicit, draw, rng, resolution, supersample, min_visible_fraction)


def remove(
    scene: Scene,
    index: int | None = None,
    *,
    rng: np.random.Generator | None = None,
    resolution: int = 32,
    supersample: int = 4,
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
) -> Edit:
    """Remove one object; drawn removals leave at least one object."""

    def plan(index: int) -> _Plan:
        objects = scene.objects[:index] + scene.objects[index + 1 :]
        return _Plan(
            "remove",
            {"object": index},
            dataclasses.replace(scene, objects=objects),
            (index,),
            (),
            f"remove {referring_expression(scene.objects, index)}",
            {index: ("all",)},
            {},
            "",
        )

    def draw(rng: np.random.Generator) -> _Plan:
        if len(scene.objects) < 2:
            raise EditNotPossible("remove: a drawn removal needs a scene with at least two objects")
        return plan(_draw_index(scene, rng, index))

    explicit = None if index is None else (lambda: plan(_check_index(scene, index)))
    return _run(scene, explicit, draw, rng, resolution, supersample, min_visible_fraction)


def add(
    scene: Scene,
    new_object: ShapeObject | None = None,
    z_index: int | None = None,
    *,
    rng: np.random.Generator | None = None,
    config: SceneConfig | None = None,
    resolution: int = 32,
    supersample: int = 4,
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
) -> Edit:
    """Add an object at place ``z_index`` of the drawing order (default: on top). Drawn objects come from
    ``config``'s vocabularies and may go anywhere in the drawing order."""

    def plan(new_object: ShapeObject, z_index: int) -> _Plan:
        if not 0 <= z_index <= len(scene.objects):
            raise ValueError(f"add: z_index {z_index} is outside [0, {len(scene.objects)}]")
        objects = scene.objects[:z_index] + (new_object,) + scene.objects[z_index:]
        phrase = " ".join(caption([new_object]).split(" ")[1:])  # the caption without its article
        return _Plan(
            "add",
            {"new_object": new_object.to_dict(), "z_index": z_index},
            dataclasses.replace(scene, objects=objects),
            (),
            (z_index,),
            f"add a {phrase}",
            {},
            {z_index: ("all",)},
            "",
        )

    def draw(rng: np.random.Generator) -> _Plan:
        drawn = new_object or sample_object(rng, config)
        where = z_index if z_index is not None else int(rng.integers(len(scene.objects) + 1))
        return plan(drawn, where)

    explicit = None
    if new_object is not None and (rng is None or z_index is not None):
        explicit = lambda: plan(new_object, len(scene.objects) if z_index is None else z_index)  # noqa: E731
    return _run(scene, explicit, draw, rng, resolution, supersample, min_visible_fraction)


def swap(
    scene: Scene,
    first: int | None = None,
    second: int | None = None,
    *,
    rng: np.random.Generator | None = None,
    resolution: int = 32,
    supersample: int = 4,
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
) -> Edit:
    """Swap the appearance (colour, shape and, with the shape, rotation) of two objects; positions and sizes stay."""

    def plan(first: int, second: int) -> _Plan:
        if first == second:
            raise ValueError(f"swap: needs two different objects, got {first} twice")
        a, b = scene.objects[first], scene.objects[second]
        fields = [f for f in ("colour", "shape") if getattr(a, f) != getattr(b, f)]
        if not fields:
            raise ValueError(f"swap: objects {first} and {second} have the same colour and shape")
        objects = list(scene.objects)
        objects[first] = dataclasses.replace(a, colour=b.colour, shape=b.shape, rotation=b.rotation)
        objects[second] = dataclasses.replace(b, colour=a.colour, shape=a.shape, rotation=a.rotation)
        what = " and ".join(f"{f}s" for f in fields)
        references = f"{referring_expression(scene.objects, first)} and {referring_expression(scene.objects, second)}"
        highlights = {first: tuple(fields), second: tuple(fields)}
        return _Plan(
            "swap",
            {"objects": [first, second]},
            dataclasses.replace(scene, objects=tuple(objects)),
            (first, second),
            (first, second),
            f"swap the {what} of {references}",
            highlights,
            highlights,
            "",
        )

    def draw(rng: np.random.Generator) -> _Plan:
        objects = scene.objects
        pairs = [
            (i, j)
            for i in range(len(objects))
            for j in range(i + 1, len(objects))
            if (objects[i].colour, objects[i].shape) != (objects[j].colour, objects[j].shape)
            and (first is None or first in (i, j))
            and (second is None or second in (i, j))
        ]
        if not pairs:
            raise EditNotPossible("swap: no two objects differ in colour or shape")
        return plan(*pairs[int(rng.integers(len(pairs)))])

    explicit = None
    if first is not None and second is not None:
        explicit = lambda: plan(_check_index(scene, first), _check_index(scene, second))  # noqa: E731
    return _run(scene, explicit, draw, rng, resolution, supersample, min_visible_fraction)


EDIT_FUNCTIONS: dict[str, Callable[..., Edit]] = {
    "move": move,
    "resize": resize,
    "recolour": recolour,
    "reshape": reshape,
    "rotate": rotate,
    "remove": remove,
    "add": add,
    "swap": swap,
}
"""Edit function of each edit type."""


def apply_edit(edit_type: str, scene: Scene, **kwargs: Any) -> Edit:
    """Run the edit function of ``edit_type`` with keyword arguments (e.g. ``rng=...`` or ``index=0, colour="red"``)."""
    if edit_type not in EDIT_FUNCTIONS:
        raise ValueError(f"unknown edit type {edit_type!r}; expected one of {', '.join(EDIT_TYPES)}")
    return EDIT_FUNCTIONS[edit_type](scene, **kwargs)


def random_edit(
    scene: Scene,
    rng: np.random.Generator,
    edit_types: tuple[str, ...] = EDIT_TYPES,
    *,
    resolution: int = 32,
    supersample: int = 4,
) -> Edit:
    """A drawn edit of a random type among ``edit_types`` that the scene allows."""
    order = list(edit_types)
    rng.shuffle(order)
    for edit_type in order:
        try:
            return apply_edit(edit_type, scene, rng=rng, resolution=resolution, supersample=supersample)
        except EditNotPossible:
            continue
    raise EditNotPossible(f"the scene allows none of the edits {', '.join(edit_types)}")


def _run(
    scene: Scene,
    explicit: Callable[[], _Plan] | None,
    draw: Callable[[np.random.Generator], _Plan],
    rng: np.random.Generator | None,
    resolution: int,
    supersample: int,
    min_visible_fraction: float,
) -> Edit:
    source = render(scene, resolution, supersample)
    if explicit is not None:
        return _finish(scene, source, explicit(), resolution, supersample)
    if rng is None:
        raise ValueError("edit: give either all of the edit's parameters or an rng to draw the missing ones")
    last_reason = "no draw attempted"
    for _ in range(DRAW_ATTEMPTS):
        try:
            plan = draw(rng)
        except ValueError as error:
            if isinstance(error, EditNotPossible):
                raise
            last_reason = str(error)
            continue
        reason = _unsuitable(plan, min_visible_fraction)
        if reason:
            last_reason = reason
            continue
        edit = _finish(scene, source, plan, resolution, supersample)
        if np.array_equal(edit.source.image, edit.target.image):
            last_reason = "the edit did not change the image"
            continue
        return edit
    raise EditNotPossible(f"no suitable drawn edit after {DRAW_ATTEMPTS} tries (last: {last_reason})")


def _unsuitable(plan: _Plan, min_visible_fraction: float) -> str:
    objects = plan.target_scene.objects
    if not all(objects[i].fits_in_frame() for i in plan.target_indices):
        return "an edited object leaves the image"
    if not is_distinguishable(objects):
        return "two objects would share every caption attribute"
    if np.any(visible_fractions(objects) < min_visible_fraction):
        return "an object would be hidden too much"
    return ""


def _finish(scene: Scene, source: Render, plan: _Plan, resolution: int, supersample: int) -> Edit:
    target = render(plan.target_scene, resolution, supersample)
    changed = np.zeros((resolution, resolution), dtype=bool)
    for index in plan.source_indices:
        changed |= source.footprints[index]
    for index in plan.target_indices:
        changed |= target.footprints[index]
    return Edit(
        edit_type=plan.edit_type,
        params=plan.params,
        source_scene=scene,
        target_scene=plan.target_scene,
        source=source,
        target=target,
        source_indices=plan.source_indices,
        target_indices=plan.target_indices,
        instruction=plan.instruction,
        source_prompt=caption(scene.objects, plan.source_highlights),
        target_prompt=caption(plan.target_scene.objects, plan.target_highlights),
        blended_word=plan.blended_word,
        changed_mask=changed,
    )


def _replace_object(scene: Scene, index: int, obj: ShapeObject) -> Scene:
    return dataclasses.replace(scene, objects=scene.objects[:index] + (obj,) + scene.objects[index + 1 :])


def _check_index(scene: Scene, index: int) -> int:
    if not 0 <= index < len(scene.objects):
        raise ValueError(f"edit: object index {index} is outside the scene's {len(scene.objects)} objects")
    return int(index)


def _draw_index(
    scene: Scene, rng: np.random.Generator, index: int | None, candidates: list[int] | None = None
) -> int:
    candidates = list(range(len(scene.objects))) if candidates is None else candidates
    if index is not None:
        _check_index(scene, index)
        if index not in candidates:
            raise EditNotPossible(f"edit: object {index} cannot take this edit")
        return int(index)
    if not candidates:
        raise EditNotPossible("edit: no object in the scene can take this edit")
    return candidates[int(rng.integers(len(candidates)))]

