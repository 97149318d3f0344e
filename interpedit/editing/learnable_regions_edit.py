"""Learnable Regions as an editing method for ``eval.py``: each batch gets a fresh AnchorNet (or a shared one's
weights), optimised on its images, then the chosen inpainting; ``edit_region`` is the chosen box."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from interpedit.editing.editing_method import EditingMethod, EditOutput
from interpedit.learnable_regions.learnable_regions import LearnableRegions
from interpedit.learnable_regions.released_layout import write_released_layout
from interpedit.user_errors import MissingFileError, OptionError


def load_anchor_net_state(path: str | Path) -> dict[str, torch.Tensor]:
    """AnchorNet weights from a ``train.py fit`` checkpoint of ``LearnableRegionsModule`` or a saved state dict."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"LearnableRegionsEdit.anchor_net: no file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise OptionError(f"LearnableRegionsEdit.anchor_net: {path} holds no state dict")
    prefixes = ("method.anchor_net.", "anchor_net.")
    for prefix in prefixes:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    return state


class LearnableRegionsEdit(LearnableRegions, EditingMethod):
    """``LearnableRegions`` behind the ``EditingMethod`` interface.

    It reads ``source_image``, ``source_prompt`` and ``target_prompt`` (the edit prompt) only.

    Args:
        anchor_net: start every image's optimisation from this shared AnchorNet (a checkpoint of
            ``lightning_modules.learnable_regions`` or a state-dict file) instead of the seeded initial weights.
        released_layout_dir: also write each result in the released code's layout (``results/``, ``boxes/``)
            under this folder.
        **kwargs: ``LearnableRegions``' arguments.
    """

    name = "learnable_regions"

    def __init__(self, inpainting: str, backbone: str, clip: str, anchor_net: str | None = None,
                 released_layout_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(inpainting, backbone, clip, **kwargs)
        self.shared_state = load_anchor_net_state(anchor_net) if anchor_net else None
        if self.shared_state is not None:
            self.fresh_policy(self.shared_state)  # fail now, naming the file, if it does not fit
        self.released_layout_dir = released_layout_dir
        if self.optimisation_steps == 0 and self.final_sizes == "sample":
            self.name = "learnable_regions_fixed_anchors"

    def forward(self, batch: dict[str, Any]) -> EditOutput:
        images = batch["source_image"]
        result = self.edit(images, list(batch["source_prompt"]), list(batch["target_prompt"]), self.shared_state)
        if self.released_layout_dir:
            indices = batch.get("index", torch.arange(images.shape[0]))
            for b in range(images.shape[0]):
                write_released_layout(self.released_layout_dir, int(indices[b]), batch["source_prompt"][b],
                                      batch["target_prompt"][b], images[b].float().cpu(),
                                      result.candidates[b].float().cpu(), result.candidate_boxes[b].cpu(),
                                      self.backbone.grid, int(result.chosen[b]))
        return {"edited": result.edited.to(images.device), "edit_region": result.region.to(images.device)}
