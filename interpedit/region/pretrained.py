"""A trained region autoencoder as a folder: ``region_autoencoder.json`` plus ``model.safetensors``.

The JSON holds everything needed to rebuild the network without the training config: the region encoder's
``class_path``/``init_args`` spec (as in a LightningCLI YAML), the UNet's, scheduler's and (for latent diffusion)
VAE's diffusers configs, the UNet's LoRA adapter settings when it was trained with adapters (they are rebuilt
before the weights load, so the adapters stay separate), and whether the conditioning has a global slot. The safetensors file holds the weights
(the EMA weights when the run kept an EMA). Load it by folder or hub id::

    model = load_region_autoencoder("pretrained/shapes_region_autoencoder")
    tokens = model.encode(images, masks, valid).token_set()

Writing is atomic (a temporary folder renamed into place), so a crash leaves no half-written model behind.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interpedit.backbones.loading import (
    PretrainedWeightsNotFoundError,
    _missing_errors,
    _not_found,
    looks_like_local_path,
)
from interpedit.diffusion.unet_lora import add_unet_lora, unet_lora_settings
from interpedit.region.region_autoencoder import RegionAutoencoder
from interpedit.user_errors import UserError

CONFIG_NAME = "region_autoencoder.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class PretrainedFormatError(UserError, ValueError):
    """A region autoencoder folder whose JSON or weights do not describe a loadable model."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def instantiate_spec(spec: Any, *, source: Path, where: str) -> Any:
    """Build an object from a LightningCLI-style ``{"class_path": ..., "init_args": {...}}`` spec, recursively.

    Values that are not specs (numbers, strings, lists, plain dicts) are passed through.

    Raises:
        PretrainedFormatError: naming ``source`` and the field, for an unknown class or bad arguments.
    """
    if isinstance(spec, list):
        return [instantiate_spec(item, source=source, where=f"{where}[{i}]") for i, item in enumerate(spec)]
    if not isinstance(spec, dict) or "class_path" not in spec:
        return spec
    class_path = spec["class_path"]
    if not isinstance(class_path, str) or "." not in class_path:
        raise PretrainedFormatError(source, f"{where}.class_path: {class_path!r} is not a dotted class path")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise PretrainedFormatError(source, f"{where}.class_path: cannot import {class_path!r} ({exc})") from exc
    init_args = spec.get("init_args", {}) or {}
    if not isinstance(init_args, dict):
        raise PretrainedFormatError(source, f"{where}.init_args: expected a mapping, got {type(init_args).__name__}")
    kwargs = {
        key: instantiate_spec(value, source=source, where=f"{where}.init_args.{key}") for key, value in init_args.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise PretrainedFormatError(source, f"{where}: {class_path}(...) rejected its init_args: {exc}") from exc


def without_pretrained_backbone(spec: Any) -> Any:
    """A copy of an encoder spec whose backbones do not fetch their own pretrained weights: the folder's weights
    replace them anyway, and the hub may not be reachable where the folder is loaded."""
    if isinstance(spec, list):
        return [without_pretrained_backbone(item) for item in spec]
    if not isinstance(spec, dict):
        return spec
    copied = {key: without_pretrained_backbone(value) for key, value in spec.items()}
    init_args = copied.get("init_args")
    if "class_path" in copied and isinstance(init_args, dict) and init_args.get("pretrained") is True:
        copied["init_args"] = {**init_args, "pretrained": False}
    return copied


def _plain_config(config: Any) -> dict[str, Any]:
    """A diffusers config (FrozenDict with private ``_`` keys) as a JSON-ready dict.

    diffusers keeps ``_use_default_values`` in set order, which changes between processes; it is sorted so that
    exporting the same weights twice writes the same file.
    """
    plain = json.loads(json.dumps(dict(config), default=list))
    if isinstance(plain.get("_use_default_values"), list):
        plain["_use_default_values"] = sorted(plain["_use_default_values"])
    return plain


def save_region_autoencoder(
    model: RegionAutoencoder,
    folder: str | os.PathLike,
    encoder_spec: dict[str, Any],
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` to ``folder`` (created, or replaced as a whole).

    Args:
        model: the network, holding the weights to save (swap EMA weights in first).
        folder: destination folder.
        encoder_spec: the region encoder's ``class_path``/``init_args`` spec, as in the training config.
        extra: more JSON fields to record (training command, step, metrics).
        dtype: store floating-point tensors in this dtype (``torch.float16`` halves the file); loading casts them
            back to the network's dtype.

    Returns:
        The folder.
    """
    folder = Path(folder)
    if not isinstance(encoder_spec, dict) or "class_path" not in encoder_spec:
        raise ValueError("save_region_autoencoder: encoder_spec must be a {'class_path': ..., 'init_args': ...} dict")
    config = {
        "format_version": FORMAT_VERSION,
        "encoder": encoder_spec,
        "unet": _plain_config(model.unet.config),
        "unet_lora": unet_lora_settings(model.unet),
        "scheduler": _plain_config(model.scheduler.config),
        "vae": None if model.vae is None else _plain_config(model.vae.config),
        "global_token": model.conditioning.num_extra_slots > 0,
        "coordinate_channels": bool(model.coordinate_channels),
        "layout_channels": 0 if model.layout is None else int(model.layout.channels),
        **_layout_fields(model),
        "stored_dtype": str(dtype or "as trained").replace("torch.", ""),
        **(extra or {}),
    }
    state = {
        name: (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor).detach().cpu().contiguous()
        for name, tensor in model.state_dict().items()
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        # mkdtemp makes the folder private (0700); give the folder and files the usual umask-based modes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            os.chmod(staging / name, 0o666 & ~umask)
        if folder.exists():
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                os.replace(staging / name, folder / name)
            shutil.rmtree(staging)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _local_folder(id_or_path: str | os.PathLike) -> Path:
    what = "a region autoencoder"
    if looks_like_local_path(id_or_path):
        folder = Path(os.path.expanduser(str(id_or_path)))
        if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise _not_found(f"{what} ({CONFIG_NAME} and {WEIGHTS_NAME})", id_or_path, None, None)
        return folder
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(id_or_path), allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md"]))
    except _missing_errors() as error:
        raise _not_found(what, id_or_path, None, error) from error


def _layout_fields(model: RegionAutoencoder) -> dict[str, Any]:
    """The token layout's shape settings (``disc`` layouts have none, which keeps their files as they were)."""
    if model.layout is None or model.layout.shape == "disc":
        return {}
    return {
        "layout_shape": model.layout.shape,
        "silhouette_size": int(model.layout.silhouette_size),
        "silhouette_extent": float(model.layout.silhouette_extent),
    }


def _layout_settings(config: dict[str, Any], source: Path) -> dict[str, Any]:
    """``layout_shape``, ``silhouette_size`` and ``silhouette_extent`` of a config, checked."""
    from interpedit.region.token_layout import LAYOUT_SHAPES

    shape = config.get("layout_shape", "disc")
    if shape not in LAYOUT_SHAPES:
        raise PretrainedFormatError(source, f"'layout_shape': {shape!r} is not one of {', '.join(LAYOUT_SHAPES)}")
    size = config.get("silhouette_size", 32)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise PretrainedFormatError(source, f"'silhouette_size': expected a positive integer, got {size!r}")
    extent = config.get("silhouette_extent", 1.5)
    if isinstance(extent, bool) or not isinstance(extent, (int, float)) or not extent > 0:
        raise PretrainedFormatError(source, f"'silhouette_extent': expected a positive number, got {extent!r}")
    return {"layout_shape": shape, "silhouette_size": size, "silhouette_extent": float(extent)}


def build_region_autoencoder(config: dict[str, Any], *, source: Path) -> RegionAutoencoder:
    """A randomly initialised region autoencoder from a parsed ``region_autoencoder.json``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    for key in ("encoder", "unet", "scheduler"):
        if key not in config:
            raise PretrainedFormatError(source, f"missing field {key!r}")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise PretrainedFormatError(source, f"'format_version' is {version!r}; this code reads {FORMAT_VERSION}")
    encoder = instantiate_spec(without_pretrained_backbone(config["encoder"]), source=source, where="encoder")
    built = {}
    for key, cls in (("unet", UNet2DConditionModel), ("scheduler", DDIMScheduler), ("vae", AutoencoderKL)):
        value = config.get(key)
        if value is None and key == "vae":
            built[key] = None
            continue
        if not isinstance(value, dict):
            raise PretrainedFormatError(source, f"{key!r}: expected a diffusers config mapping, got {type(value).__name__}")
        try:
            built[key] = cls.from_config(value)
        except (TypeError, ValueError, KeyError) as exc:
            raise PretrainedFormatError(source, f"{key!r}: {cls.__name__}.from_config failed: {exc}") from exc
    lora = config.get("unet_lora")
    if lora is not None:
        if not isinstance(lora, dict):
            raise PretrainedFormatError(source, f"'unet_lora': expected a mapping or null, got {type(lora).__name__}")
        try:
            add_unet_lora(built["unet"], **lora)
        except (TypeError, ValueError) as exc:
            raise PretrainedFormatError(source, f"'unet_lora': {exc}") from exc
    layout = _layout_settings(config, source)
    try:
        return RegionAutoencoder(
            encoder, built["unet"], built["scheduler"], vae=built["vae"],
            global_token=bool(config.get("global_token", True)),
            coordinate_channels=bool(config.get("coordinate_channels", False)),
            layout_channels=int(config.get("layout_channels", 0)),
            **layout,
        )
    except ValueError as exc:
        raise PretrainedFormatError(source, str(exc)) from exc


def load_region_autoencoder(
    id_or_path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> RegionAutoencoder:
    """Load a region autoencoder saved by :func:`save_region_autoencoder`, in eval mode.

    Args:
        id_or_path: local folder or hub repo id.
        map_location: device for the weights.

    Raises:
        PretrainedWeightsNotFoundError: the folder or its files are missing (locally and on the hub).
        PretrainedFormatError: the JSON or the weights do not fit together; names the file and the field.
    """
    folder = _local_folder(id_or_path)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise PretrainedFormatError(config_path, f"not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise PretrainedFormatError(config_path, "expected a JSON object at the top level")
    model = build_region_autoencoder(config, source=config_path)
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except Exception as exc:  # safetensors raises its own SafetensorError for truncated or corrupt files
        raise PretrainedFormatError(weights_path, f"cannot read the weights: {exc}") from exc
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise PretrainedFormatError(weights_path, f"weights do not fit the network built from {CONFIG_NAME}: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise PretrainedFormatError(
            weights_path,
            f"weights do not match the network built from {CONFIG_NAME}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}",
        )
    return model.to(map_location).eval()


__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PretrainedFormatError",
    "PretrainedWeightsNotFoundError",
    "build_region_autoencoder",
    "without_pretrained_backbone",
    "instantiate_spec",
    "load_region_autoencoder",
    "save_region_autoencoder",
]
