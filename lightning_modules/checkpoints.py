"""Rebuilding a LightningModule from its ``.ckpt`` (saved hyperparameters and weights) for the export commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

from interpedit.user_errors import MissingFileError


def load_system(
    checkpoint: str | Path, build: Callable[[dict[str, Any], dict[str, Any]], LightningModule], what: str
) -> tuple[LightningModule, dict[str, Any]]:
    """``(module, state)``: ``build(hparams, state)`` with the checkpoint's saved hyperparameters, then its weights.

    Raises ``MissingFileError`` for a missing file (``--ckpt``) and ``ValueError`` naming ``what`` for a file that
    is not such a checkpoint.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise MissingFileError(f"{checkpoint}: no such checkpoint file (--ckpt)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    try:
        hparams = {key: value for key, value in state["hyper_parameters"].items() if not key.startswith("_")}
        module = build(hparams, state)
        module.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{checkpoint}: not a checkpoint of {what} ({str(exc).splitlines()[0]})") from exc
    return module, state
