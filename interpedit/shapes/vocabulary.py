"""The closed word list of the shapes world's captions and instructions."""

from __future__ import annotations

from interpedit.shapes.attributes import COLOURS, POSITION_WORDS, SHAPES, SIZES
from interpedit.shapes.caption import EMPTY_CAPTION
from interpedit.shapes.edits import INSTRUCTION_WORDS

CAPTION_WORDS: tuple[str, ...] = ("a", "at", "the", "and")
"""Words that caption templates add to the attribute words."""


def vocabulary() -> list[str]:
    """Every word a caption or an instruction can contain, sorted; bracketed prompts use the same words once
    ``[`` and ``]`` are removed. Words are lowercase and contain no spaces or punctuation."""
    words = {*CAPTION_WORDS, *SHAPES, *COLOURS, *SIZES, *INSTRUCTION_WORDS, *EMPTY_CAPTION.split(" ")}
    for phrase in POSITION_WORDS:
        words.update(phrase.split(" "))
    return sorted(words)
