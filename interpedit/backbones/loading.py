"""Every pretrained part, by hub id or local path, through the libraries' own loaders.

diffusers models and schedulers, transformers models/tokenizers/processors, timm ViTs and this project's own
``PyTorchModelHubMixin`` models are all built here, so that offline behaviour and the error raised for missing
weights are the same everywhere. No model is re-implemented: each function is a thin wrapper around
``from_pretrained`` or ``timm.create_model``.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch

from interpedit.user_errors import UserError


ModelT = TypeVar("ModelT")

# Short names used by the DINO / DINOv2 torch.hub releases, mapped to timm's pretrained tags. Any other timm name
# (``vit_small_patch14_dinov2.lvd142m``, ``hf-hub:timm/...``) is accepted as is.
DINO_VIT_ALIASES: dict[str, str] = {
    "dino_vits16": "vit_small_patch16_224.dino",
    "dino_vits8": "vit_small_patch8_224.dino",
    "dino_vitb16": "vit_base_patch16_224.dino",
    "dino_vitb8": "vit_base_patch8_224.dino",
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
    "dinov2_vitl14": "vit_large_patch14_dinov2.lvd142m",
    "dinov2_vitg14": "vit_giant_patch14_dinov2.lvd142m",
    "dinov2_vits14_reg": "vit_small_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitb14_reg": "vit_base_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitl14_reg": "vit_large_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitg14_reg": "vit_giant_patch14_reg4_dinov2.lvd142m",
}

_TIMM_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
# timm raises RuntimeError both for missing checkpoints and for genuine shape mismatches; only these mean "missing".
_TIMM_MISSING_MARKERS = ("No pretrained weights exist", "No suitable checkpoints found", "is not a directory")


class PretrainedWeightsNotFoundError(UserError, FileNotFoundError):
    """Pretrained files could not be found locally and could not be downloaded.

    Raised by every loader in this module, whatever library was underneath, with a message that names the id or
    path, the class, and how to provide the files.
    """


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network access (read at call time, not import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def looks_like_local_path(id_or_path: str | os.PathLike) -> bool:
    """Whether ``id_or_path`` names a local file or folder rather than a hub repo id.

    A path object, an existing path, or a string starting with ``/``, ``./``, ``../`` or ``~`` counts as local.
    """
    if isinstance(id_or_path, os.PathLike):
        return True
    text = str(id_or_path)
    if os.path.exists(os.path.expanduser(text)):
        return True
    return text.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(text)


def _download_hint(repo_id: str) -> str:
    return (
        f"Download it on a machine with network access, e.g. `hf download {repo_id} --local-dir DIR` "
        f"(older huggingface_hub: `huggingface-cli download {repo_id} --local-dir DIR`), copy DIR here and pass "
        "DIR instead of the id; or set HF_HOME to a Hugging Face cache that holds it."
    )


def _not_found(
    what: str, id_or_path: str | os.PathLike, subfolder: str | None, cause: BaseException | None
) -> PretrainedWeightsNotFoundError:
    """Build the one error type raised for missing pretrained files, with a message that says how to fix it."""
    part = f" (subfolder '{subfolder}')" if subfolder else ""
    library_said = f"\nThe library said: {str(cause).strip().splitlines()[0]}" if cause and str(cause).strip() else ""
    if looks_like_local_path(id_or_path):
        path = Path(os.path.expanduser(str(id_or_path)))
        target = path / subfolder if subfolder else path
        if not path.exists():
            reason = f"no such file or directory: {path.resolve()}"
        elif not target.exists():
            reason = f"no such directory: {target.resolve()}"
        else:
            reason = f"the local folder {target.resolve()} does not hold the files {what} needs"
        message = (
            f"{id_or_path}: cannot load {what}{part}: {reason}.\nTo provide it: save the model there with "
            "`save_pretrained`, or download it on a machine with network access, e.g. "
            f"`hf download <repo id> --local-dir DIR`, and pass DIR.{library_said}"
        )
    else:
        offline = " (HF_HUB_OFFLINE=1: the hub is not contacted)" if hub_offline() else ""
        message = (
            f"{id_or_path}: cannot load {what}{part}: there is no such local folder, and as a hub id its files "
            f"are not in the local Hugging Face cache and could not be downloaded{offline}.\n"
            f"To provide it: {_download_hint(str(id_or_path))}{library_said}"
        )
    error = PretrainedWeightsNotFoundError(message)
    error.__cause__ = cause
    return error


def _missing_errors() -> tuple[type[BaseException], ...]:
    """Exception types the libraries raise when files are missing (OSError covers FileNotFoundError and friends)."""
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError

    return (OSError, HfHubHTTPError, HFValidationError)


def _check_local(what: str, id_or_path: str | os.PathLike, subfolder: str | None) -> str:
    """Expand ``~`` and fail early, with the path, when a local-looking path does not exist."""
    if not looks_like_local_path(id_or_path):
        return str(id_or_path)
    path = Path(os.path.expanduser(str(id_or_path)))
    if not path.exists() or (subfolder and not (path / subfolder).is_dir()):
        raise _not_found(what, id_or_path, subfolder, None)
    return str(path)


def _reject_remote_code(kwargs: dict[str, Any]) -> None:
    if kwargs.get("trust_remote_code"):
        raise ValueError("trust_remote_code=True is not allowed in interpedit: load a class the library ships.")
    kwargs.pop("trust_remote_code", None)


def _hub_kwargs(kwargs: dict[str, Any], subfolder: str | None) -> dict[str, Any]:
    kwargs = dict(kwargs)
    _reject_remote_code(kwargs)
    if subfolder:
        kwargs["subfolder"] = subfolder
    if hub_offline():
        kwargs.setdefault("local_files_only", True)
    return kwargs


def load_diffusers_model(
    cls: type[ModelT],
    id_or_path: str | os.PathLike,
    *,
    subfolder: str | None = None,
    torch_dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> ModelT:
    """Load a diffusers model (``UNet2DConditionModel``, ``UNet2DModel``, ``AutoencoderKL``, ...).

    Args:
        cls: the diffusers model class.
        id_or_path: hub repo id (``stable-diffusion-v1-5/stable-diffusion-v1-5``) or local folder.
        subfolder: folder inside the repo (``unet``, ``vae``), or None for the root.
        torch_dtype: dtype to load the weights in; None keeps the stored dtype.
        **kwargs: passed to ``cls.from_pretrained`` (``variant``, ``revision``, ...).

    Raises:
        PretrainedWeightsNotFoundError: the files are neither local nor downloadable.
    """
    what = cls.__name__
    source = _check_local(what, id_or_path, subfolder)
    kwargs = _hub_kwargs(kwargs, subfolder)
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    try:
        return cls.from_pretrained(source, **kwargs)
    except _missing_errors() as error:
        raise _not_found(what, id_or_path, subfolder, error) from error


def load_inpainting_unet(
    id_or_path: str | os.PathLike,
    *,
    subfolder: str | None = "unet",
    torch_dtype: torch.dtype | None = None,
    **kwargs: Any,
):
    """Load an inpainting ``UNet2DConditionModel`` (9 input channels: latents, mask, masked-image latents).

    Args:
        id_or_path: e.g. ``stable-diffusion-v1-5/stable-diffusion-inpainting``, or a local folder.
        subfolder: folder of the UNet inside the repo.
        torch_dtype: dtype to load the weights in.
        **kwargs: passed to ``from_pretrained``.

    Raises:
        PretrainedWeightsNotFoundError: the files are neither local nor downloadable.
        ValueError: the UNet found there is not an inpainting UNet.
    """
    from diffusers import UNet2DConditionModel

    unet = load_diffusers_model(
        UNet2DConditionModel, id_or_path, subfolder=subfolder, torch_dtype=torch_dtype, **kwargs
    )
    if unet.config.in_channels != 9:
        raise ValueError(
            f"'{id_or_path}' (subfolder '{subfolder}') holds a UNet with in_channels={unet.config.in_channels}; an "
            "inpainting UNet takes 9 (4 latent + 1 mask + 4 masked-image latent channels)."
        )
    return unet


def _scheduler_class(cls_or_name: type | str) -> type:
    import diffusers

    cls = getattr(diffusers, cls_or_name, None) if isinstance(cls_or_name, str) else cls_or_name
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise ValueError(
            f"{cls_or_name!r} is not a diffusers scheduler class; use e.g. 'DDIMScheduler', 'DDPMScheduler', "
            "'EulerDiscreteScheduler' or the class itself."
        )
    return cls


def load_scheduler(
    cls_or_name: type | str,
    id_or_path: str | os.PathLike,
    *,
    subfolder: str | None = "scheduler",
    **overrides: Any,
):
    """Load a diffusers scheduler's config from a repo or folder, as the class asked for.

    The stored config may belong to another scheduler (an SD repo ships PNDM); ``from_pretrained`` keeps the
    shared fields (betas, timesteps) and uses the requested class's defaults for the rest.

    Args:
        cls_or_name: scheduler class or its name in ``diffusers`` (``"DDIMScheduler"``).
        id_or_path: hub repo id or local folder.
        subfolder: folder inside the repo holding ``scheduler_config.json``; None for the root.
        **overrides: config values to replace (``clip_sample=False``, ``timestep_spacing="trailing"``).

    Raises:
        PretrainedWeightsNotFoundError: the config is neither local nor downloadable.
    """
    cls = _scheduler_class(cls_or_name)
    what = cls.__name__
    source = _check_local(what, id_or_path, subfolder)
    kwargs = _hub_kwargs(overrides, subfolder)
    try:
        return cls.from_pretrained(source, **kwargs)
    except _missing_errors() as error:
        raise _not_found(what, id_or_path, subfolder, error) from error


def scheduler_from_config(cls_or_name: type | str, config_or_scheduler: Any, **overrides: Any):
    """Build a scheduler of another class from an existing scheduler or its config (no file access).

    Args:
        cls_or_name: target scheduler class or its name (``"DDPMScheduler"``).
        config_or_scheduler: a scheduler instance or its ``config``.
        **overrides: config values to replace.
    """
    cls = _scheduler_class(cls_or_name)
    config = getattr(config_or_scheduler, "config", config_or_scheduler)
    return cls.from_config(config, **overrides)


def _is_empty_tokenizer(loaded: Any) -> bool:
    """transformers v5 returns a tokenizer with only its special tokens when the vocabulary files are missing."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    tokenizer = getattr(loaded, "tokenizer", loaded)
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        return False
    return len(tokenizer) <= len(set(tokenizer.all_special_ids))


