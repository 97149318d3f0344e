"""Export shapes-world edits as a benchmark folder in PIE-Bench's layout, with exact ground truth.

Layout of ``DIR``::

    DIR/mapping_file.json                        written last, atomically: its presence means the export finished
    DIR/annotation_images/<type id>_<type>/<id>.png   source images (lossless PNG, RGB)
    DIR/targets/<id>.png                         exact edited images
    DIR/labels/<id>_source.png, <id>_target.png  instance-label maps (8-bit, 0 = background, i + 1 = object i)

Every edited object is legible in the target: most of its label mask is pixels it covers entirely (so they have
exactly its palette colour); scenes where an edit would leave it nearly hidden are redrawn.

``mapping_file.json`` maps a 12-digit id (``"000000000012"``, the scene index) to an entry. PIE-Bench's fields:

- ``image_path``: source image, relative to ``DIR/annotation_images/``.
- ``original_prompt`` / ``editing_prompt``: source and target captions with the changed words in brackets,
  e.g. ``"a small [red] circle at the top left"`` -> ``"a small [blue] circle at the top left"``.
- ``editing_instruction``: e.g. ``"make the red circle blue"``.
- ``editing_type_id``: string, see ``EDIT_TYPE_IDS`` (reshape 1, add 2, remove 3, rotate 5, recolour 6, move 10,
  resize 11, swap 12).
- ``blended_word``: PIE-Bench's blend words, e.g. ``"red blue"``; ``""`` when not meaningful.
- ``mask``: PIE-Bench RLE (``[start, length, ...]``, row-major over this image's own H x W, 1 = edited) of the
  changed-pixel mask: the union of the edited objects' footprints (pixels where the object is visible in at least
  one anti-aliasing sample) in the source and the target. Every pixel that differs between source and target lies
  inside it.

Extra fields:

- ``target_image_path``, ``source_labels_path``, ``target_labels_path``: relative to ``DIR``. Label maps follow
  the majority rule of ``interpedit.shapes.render`` (a pixel is labelled with the object visible in more than half
  of its samples), so a label mask lies inside its footprint but is usually smaller.
- ``edit``: ``{"type", "params", "objects", "target_indices"}``; ``objects`` lists the edited objects' indices in
  the source (empty for add), ``target_indices`` their indices in the target (empty for remove); ``params`` as in
  ``interpedit.shapes.edits``.
- ``source_objects`` / ``target_objects``: per object, in drawing order, the attributes of
  ``ShapeObject.to_dict`` (``shape``, ``colour``, ``size``, ``radius``, ``position`` ``[x, y]`` normalised,
  ``rotation`` radians clockwise) plus ``footprint``, the object's footprint as COCO RLE
  (``{"size": [H, W], "counts": str}``). ``mask`` is exactly the union of the edited objects' footprints.
- ``background``: the background's parameters (``Background.to_dict``); with the objects it re-renders both images.
- ``source_caption`` / ``target_caption``: the prompts without brackets.
- ``resolution``, ``supersample``: render settings.
- ``seed_entropy``: ``[3, seed, index]``; ``np.random.default_rng(np.random.SeedSequence(seed_entropy))`` redraws
  the scene and the edit. Namespace 3 is disjoint from the training, validation and test namespaces (0, 1, 2).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from interpedit.masks.rle import mask_to_coco_rle, mask_to_pie_rle
from interpedit.shapes.attributes import BACKGROUND_KINDS
from interpedit.shapes.caption import strip_brackets
from interpedit.shapes.edits import EDIT_TYPE_IDS, EDIT_TYPES, Edit, EditNotPossible, apply_edit
from interpedit.shapes.render import Render
from interpedit.shapes.scene import SceneConfig, sample_scene

EXPORT_RESOLUTIONS: tuple[int, ...] = (32, 64, 128, 256)
"""Resolutions the exporter writes (powers of two, so pixel moves are exact)."""

EXPORT_SEED_NAMESPACE = 3
"""First SeedSequence word of exported scenes; the DataModule's splits use 0, 1 and 2."""

SCENE_ATTEMPTS = 100
"""Scenes drawn for one entry before giving up on an edit type the scenes do not allow."""


