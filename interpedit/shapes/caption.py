"""Captions and referring expressions built from object attributes.

A caption lists the objects in drawing order, joined by ``and``:
``"a small red circle at the top left and a large blue square at the bottom"``. It contains no punctuation, so
``caption.split(" ")`` gives words of ``vocabulary()``. Bracketed prompts (PIE-Bench style, for edits) are
captions with ``[`` and ``]`` around the changed words; removing the brackets gives the plain caption.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from interpedit.shapes.attributes import position_phrase
from interpedit.shapes.scene import ShapeObject

EMPTY_CAPTION = "an empty background"
"""Caption of a scene without objects."""

PHRASE_FIELDS = ("size", "colour", "shape", "position", "all")
"""Parts of an object phrase that a prompt can bracket; ``all`` brackets the whole phrase."""


def object_phrase(obj: ShapeObject, highlight: Collection[str] = ()) -> str:
    """``"a small red circle at the top left"``, with brackets around the ``highlight`` fields."""
    unknown = set(highlight) - set(PHRASE_FIELDS)
    if unknown:
        raise ValueError(f"object_phrase: unknown fields {sorted(unknown)}; expected some of {PHRASE_FIELDS}")

    def mark(field: str, words: str) -> str:
        return f"[{words}]" if field in highlight else words

    phrase = (
        f"a {mark('size', obj.size)} {mark('colour', obj.colour)} {mark('shape', obj.shape)}"
        f" at the {mark('position', position_phrase(obj.position))}"
    )
    return f"[{phrase}]" if "all" in highlight else phrase


def caption(objects: Sequence[ShapeObject], highlights: Mapping[int, Collection[str]] | None = None) -> str:
    """Caption of a scene's objects; ``highlights`` maps an object index to the fields to bracket."""
    if not objects:
        return EMPTY_CAPTION
    highlights = highlights or {}
    return " and ".join(object_phrase(obj, highlights.get(index, ())) for index, obj in enumerate(objects))


def referring_expression(objects: Sequence[ShapeObject], index: int) -> str:
    """The shortest of ``the circle``, ``the red circle``, ``the small red circle``, ``the red circle at the
    top left``, ``the small red circle at the top left`` that matches object ``index`` alone (the last one if
    none does)."""
    target = objects[index]
    candidates = (("shape",), ("colour", "shape"), ("size", "colour", "shape"), ("colour", "shape", "position"))
    for fields in candidates:
        key = _key(target, fields)
        if sum(_key(obj, fields) == key for obj in objects) == 1:
            return _describe(target, fields)
    return _describe(target, ("size", "colour", "shape", "position"))


def _key(obj: ShapeObject, fields: Sequence[str]) -> tuple[str, ...]:
    values = {"size": obj.size, "colour": obj.colour, "shape": obj.shape, "position": position_phrase(obj.position)}
    return tuple(values[field] for field in fields)


def _describe(obj: ShapeObject, fields: Sequence[str]) -> str:
    words = ["the", *(value for field, value in zip(fields, _key(obj, fields)) if field != "position")]
    if "position" in fields:
        words += ["at", "the", position_phrase(obj.position)]
    return " ".join(words)


def strip_brackets(prompt: str) -> str:
    """A bracketed prompt as a plain caption."""
    return prompt.replace("[", "").replace("]", "")