def load_transformers_model(
    cls: type[ModelT],
    id_or_path: str | os.PathLike,
    *,
    subfolder: str | None = None,
    torch_dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> ModelT:
    """Load a transformers model, tokenizer or processor (CLIP text/vision, ``CLIPProcessor``, SAM, ...).

    Args:
        cls: the transformers class (``CLIPTextModel``, ``CLIPTokenizer``, ``SamModel``, ``SamProcessor``, ...).
        id_or_path: hub repo id (``openai/clip-vit-large-patch14``) or local folder.
        subfolder: folder inside the repo (``text_encoder``, ``tokenizer``), or None for the root.
        torch_dtype: dtype for model weights (passed as transformers v5's ``dtype``); ignored by tokenizers.
        **kwargs: passed to ``cls.from_pretrained``.

    Raises:
        PretrainedWeightsNotFoundError: the files are neither local nor downloadable, or a tokenizer's vocabulary
            files are missing (transformers would otherwise return an empty tokenizer silently).
    """
    from transformers import PreTrainedModel

    what = cls.__name__
    source = _check_local(what, id_or_path, subfolder)
    kwargs = _hub_kwargs(kwargs, subfolder)
    if torch_dtype is not None and issubclass(cls, PreTrainedModel):
        kwargs["dtype"] = torch_dtype
    try:
        loaded = cls.from_pretrained(source, **kwargs)
    except _missing_errors() as error:
        raise _not_found(what, id_or_path, subfolder, error) from error
    if _is_empty_tokenizer(loaded):
        raise _not_found(
            what, id_or_path, subfolder, FileNotFoundError("no tokenizer vocabulary (tokenizer.json or vocab.json)")
        )
    return loaded


def load_hub_mixin_model(cls: type[ModelT], id_or_path: str | os.PathLike, **kwargs: Any) -> ModelT:
    """Load a model class of this project that saves itself with huggingface_hub's ``PyTorchModelHubMixin``.

    Args:
        cls: a ``PyTorchModelHubMixin`` subclass.
        id_or_path: hub repo id or local folder written by its ``save_pretrained``.
        **kwargs: passed to ``cls.from_pretrained`` (``revision``, ``map_location``, ...).

    Raises:
        PretrainedWeightsNotFoundError: the files are neither local nor downloadable.
    """
    what = cls.__name__
    source = _check_local(what, id_or_path, None)
    kwargs = _hub_kwargs(kwargs, None)
    try:
        return cls.from_pretrained(source, **kwargs)
    except _missing_errors() as error:
        raise _not_found(what, id_or_path, None, error) from error


def resolve_vit_name(name: str) -> str:
    """Map a DINO/DINOv2 torch.hub short name (``dinov2_vitb14_reg``) to timm's name; other names pass through."""
    return DINO_VIT_ALIASES.get(name, name)


def _timm_folder_config(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise _not_found("timm model", folder, None, FileNotFoundError(f"no config.json in {folder}"))
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: not valid JSON ({error})") from error
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ValueError(
            f"{config_path}: missing field 'architecture' (the timm model name, e.g. 'vit_base_patch8_224')"
        )
    if not isinstance(config.get("model_args", {}), dict):
        raise ValueError(f"{config_path}: field 'model_args' must be an object of timm.create_model keyword arguments")
    return config


def _timm_folder_weights(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise _not_found("timm model", folder, None, FileNotFoundError(f"no model.safetensors in {folder}"))


def load_timm_vit(
    name_or_path: str | os.PathLike,
    pretrained: bool = True,
    *,
    architecture: str | None = None,
    **model_kwargs: Any,
) -> torch.nn.Module:
    """Build a timm ViT (DINO, DINOv2, ...) by name, from a local folder, or from a local weight file.

    Three kinds of ``name_or_path``:

    * a timm name (``vit_base_patch8_224.dino``, ``vit_base_patch14_reg4_dinov2.lvd142m``, a short alias from
      ``DINO_VIT_ALIASES``, or ``hf-hub:owner/repo``): ``timm.create_model(name, pretrained=...)``;
    * a folder with ``config.json`` + ``model.safetensors``: timm's own export (``timm.models.save_for_hf``, or a
      hub snapshot of ``timm/<name>``) goes through timm's ``local-dir:`` source; a hand-written ``config.json``
      with just ``architecture`` and ``model_args`` builds that architecture and loads the state dict;
    * a weight file (.safetensors/.bin/.pth): ``architecture`` names the timm model, loaded through
      ``pretrained_cfg_overlay=dict(file=...)``.

    Args:
        name_or_path: see above.
        pretrained: load weights; False builds the architecture with random weights.
        architecture: timm model name, required when ``name_or_path`` is a weight file.
        **model_kwargs: ``timm.create_model`` arguments (``img_size``, ``dynamic_img_size``, ``num_classes=0``);
            they override a folder's ``model_args``. timm resamples position embeddings for a new ``img_size``.

    Raises:
        PretrainedWeightsNotFoundError: weights are neither local nor downloadable.
        ValueError: unknown timm name, or a malformed folder config.
    """
    import timm

    if looks_like_local_path(name_or_path):
        path = Path(os.path.expanduser(str(name_or_path)))
        what = f"timm model {architecture}" if architecture else "timm model"
        if not path.exists():
            raise _not_found(what, name_or_path, None, None)
        if path.is_file():
            if not architecture:
                raise ValueError(
                    f"{path} is a weight file; pass architecture=<timm model name> (e.g. 'vit_base_patch8_224') so "
                    "the loader knows which model to build."
                )
            if path.suffix not in _TIMM_WEIGHT_SUFFIXES:
                raise ValueError(f"{path}: expected a weight file ending in one of {', '.join(_TIMM_WEIGHT_SUFFIXES)}")
            overlay = dict(file=str(path))
            return _create_timm(
                architecture, pretrained, what, name_or_path, pretrained_cfg_overlay=overlay, **model_kwargs
            )
        config = _timm_folder_config(path)
        if "pretrained_cfg" in config:
            # A full timm export: timm's local-dir source restores model_args and the preprocessing config too.
            return _create_timm(f"local-dir:{path}", pretrained, what, name_or_path, **model_kwargs)
        weights = _timm_folder_weights(path) if pretrained else None
        kwargs = {**config.get("model_args", {}), **model_kwargs}
        overlay = dict(file=str(weights)) if weights is not None else None
        return _create_timm(
            config["architecture"], pretrained, what, name_or_path, pretrained_cfg_overlay=overlay, **kwargs
        )

    name = resolve_vit_name(str(name_or_path))
    base_name = name.split(":", 1)[1] if name.startswith(("hf-hub:", "hf_hub:")) else name
    if ":" not in name and not timm.is_model(name):
        close = difflib.get_close_matches(base_name, timm.list_pretrained() + timm.list_models(), n=5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(f"'{name}' is neither a timm model name nor an existing local path.{hint}")
    return _create_timm(name, pretrained, f"timm model {name}", name, **model_kwargs)


def _create_timm(
    name: str, pretrained: bool, what: str, id_or_path: str | os.PathLike, **kwargs: Any
) -> torch.nn.Module:
    import timm

    if kwargs.get("pretrained_cfg_overlay") is None:
        kwargs.pop("pretrained_cfg_overlay", None)
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except _missing_errors() as error:
        raise _not_found(what, _timm_hub_id(id_or_path), None, error) from error
    except RuntimeError as error:
        if any(marker in str(error) for marker in _TIMM_MISSING_MARKERS):
            raise _not_found(what, _timm_hub_id(id_or_path), None, error) from error
        raise


def _timm_hub_id(id_or_path: str | os.PathLike) -> str | os.PathLike:
    """The hub repo that holds a timm name's weights (``timm/<name>``), for the download hint."""
    if looks_like_local_path(id_or_path):
        return id_or_path
    name = str(id_or_path)
    if name.startswith(("hf-hub:", "hf_hub:")):
        return name.split(":", 1)[1]
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.hf_hub_id if cfg is not None and cfg.hf_hub_id else name
