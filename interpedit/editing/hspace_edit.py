"""Supervised h-space directions as an editing method: invert the source, add ``scale * (mean h of the target
value - mean h of the source value)`` at every step, regenerate.

The attribute change comes from the benchmark's ``blended_word`` (``"red blue"``: colour red to blue; ``"circle
star"``: shape). The attribute is the one whose values contain both words, among those saved with the directions
(``lightning_modules.direction_discovery``). A sample whose words name no saved attribute is regenerated without an
offset, i.e. it is the inversion's reconstruction, as is one whose value no generated sample had (both with a
warning). ``project`` removes other attributes' directions first (the
conditional directions of Haas et al.). The method reads the source image and ``blended_word`` only.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from interpedit.editing.editing_method import EditingMethod, EditOutput
from interpedit.hspace.diffusion_model import HSpaceModel
from interpedit.hspace.directions_file import SavedDirections
from interpedit.hspace.trajectory import HTrajectory, ddim_inversion, ddpm_inversion, regenerate
from interpedit.user_errors import OptionError

INVERSIONS = ("ddim", "ddpm")


class HSpaceEdit(EditingMethod):
    """Invert, offset h along a supervised direction, regenerate.

    Args:
        model: the diffusion model the directions were found in (hub id or folder).
        directions: a folder written by ``DirectionDiscoveryModule`` with ``method: supervised``.
        scale: the direction's multiple (1: one mean difference).
        project: attributes whose directions are projected away (e.g. ``[shape, size]`` for a recolour).
        inversion: ``ddim`` (eta 0) or ``ddpm`` (edit-friendly, eta 1; its stored noises keep the image).
        window: ``[first, last]`` steps that get the offset; None for all.
        seed: seed of the edit-friendly inversion's noise.
    """

    name = "hspace_supervised"

    def __init__(self, model: str, directions: str, scale: float = 1.0, project: list[str] | None = None,
                 inversion: str = "ddim", window: tuple[int, int] | None = None, seed: int = 0) -> None:
        super().__init__()
        if inversion not in INVERSIONS:
            raise OptionError(f"HSpaceEdit.inversion: {inversion!r} is not one of {', '.join(INVERSIONS)}")
        self.saved = SavedDirections(directions)
        if self.saved.method != "supervised":
            raise OptionError(f"HSpaceEdit.directions: {directions} holds {self.saved.method!r} directions; "
                             "it needs supervised ones")
        self.model = HSpaceModel(model, self.saved.description["place"])
        self.unet = self.model.unet  # registered, so that cost counting and devices see it
        self.timesteps = [int(t) for t in self.saved.description["timesteps"]]
        self.scale = scale
        self.project = tuple(project or ())
        self.inversion = inversion
        self.window = tuple(window) if window is not None else None
        self.seed = seed
        if project:
            self.name = "hspace_supervised_projected"

    def attribute_change(self, blended_word: str) -> tuple[str, str, str] | None:
        """``(attribute, source value, target value)`` named by ``"<source> <target>"``, or None."""
        words = blended_word.split()
        if len(words) != 2:
            return None
        for attribute in self.saved.description.get("attributes", {}):
            values = self.saved.values(attribute)
            if words[0] in values and words[1] in values:
                return attribute, words[0], words[1]
        return None

    def invert(self, x0: torch.Tensor) -> HTrajectory:
        """The trajectory of the samples ``x0`` (DDIM or edit-friendly DDPM inversion), with h recorded."""
        model = self.model
        if self.inversion == "ddim":
            return ddim_inversion(model.hspace, model.schedule, x0, self.timesteps)
        return ddpm_inversion(model.hspace, model.schedule, x0, self.timesteps, eta=1.0,
                              generator=torch.Generator().manual_seed(self.seed))

    def sample_direction(self, words: str, b: int, like: torch.Tensor) -> torch.Tensor | None:
        """The (T, *h) offset of sample ``b`` (scale and window applied), or None (with a warning) when ``words``
        name no saved attribute change or a value no generated sample had."""
        change = self.attribute_change(words)
        if change is None:
            warnings.warn(f"{type(self).__name__}: '{words}' names no saved attribute change; sample {b} is only "
                          "reconstructed", UserWarning, stacklevel=3)
            return None
        attribute, source, target = change
        project = tuple(a for a in self.project if a != attribute)
        try:
            direction = self.saved.difference(attribute, source, target, project).to(like)
        except ValueError as error:  # a value no generated sample had
            warnings.warn(f"{type(self).__name__}: {error}; sample {b} is only reconstructed", UserWarning,
                          stacklevel=3)
            return None
        if self.window is not None:
            first, last = self.window
            keep = torch.zeros(len(self.timesteps), device=like.device)
            keep[first : last + 1] = 1
            direction = direction * keep.view(-1, *[1] * (direction.ndim - 1))
        return self.scale * direction

    @torch.no_grad()
    def forward(self, batch: dict[str, Any]) -> EditOutput:
        images = batch["source_image"]
        model = self.model
        model.device = images.device
        x0 = model.encode(images)
        trajectory = self.invert(x0)
        offsets = torch.zeros(len(self.timesteps), images.shape[0], *trajectory.hs.shape[2:], device=images.device)
        for b, words in enumerate(batch["blended_word"]):
            direction = self.sample_direction(words, b, offsets)
            if direction is not None:
                offsets[:, b] = direction
        edited = regenerate(model.hspace, model.schedule, trajectory, offsets[None])[0]
        return {"edited": model.decode(edited)}
