"""The region autoencoder as an editing method: encode the source into region tokens, edit tokens, decode.

On a shapes benchmark the request is read from the entry's exact edit (``edit`` and ``source_scene`` in the batch)
and the regions from its instance label map (``source_labels``): one region per object, then the background, the
layout the shapes data module trains with. Supported edits and what they do to the tokens:

- ``move``: the object's centroid moves by the requested displacement of its centre; appearance and size stay.
- ``resize``: the object's size (square root of its area fraction) scales by the requested radius ratio.
- ``remove``: the object's token is removed; the decoder infills its pixels.
- ``swap``: the two objects trade appearance tokens (colour, shape, rotation); positions and sizes stay.

Every batch is also decoded unedited (``reconstruction`` in the output), with the same noise, so that
reconstruction quality and the edit's effect are measured from one run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from interpedit.editing.editing_method import EditingMethod, EditOutput
from interpedit.region.pretrained import load_region_autoencoder
from interpedit.region.region_autoencoder import RegionAutoencoder
from interpedit.region.token_edits import (
    RegionTokenSet,
    move_region,
    remove_regions,
    resize_region,
    swap_regions,
)
from interpedit.user_errors import OptionError

SUPPORTED_EDITS = ("move", "resize", "remove", "swap")
"""Shapes edit types the region autoencoder performs by token edits."""


def label_map_regions(labels: Tensor, num_objects: int | None = None) -> tuple[Tensor, Tensor]:
    """Region masks from instance label maps (0 = background, ``i + 1`` = object ``i``).

    Args:
        labels: (B, H, W) integer label maps.
        num_objects: object slots; default the largest label in the batch.

    Returns:
        masks (B, K, H, W) bool with ``K = num_objects + 1`` (objects, then the background) and valid (B, K),
        True where a mask is non-empty.
    """
    if labels.dim() != 3:
        raise ValueError(f"label_map_regions: expected (B, H, W) label maps, got {tuple(labels.shape)}")
    count = int(labels.max()) if num_objects is None else num_objects
    ids = torch.cat([torch.arange(1, count + 1, device=labels.device), torch.zeros(1, dtype=torch.long, device=labels.device)])
    masks = labels[:, None] == ids[None, :, None, None]
    return masks, masks.flatten(2).any(dim=2)


def _sample(tokens: RegionTokenSet, index: int) -> RegionTokenSet:
    pick = slice(index, index + 1)
    silhouettes = None if tokens.silhouettes is None else tokens.silhouettes[pick]
    return RegionTokenSet(tokens.appearance[pick], tokens.positions[pick], tokens.valid[pick], silhouettes)


def _cat(token_sets: Sequence[RegionTokenSet]) -> RegionTokenSet:
    silhouettes = None if token_sets[0].silhouettes is None else torch.cat([t.silhouettes for t in token_sets])
    return RegionTokenSet(
        torch.cat([t.appearance for t in token_sets]),
        torch.cat([t.positions for t in token_sets]),
        torch.cat([t.valid for t in token_sets]),
        silhouettes,
    )


def apply_shapes_edit(
    tokens: RegionTokenSet, edit: dict[str, Any], source_scene: dict[str, Any], *, where: str = "edit"
) -> RegionTokenSet:
    """One sample's token set (B = 1) edited as a shapes benchmark entry asks.

    Args:
        tokens: the source's tokens, object ``i`` in slot ``i``.
        edit: the entry's ``edit`` (``type``, ``params``).
        source_scene: the source scene (``Scene.to_dict``), for the objects' centres and radii.
        where: names the sample in errors.

    Raises:
        ValueError: an edit type this method does not perform, or an edited object with no visible region.
    """
    kind, params = edit.get("type"), edit.get("params", {})
    objects = source_scene.get("objects", [])
    if kind == "move":
        slot = int(params["object"])
        old = torch.tensor(objects[slot]["position"], dtype=tokens.positions.dtype, device=tokens.positions.device)
        new = torch.tensor(params["position"], dtype=old.dtype, device=old.device)
        centroid = (tokens.positions[0, slot, :2] + new - old).clamp(0.0, 1.0)
        return move_region(tokens, slot, centroid)
    if kind == "resize":
        slot = int(params["object"])
        ratio = float(params["radius"]) / float(objects[slot]["radius"])
        return resize_region(tokens, slot, (tokens.positions[0, slot, 2] * ratio).clamp(0.0, 1.0))
    if kind == "remove":
        return remove_regions(tokens, int(params["object"]))
    if kind == "swap":
        first, second = (int(i) for i in params["objects"])
        return swap_regions(tokens, first, second)
    raise ValueError(
        f"{where}: the region autoencoder performs {', '.join(SUPPORTED_EDITS)} edits, not {kind!r}; export a "
        f"benchmark with those, e.g. python -m datamodules.shapes export --edits {','.join(SUPPORTED_EDITS)} ..."
    )


class RegionAutoencoderEdit(EditingMethod):
    """Edits by changing region tokens and decoding them (see the module docstring).

    Args:
        model: a trained region autoencoder, or its folder / hub id (``interpedit.region.pretrained``).
        steps: DDIM steps of the decoder.
        cfg_scale: classifier-free guidance scale; 1 turns guidance off.
        seed: seed of the decoder's initial noise (per batch).
        reconstruct: also decode the unedited tokens (``reconstruction`` in the output).
    """

    name = "region_autoencoder"

    def __init__(
        self,
        model: RegionAutoencoder | str,
        steps: int = 25,
        cfg_scale: float = 1.0,
        seed: int = 0,
        reconstruct: bool = True,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise OptionError(f"RegionAutoencoderEdit.steps: must be at least 1, got {steps}")
        if cfg_scale < 0:
            raise OptionError(f"RegionAutoencoderEdit.cfg_scale: must be non-negative, got {cfg_scale}")
        self.model = load_region_autoencoder(model) if isinstance(model, str) else model
        self.model.eval()
        self.steps, self.cfg_scale, self.seed, self.reconstruct = steps, cfg_scale, seed, reconstruct

    def encode(self, batch: dict[str, Any]) -> RegionTokenSet:
        """Tokens of the batch's source images with regions from ``source_labels``."""
        labels = batch.get("source_labels")
        if labels is None or bool((labels < 0).any()):
            raise ValueError(
                "RegionAutoencoderEdit: the batch has no instance label maps ('source_labels'); it edits regions of "
                "shapes benchmarks (python -m datamodules.shapes export)"
            )
        masks, valid = label_map_regions(labels)
        return self.model.encode(batch["source_image"], masks, valid).token_set()

    def edit_tokens(self, tokens: RegionTokenSet, batch: dict[str, Any]) -> RegionTokenSet:
        """Each sample's tokens edited as its benchmark entry asks."""
        edited = []
        for index in range(tokens.batch_size):
            where = f"entry {batch['image_id'][index]!r}"
            edit, scene = json.loads(batch["edit"][index]), json.loads(batch["source_scene"][index])
            edited.append(apply_shapes_edit(_sample(tokens, index), edit, scene, where=where))
        return _cat(edited)

    @torch.no_grad()
    def forward(self, batch: dict[str, Any]) -> EditOutput:
        tokens = self.encode(batch)
        edited = self.edit_tokens(tokens, batch)
        size = batch["source_image"].shape[-1]
        decode = dict(steps=self.steps, cfg_scale=self.cfg_scale, seed=self.seed, image_size=size)
        if not self.reconstruct:
            return {"edited": self.model.decode(edited, **decode)}
        # Two calls with one seed: the edit and the reconstruction of a sample start from the same noise.
        return {"edited": self.model.decode(edited, **decode), "reconstruction": self.model.decode(tokens, **decode)}
