"""The four showcase edits of a region autoencoder on a batch: reconstruct, move, remove and swap."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from interpedit.region.region_autoencoder import RegionAutoencoder
from interpedit.region.token_edits import RegionTokenSet, move_region, remove_regions, swap_regions


def _on_samples(
    tokens: RegionTokenSet, which: Tensor, edit: Callable[[RegionTokenSet], RegionTokenSet]
) -> RegionTokenSet:
    """``edit`` applied to the samples where ``which`` (B,) is True; the others keep their tokens."""
    index = which.nonzero().flatten()
    if index.numel() == 0:
        return tokens
    shapes = tokens.silhouettes
    edited = edit(RegionTokenSet(
        tokens.appearance[index], tokens.positions[index], tokens.valid[index],
        None if shapes is None else shapes[index],
    ))
    appearance, positions, valid = tokens.appearance.clone(), tokens.positions.clone(), tokens.valid.clone()
    appearance[index], positions[index], valid[index] = edited.appearance, edited.positions, edited.valid
    if shapes is not None:
        shapes = shapes.clone()
        shapes[index] = edited.silhouettes
    return RegionTokenSet(appearance, positions, valid, shapes)


def far_centroid(positions: Tensor, slot: int) -> Tensor:
    """A visible move for every sample: each coordinate of the region's centroid goes to 0.25 or 0.75, whichever
    is on the other side of the centre. (B, 2)."""
    centre = positions[:, slot, :2]
    return torch.where(centre > 0.5, torch.full_like(centre, 0.25), torch.full_like(centre, 0.75))


@torch.no_grad()
def demo_edits(
    model: RegionAutoencoder,
    images: Tensor,
    masks: Tensor,
    valid: Tensor,
    *,
    slot: int = 0,
    other_slot: int = 1,
    steps: int = 25,
    cfg_scale: float = 1.0,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Columns ``source``, ``reconstruct``, ``move``, ``remove``, ``swap``, each (B, 3, H, W) in [0, 1].

    ``move`` sends region ``slot`` across the image (:func:`far_centroid`), ``remove`` drops it, and ``swap``
    trades the appearances of ``slot`` and ``other_slot``; a sample without ``other_slot`` keeps its tokens in
    the swap column, and one without ``slot`` keeps its tokens in every column. Every column decodes from the same
    noise.

    Args:
        model: the region autoencoder.
        images: (B, 3, H, W) in [0, 1]; masks (B, K, H, W) bool; valid (B, K) bool.
        slot, other_slot: regions to edit.
        steps, cfg_scale, seed: decoding (see ``RegionAutoencoder.decode``).
    """
    tokens = model.encode(images, masks, valid).token_set()
    has_slot, has_both = valid[:, slot], valid[:, slot] & valid[:, other_slot]
    edits = {
        "reconstruct": tokens,
        "move": _on_samples(tokens, has_slot, lambda t: move_region(t, slot, far_centroid(t.positions, slot))),
        "remove": _on_samples(tokens, has_slot, lambda t: remove_regions(t, slot)),
        "swap": _on_samples(tokens, has_both, lambda t: swap_regions(t, slot, other_slot)),
    }
    size = images.shape[-1]
    columns = {"source": images}
    for name, edited in edits.items():
        columns[name] = model.decode(edited, steps=steps, cfg_scale=cfg_scale, seed=seed, image_size=size)
    return columns
