"""Saved h-space directions: ``directions.safetensors`` plus ``directions.json`` describing them.

The JSON names the method (``pca``, ``supervised``), the model, the timesteps and eta, the h-space place, the
scale units, and for supervised directions the attribute values and how many samples each had. Tensors:

- PCA: ``directions`` (k, T, *h) unit per step, ``std`` (k, T); one unit of scale is one standard deviation;
- supervised: ``mean.<attribute>`` (V, T, *h), the mean h of the samples labelled with each value, and
  ``count.<attribute>`` (V,); a direction is the difference of two means, one unit of scale the whole difference.

Both files are written to a temporary folder and renamed into place, so an interrupted save leaves nothing half
written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interpedit.data.image_io import DataFileError
from interpedit.hspace.supervised import project_away
from interpedit.user_errors import MissingFileError

DIRECTIONS_FILE = "directions.safetensors"
DESCRIPTION_FILE = "directions.json"


def save_directions(out: str | os.PathLike, tensors: dict[str, Tensor], description: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as scratch:
        staging = Path(scratch) / "directions"
        staging.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(staging / DIRECTIONS_FILE))
        (staging / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return out


class SavedDirections:
    """Directions read back from a folder written by ``save_directions``."""

    def __init__(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (DIRECTIONS_FILE, DESCRIPTION_FILE):
            if not (folder / name).is_file():
                raise MissingFileError(f"{folder}: no {name}; write directions with "
                                        "`python eval.py --config configs/hspace/shapes_supervised.yaml` first")
        self.folder = folder
        self.description = json.loads((folder / DESCRIPTION_FILE).read_text())
        for key in ("method", "timesteps", "place"):
            if key not in self.description:
                raise DataFileError(folder / DESCRIPTION_FILE, f"the field {key!r} is missing")
        self.tensors = load_file(str(folder / DIRECTIONS_FILE))

    @property
    def method(self) -> str:
        return self.description["method"]

    def values(self, attribute: str) -> list[str]:
        try:
            return list(self.description["attributes"][attribute])
        except KeyError:
            raise DataFileError(self.folder / DESCRIPTION_FILE, f"no supervised attribute {attribute!r}; it has "
                             f"{sorted(self.description.get('attributes', {}))}") from None

    def mean(self, attribute: str, value: str) -> Tensor:
        values = self.values(attribute)
        if value not in values:
            raise DataFileError(self.folder, f"{attribute} has no value {value!r}; it has {values}")
        index = values.index(value)
        if int(self.tensors[f"count.{attribute}"][index]) == 0:
            raise DataFileError(self.folder, f"no sample was labelled {attribute}={value!r}; generate more samples")
        return self.tensors[f"mean.{attribute}"][index]

    def difference(self, attribute: str, source: str, target: str, project: tuple[str, ...] = ()) -> Tensor:
        """``mean(target) - mean(source)`` for ``attribute``, with the other attributes' directions in ``project``
        (each value's mean minus the attribute's overall mean) projected away. (T, *h)."""
        direction = self.mean(attribute, target) - self.mean(attribute, source)
        others = []
        for other in project:
            means = self.tensors[f"mean.{other}"]
            counts = self.tensors[f"count.{other}"].float()
            present = counts > 0
            overall = (means[present] * counts[present].view(-1, *[1] * (means.ndim - 1))).sum(0) / counts.sum()
            others += [means[i] - overall for i in torch.nonzero(present).flatten().tolist()]
        if others:
            basis = torch.stack([o.reshape(-1) for o in others])
            # Keep an independent set (the deviations of one attribute sum to zero, so one of them is redundant).
            rank = int(torch.linalg.matrix_rank(basis.double()))
            _, _, vh = torch.linalg.svd(basis.double(), full_matrices=False)
            direction = project_away(direction, [row.float().reshape(direction.shape) for row in vh[:rank]])
        return direction
