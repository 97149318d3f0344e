"""The shapes world: deterministic procedural scenes with exact ground truth, and edits of them.

Three lines from a notebook::

    rng = np.random.default_rng(0)
    scene = sample_scene(rng, SceneConfig(max_objects=3))
    edit = recolour(scene, rng=rng, resolution=64)  # edit.source.image, edit.target.image, edit.changed_mask
"""

from interpedit.shapes.attributes import (
    BACKGROUND_KINDS,
    COLOURS,
    PALETTE,
    POSITION_WORDS,
    SHAPES,
    SIZE_RADII,
    SIZES,
    position_phrase,
)
from interpedit.shapes.caption import caption, object_phrase, referring_expression, strip_brackets
from interpedit.shapes.edits import (
    EDIT_FUNCTIONS,
    EDIT_TYPE_IDS,
    EDIT_TYPES,
    Edit,
    EditNotPossible,
    add,
    apply_edit,
    move,
    random_edit,
    recolour,
    remove,
    reshape,
    resize,
    rotate,
    swap,
)
from interpedit.shapes.export import EXPORT_RESOLUTIONS, export_benchmark
from interpedit.shapes.render import Render, render, render_background
from interpedit.shapes.scene import (
    POSITION_QUANTUM,
    Background,
    Scene,
    SceneConfig,
    ShapeObject,
    sample_background,
    sample_object,
    sample_scene,
    visible_fractions,
)
from interpedit.shapes.vocabulary import vocabulary

__all__ = [
    "BACKGROUND_KINDS",
    "COLOURS",
    "EDIT_FUNCTIONS",
    "EDIT_TYPES",
    "EDIT_TYPE_IDS",
    "EXPORT_RESOLUTIONS",
    "PALETTE",
    "POSITION_QUANTUM",
    "POSITION_WORDS",
    "SHAPES",
    "SIZES",
    "SIZE_RADII",
    "Background",
    "Edit",
    "EditNotPossible",
    "Render",
    "Scene",
    "SceneConfig",
    "ShapeObject",
    "add",
    "apply_edit",
    "caption",
    "export_benchmark",
    "move",
    "object_phrase",
    "position_phrase",
    "random_edit",
    "recolour",
    "referring_expression",
    "remove",
    "render",
    "render_background",
    "reshape",
    "resize",
    "rotate",
    "sample_background",
    "sample_object",
    "sample_scene",
    "strip_brackets",
    "swap",
    "visible_fractions",
    "vocabulary",
]
