"""Edit type ids and names: PIE-Bench's ten, the shapes world's own, and Learnable Regions' single one.

Ids are strings, as in PIE-Bench's ``mapping_file.json`` (``editing_type_id``). The shapes exporter reuses
PIE-Bench's id where one fits (``interpedit.shapes.EDIT_TYPE_IDS``: recolour is 6, change attribute color) and
numbers its other edits from 10; ``resolve_edit_type`` also accepts those shapes names (``"recolour"``).
"""

from __future__ import annotations

from interpedit.shapes.edits import EDIT_TYPE_IDS as SHAPES_EDIT_TYPE_IDS

PIE_BENCH_EDIT_TYPES: dict[str, str] = {
    "0": "random",
    "1": "change object",
    "2": "add object",
    "3": "delete object",
    "4": "change attribute content",
    "5": "change attribute pose",
    "6": "change attribute color",
    "7": "change attribute material",
    "8": "change background",
    "9": "change style",
}
"""PIE-Bench's ``editing_type_id`` -> name (Ju et al., ICLR 2024)."""

LEARNABLE_REGIONS_EDIT_TYPE_ID = "lr"
"""Type id given to every Learnable Regions entry: its ``images.json`` has no edit types."""

EDIT_TYPE_NAMES: dict[str, str] = {
    **PIE_BENCH_EDIT_TYPES,
    **{type_id: name for name, type_id in SHAPES_EDIT_TYPE_IDS.items() if type_id not in PIE_BENCH_EDIT_TYPES},
    LEARNABLE_REGIONS_EDIT_TYPE_ID: "learnable regions",
}
"""Every known edit type id -> name: PIE-Bench's 0-9, the shapes world's 10 move, 11 resize, 12 swap, and ``lr``."""


def edit_type_name(type_id: str) -> str:
    """The name of an edit type id (``"6"`` -> ``"change attribute color"``).

    Raises:
        KeyError: unknown id.
    """
    if type_id not in EDIT_TYPE_NAMES:
        raise KeyError(f"unknown edit type id {type_id!r}; known ids: {', '.join(EDIT_TYPE_NAMES)}")
    return EDIT_TYPE_NAMES[type_id]


def resolve_edit_type(value: str | int) -> str:
    """The id of an edit type given by id (``"6"`` or ``6``), name (``"change attribute color"``) or shapes name
    (``"recolour"``).

    Raises:
        ValueError: matches no known edit type.
    """
    text = str(value).strip()
    if text in EDIT_TYPE_NAMES:
        return text
    for type_id, name in EDIT_TYPE_NAMES.items():
        if text.lower() == name:
            return type_id
    if text.lower() in SHAPES_EDIT_TYPE_IDS:
        return SHAPES_EDIT_TYPE_IDS[text.lower()]
    known = [f"{type_id} ({name})" for type_id, name in EDIT_TYPE_NAMES.items()]
    raise ValueError(
        f"unknown edit type {value!r}; use an id or a name: {', '.join(known)}, "
        f"or a shapes edit: {', '.join(SHAPES_EDIT_TYPE_IDS)}"
    )