def export_benchmark(
    out: str | os.PathLike[str],
    num_scenes: int,
    seed: int = 0,
    resolution: int = 32,
    edits: Sequence[str] = EDIT_TYPES,
    config: SceneConfig | None = None,
    supersample: int = 4,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write ``num_scenes`` edits to ``out`` (see the module docstring for the format).

    Entry ``index`` uses edit type ``edits[index % len(edits)]``, so types are balanced, and its scene and edit are
    drawn from ``SeedSequence([3, seed, index])``.

    Args:
        out: output folder, created if missing; files of an earlier export with the same ids are replaced.
        num_scenes: number of entries.
        seed: benchmark seed.
        resolution: one of ``EXPORT_RESOLUTIONS``.
        edits: edit types to cycle through.
        config: scene sampler settings; default two to four objects, so every edit type is possible.
        supersample: anti-aliasing samples per pixel side.
        progress: called with a progress line now and then (e.g. ``print``).

    Returns:
        Number of entries of each edit type.
    """
    validate_export_arguments(num_scenes, resolution, edits)
    config = config or SceneConfig(min_objects=2, max_objects=4)
    out = Path(out)
    for folder in ("annotation_images", "targets", "labels"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    mapping: dict[str, dict[str, Any]] = {}
    counts: Counter[str] = Counter()
    report_every = max(1, num_scenes // 10)
    for index in range(num_scenes):
        entropy = [EXPORT_SEED_NAMESPACE, int(seed), index]
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        edit_type = edits[index % len(edits)]
        edit = draw_edit(rng, edit_type, config, resolution, supersample)
        entry_id = f"{index:012d}"
        mapping[entry_id] = _write_entry(out, entry_id, edit, entropy, resolution, supersample)
        counts[edit_type] += 1
        if progress is not None and ((index + 1) % report_every == 0 or index + 1 == num_scenes):
            progress(f"exported {index + 1}/{num_scenes}")
    write_json_atomic(out / "mapping_file.json", mapping)
    return dict(counts)


def validate_export_arguments(
    num_scenes: int, resolution: int, edits: Sequence[str], backgrounds: Sequence[str] = BACKGROUND_KINDS
) -> None:
    """Raise ``ValueError`` naming the bad argument (``backgrounds``: kinds the scene sampler may draw)."""
    if num_scenes < 1:
        raise ValueError(f"num_scenes: must be at least 1, got {num_scenes}")
    if resolution not in EXPORT_RESOLUTIONS:
        raise ValueError(f"resolution: {resolution} is not one of {', '.join(map(str, EXPORT_RESOLUTIONS))}")
    unknown = [e for e in edits if e not in EDIT_TYPE_IDS]
    if unknown or not edits:
        raise ValueError(f"edits: {', '.join(unknown) or 'none given'} not valid; choose from {', '.join(EDIT_TYPES)}")
    unknown = [b for b in backgrounds if b not in BACKGROUND_KINDS]
    if unknown or not backgrounds:
        raise ValueError(
            f"backgrounds: {', '.join(unknown) or 'none given'} not valid; choose from {', '.join(BACKGROUND_KINDS)}"
        )


def draw_edit(
    rng: np.random.Generator, edit_type: str, config: SceneConfig, resolution: int, supersample: int = 4
) -> Edit:
    """Draw scenes from ``rng`` until one allows a drawn edit of ``edit_type``, and return that edit."""
    extra: dict[str, Any] = {"config": config} if edit_type == "add" else {}
    for _ in range(SCENE_ATTEMPTS):
        scene = sample_scene(rng, config)
        try:
            edit = apply_edit(edit_type, scene, rng=rng, resolution=resolution, supersample=supersample, **extra)
        except EditNotPossible:
            continue
        if all(_legible(edit.target, index) for index in edit.target_indices):
            return edit
    raise EditNotPossible(f"{edit_type}: no scene out of {SCENE_ATTEMPTS} allowed this edit; check the scene config")


def _legible(rendered: Render, index: int) -> bool:
    """Whether an edited object can be judged from the target's pixels: most of its label mask is pixels it covers
    entirely, which have exactly its palette colour. A nearly hidden or tiny object, whose label mask is mostly
    anti-aliased edge, would make even the true target fail the colour and shape checks, so it is not exported."""
    mask = rendered.labels == index + 1
    full = rendered.coverage[index] >= 1.0
    return bool(mask.any()) and 2 * int((mask & full).sum()) > int(mask.sum())


def _write_entry(
    out: Path, entry_id: str, edit: Edit, entropy: list[int], resolution: int, supersample: int
) -> dict[str, Any]:
    image_path = f"{edit.type_id}_{edit.edit_type}/{entry_id}.png"
    target_path = f"targets/{entry_id}.png"
    source_labels, target_labels = f"labels/{entry_id}_source.png", f"labels/{entry_id}_target.png"
    (out / "annotation_images" / image_path).parent.mkdir(parents=True, exist_ok=True)
    write_png_atomic(out / "annotation_images" / image_path, edit.source.image)
    write_png_atomic(out / target_path, edit.target.image)
    write_png_atomic(out / source_labels, _label_png(edit.source.labels))
    write_png_atomic(out / target_labels, _label_png(edit.target.labels))
    return {
        "image_path": image_path,
        "original_prompt": edit.source_prompt,
        "editing_prompt": edit.target_prompt,
        "editing_instruction": edit.instruction,
        "editing_type_id": edit.type_id,
        "blended_word": edit.blended_word,
        "mask": mask_to_pie_rle(edit.changed_mask),
        "target_image_path": target_path,
        "source_labels_path": source_labels,
        "target_labels_path": target_labels,
        "edit": {
            "type": edit.edit_type,
            "params": edit.params,
            "objects": list(edit.source_indices),
            "target_indices": list(edit.target_indices),
        },
        "source_objects": _objects(edit.source),
        "target_objects": _objects(edit.target),
        "background": edit.source_scene.background.to_dict(),
        "source_caption": strip_brackets(edit.source_prompt),
        "target_caption": strip_brackets(edit.target_prompt),
        "resolution": resolution,
        "supersample": supersample,
        "seed_entropy": entropy,
    }


def _objects(rendered: Render) -> list[dict[str, Any]]:
    return [
        {**obj.to_dict(), "footprint": mask_to_coco_rle(rendered.footprints[index])}
        for index, obj in enumerate(rendered.objects)
    ]


def _label_png(labels: np.ndarray) -> np.ndarray:
    if labels.max(initial=0) > 255:
        return labels.astype(np.uint16)  # PIL writes a 16-bit greyscale PNG
    return labels.astype(np.uint8)


def write_png_atomic(path: Path, array: np.ndarray) -> None:
    """Write an array as PNG under a temporary name, then rename it into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(temporary, format="PNG")
    os.replace(temporary, path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON under a temporary name, then rename it into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
