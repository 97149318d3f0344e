"""Writing Stable Diffusion pipeline folders that plain diffusers loads.

``save_pipeline_folder`` writes ``model_index.json``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``unet/`` and
``scheduler/`` through the pipeline's own ``save_pretrained`` (no safety checker, no feature extractor), into a
temporary folder that is renamed into place, so a killed export leaves no half folder.
``save_components_folder`` writes the frozen parts a UNet is trained against (everything but ``unet/``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interpedit.backbones.stable_diffusion import StableDiffusionComponents

# transformers 5 saves a word-level fast tokenizer under the class name "TokenizersBackend", which transformers 4
# does not know; "PreTrainedTokenizerFast" names the same tokenizer in both.
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
_VERSION_SPECIFIC_TOKENIZER_CLASSES = ("TokenizersBackend",)


def _portable_tokenizer_names(folder: Path) -> None:
    """Rewrite a v5-only tokenizer class name in ``tokenizer/tokenizer_config.json`` and ``model_index.json``."""
    config_path = folder / "tokenizer" / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        if config.get("tokenizer_class") in _VERSION_SPECIFIC_TOKENIZER_CLASSES:
            config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
            for key in ("is_local", "local_files_only"):  # facts of the saving machine, not of the tokenizer
                config.pop(key, None)
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    index_path = folder / "model_index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("tokenizer", [None, None])[1] in _VERSION_SPECIFIC_TOKENIZER_CLASSES:
            index["tokenizer"] = ["transformers", PORTABLE_TOKENIZER_CLASS]
            index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _write_atomically(out: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` into a temporary sibling of ``out``, then replace ``out`` with it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def save_pipeline_folder(components: StableDiffusionComponents, out: str | os.PathLike) -> Path:
    """Save every component as a diffusers pipeline folder (an inpainting pipeline for a 9-channel UNet).

    Existing files in ``out`` (a model card, a sample grid) are kept unless the pipeline writes the same name.
    """
    pipeline = components.pipeline()
    out = Path(out)
    keep = {p.name: p.read_bytes() for p in out.glob("*") if p.is_file() and p.name != "model_index.json"} if out.is_dir() else {}

    def write(tmp: Path) -> None:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        _portable_tokenizer_names(tmp)
        for name, data in keep.items():
            if not (tmp / name).exists():
                (tmp / name).write_bytes(data)

    return _write_atomically(out, write)


def save_components_folder(
    out: str | os.PathLike, *, vae: Any, text_encoder: Any, tokenizer: Any, scheduler: Any
) -> Path:
    """Save the frozen parts of a pipeline (``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), the folder
    a UNet is trained against (``TextToImageModule(components=...)``)."""

    def write(tmp: Path) -> None:
        vae.save_pretrained(tmp / "vae", safe_serialization=True)
        text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "tokenizer")
        scheduler.save_pretrained(tmp / "scheduler")
        _portable_tokenizer_names(tmp)

    return _write_atomically(out, write)
