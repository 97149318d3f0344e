"""Learnable Regions reader (Lin et al., CVPR 2024; ``yuanze-lin/Learnable_Regions``, JSON mode).

Layout::

    root/images.json                {file name: [source caption, edit prompt]}, read in the file's order
    root/<file name>                the images, either next to images.json ...
    root/images/<file name>         ... or in an ``images/`` folder (the official code takes the folder as a flag)

The images folder is chosen once for the whole file: ``root`` if every listed image is there, else
``root/images`` if every one is there; anything else is an error naming the first image missing from both.

The format has no masks, instructions, blend words or edit types: every sample gets ``mask_rle=None``,
``instruction=""``, ``blended_word=""`` and the edit type ``"lr"`` (``LEARNABLE_REGIONS_EDIT_TYPE_ID``). The source
caption is often a bare class name (``"bird"``); the edit prompt describes what the edited region should show.
Neither carries brackets, so the bracketed and plain prompts are the same.
"""

from __future__ import annotations

from pathlib import Path

from interpedit.benchmarks.edit_sample import BenchmarkError, EditSample, image_size, read_json_object, resolve_inside
from interpedit.benchmarks.edit_types import LEARNABLE_REGIONS_EDIT_TYPE_ID

IMAGES_JSON = "images.json"
"""Learnable Regions' index, relative to the root."""

IMAGES_DIRS: tuple[str, ...] = (".", "images")
"""Folders tried for the images, relative to the root, in this order."""


def read_learnable_regions(root: str | Path) -> list[EditSample]:
    """Index a Learnable Regions folder.

    Args:
        root: folder holding ``images.json`` and the images (beside it or in ``images/``).

    Returns:
        One sample per entry, in the file's order.

    Raises:
        BenchmarkError: naming ``images.json`` and the entry, for malformed JSON, an entry that is not a list of
            two strings, a file name leaving the root, or an image found in neither folder.
    """
    root = Path(root)
    source = root / IMAGES_JSON
    mapping = read_json_object(source)
    prompts: dict[str, tuple[str, str]] = {}
    for name, value in mapping.items():
        where = f"entry {name!r}"
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise BenchmarkError(
                source, f"{where}: expected [source caption, edit prompt] (two strings), got {value!r}"
            )
        resolve_inside(root, name, source=source, where=where)  # refuses names leaving the root
        prompts[name] = (value[0], value[1])

    images_dir = _images_dir(root, list(prompts), source)
    samples = []
    for name, (source_caption, edit_prompt) in prompts.items():
        where = f"entry {name!r}"
        path = resolve_inside(images_dir, name, source=source, where=where)
        height, width = image_size(path, source=source, where=where)
        samples.append(
            EditSample(
                image_id=name,
                image_path=path,
                height=height,
                width=width,
                source_prompt_bracketed=source_caption,
                target_prompt_bracketed=edit_prompt,
                instruction="",
                blended_word="",
                edit_type_id=LEARNABLE_REGIONS_EDIT_TYPE_ID,
                mask_rle=None,
                benchmark_file=source,
            )
        )
    return samples


def _images_dir(root: Path, names: list[str], source: Path) -> Path:
    """The first of ``IMAGES_DIRS`` holding every listed image."""
    folders = [root / folder for folder in IMAGES_DIRS]
    for folder in folders:
        if all((folder / name).is_file() for name in names):
            return folder
    missing = next((name for name in names if not any((folder / name).is_file() for folder in folders)), None)
    if missing is None:
        raise BenchmarkError(
            source, "the images are split between the root and images/; keep them all in one of the two"
        )
    tried = " or ".join(str(folder / missing) for folder in folders)
    raise BenchmarkError(source, f"entry {missing!r}: image file does not exist (looked for {tried})")
