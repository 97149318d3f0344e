"""The interface every editing method implements, so one evaluation harness measures all of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NotRequired, TypedDict

import torch
from torch import nn


class EditOutput(TypedDict):
    """What a method returns for a batch.

    - ``edited``: (B, 3, H, W) float in [0, 1], the edited images at the batch's resolution.
    - ``edit_region``: optional (B, H, W) bool, the region the method itself chose to edit (a DiffEdit mask, a
      Learnable Regions box); measured against the true changed region where one is known.
    - ``reconstruction``: optional (B, 3, H, W) float in [0, 1], the method's re-encoding of the source without any
      edit (autoencoding methods); measured against the source (``reconstruction/psnr``, ``reconstruction/ssim``).
    """

    edited: torch.Tensor
    edit_region: NotRequired[torch.Tensor]
    reconstruction: NotRequired[torch.Tensor]


class EditingMethod(nn.Module, ABC):
    """Base class of editing methods: ``forward(batch) -> EditOutput``.

    ``batch`` is an edit-benchmark batch (see ``datamodules.edit_benchmark``): at least ``source_image``
    (B, 3, H, W) in [0, 1], ``source_prompt``, ``target_prompt`` and ``instruction`` (lists of B strings), and
    ``edit_mask`` (B, H, W) with ``has_mask`` (B,). Methods are ``nn.Module``s so that their networks move to
    the right device with the evaluation system.
    """

    name: str = "method"

    @abstractmethod
    def forward(self, batch: dict[str, Any]) -> EditOutput:
        """Edit a benchmark batch (see the class docstring)."""
