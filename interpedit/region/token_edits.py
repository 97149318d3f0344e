"""Edits on region token sets: remove, move, resize, swap, transplant and interpolate regions.

Every function returns a new ``RegionTokenSet`` of new tensors (none shares memory with the inputs, so in-place
changes to a result never reach the original) and leaves its inputs untouched; only the edited slots differ.
A slot is named by an ``int`` (the same slot in every sample) or a (B,) long tensor (one slot per sample). Edits
act on appearance tokens and explicit positions; the region tokens the decoder sees come from
``RegionEncoder.condition(edited.appearance, edited.positions, edited.valid)``. A token set may also carry each
region's silhouette (its outline in a frame that follows its position, ``interpedit.region.region_silhouettes``) for
decoders that paint outlines; silhouettes travel with appearance: a move or resize leaves them as they are, a swap or
transplant carries them along, a removal zeroes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from interpedit.region.region_positions import POSITION_DIM
from interpedit.user_errors import OptionError


Slot = int | torch.Tensor


@dataclass(frozen=True)
class RegionTokenSet:
    """The editable description of an image's regions.

    Attributes:
        appearance: (B, K, D) position-free appearance tokens.
        positions: (B, K, 3) ``x, y, size`` in [0, 1] (see ``interpedit.region.region_positions``).
        valid: (B, K) bool, True where the slot holds a region.
        silhouettes: (B, K, S, S) region outlines in [0, 1] in position-relative frames, or None.
    """

    appearance: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    silhouettes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        batch_slots = tuple(self.valid.shape)
        if (
            len(batch_slots) != 2
            or tuple(self.appearance.shape[:2]) != batch_slots
            or self.appearance.dim() != 3
            or tuple(self.positions.shape) != (*batch_slots, POSITION_DIM)
        ):
            raise ValueError(
                f"RegionTokenSet: appearance {tuple(self.appearance.shape)}, positions {tuple(self.positions.shape)} "
                f"and valid {batch_slots} do not share (B, K); expected (B, K, D), (B, K, {POSITION_DIM}), (B, K)"
            )
        if self.valid.dtype != torch.bool:
            raise OptionError(f"RegionTokenSet.valid: expected bool, got {self.valid.dtype}")
        if self.silhouettes is not None and (
            self.silhouettes.dim() != 4
            or tuple(self.silhouettes.shape[:2]) != batch_slots
            or self.silhouettes.shape[2] != self.silhouettes.shape[3]
        ):
            raise ValueError(
                f"RegionTokenSet.silhouettes: expected (B={batch_slots[0]}, K={batch_slots[1]}, S, S), got "
                f"{tuple(self.silhouettes.shape)}"
            )

    @property
    def batch_size(self) -> int:
        """B."""
        return self.valid.shape[0]

    @property
    def num_slots(self) -> int:
        """K."""
        return self.valid.shape[1]


def _slot_index(slot: Slot, tokens: RegionTokenSet, what: str) -> torch.Tensor:
    """(B,) long slot of each sample."""
    batch, slots = tokens.valid.shape
    index = torch.as_tensor(slot, device=tokens.valid.device)
    if index.dtype == torch.bool or index.is_floating_point() or index.dim() > 1:
        raise ValueError(f"{what}: slot must be an int or a (B,) long tensor, got {slot!r}")
    index = index.expand(batch) if index.dim() == 0 else index
    if index.shape != (batch,):
        raise ValueError(f"{what}: {index.shape[0]} slots given for a batch of {batch}")
    if ((index < 0) | (index >= slots)).any():
        raise ValueError(f"{what}: slot {index.tolist()} is outside [0, {slots})")
    return index.long()


def _slot_mask(slot: Slot, tokens: RegionTokenSet, what: str) -> torch.Tensor:
    """(B, K) bool, True at the named slot of each sample."""
    return torch.nn.functional.one_hot(_slot_index(slot, tokens, what), tokens.num_slots).bool()


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, K, ...) values at one slot per sample -> (B, 1, ...)."""
    return values[torch.arange(values.shape[0], device=values.device), index][:, None]


def _cloned(silhouettes: torch.Tensor | None) -> torch.Tensor | None:
    return None if silhouettes is None else silhouettes.clone()


def _at_slot(slot_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, K) bool -> broadcastable against (B, K, ...) ``like``."""
    return slot_mask.reshape(*slot_mask.shape, *([1] * (like.dim() - 2)))


def _require_valid(mask: torch.Tensor, tokens: RegionTokenSet, what: str) -> None:
    empty = (mask & ~tokens.valid).any(dim=1)
    if empty.any():
        raise ValueError(f"{what}: the slot of sample(s) {empty.nonzero().flatten().tolist()} holds no region")


def _per_sample(
    value: torch.Tensor | float | Sequence[float], batch: int, width: int, reference: torch.Tensor, what: str
) -> torch.Tensor:
    """(B, width) values from one value for all samples ((), (width,)) or one per sample ((B,) if width is 1,
    (B, width))."""
    given = torch.as_tensor(value, dtype=reference.dtype, device=reference.device)
    value = given[:, None] if width == 1 and given.dim() == 1 else given
    value = value.reshape(1, width) if value.dim() == 0 or (value.dim() == 1 and value.numel() == width) else value
    if value.dim() != 2 or value.shape[1] != width or value.shape[0] not in (1, batch):
        raise ValueError(f"{what}: shape {tuple(given.shape)} is neither one value nor one per sample of {batch}")
    return value.expand(batch, width)


def _check_unit_interval(values: torch.Tensor, what: str) -> None:
    if ((values < 0) | (values > 1)).any():
        raise ValueError(f"{what}: expected values in [0, 1], got {values.tolist()}")


def remove_regions(tokens: RegionTokenSet, remove: int | Sequence[int] | torch.Tensor) -> RegionTokenSet:
    """Remove regions: their slots become invalid (the decoder infills them) and their tokens zero.

    Args:
        tokens: the token set.
        remove: slot indices removed in every sample, or a (K,) / (B, K) bool mask of slots to remove.
    """
    batch, slots = tokens.valid.shape
    if isinstance(remove, torch.Tensor) and remove.dtype == torch.bool:
        mask = remove.to(tokens.valid.device).expand(batch, slots)
    else:
        indices = torch.as_tensor(remove, dtype=torch.long).flatten()
        if ((indices < 0) | (indices >= slots)).any():
            raise ValueError(f"remove_regions: slot {indices.tolist()} is outside [0, {slots})")
        mask = torch.zeros(slots, dtype=torch.bool)
        mask[indices] = True
        mask = mask.to(tokens.valid.device).expand(batch, slots)
    keep = ~mask
    silhouettes = tokens.silhouettes
    if silhouettes is not None:
        silhouettes = torch.where(_at_slot(keep, silhouettes), silhouettes, torch.zeros_like(silhouettes))
    return RegionTokenSet(
        torch.where(keep[..., None], tokens.appearance, torch.zeros_like(tokens.appearance)),
        torch.where(keep[..., None], tokens.positions, torch.zeros_like(tokens.positions)),
        tokens.valid & keep,
        silhouettes,
    )


def move_region(
    tokens: RegionTokenSet, slot: Slot, centroid: torch.Tensor | Sequence[float]
) -> RegionTokenSet:
    """Move a region: its centroid becomes ``centroid``; appearance and size stay.

    Args:
        tokens: the token set.
        slot: the region's slot.
        centroid: new ``(x, y)`` in [0, 1], as (2,) or (B, 2).
    """
    mask = _slot_mask(slot, tokens, "move_region")
    _require_valid(mask, tokens, "move_region")
    new = _per_sample(centroid, tokens.batch_size, 2, tokens.positions, "move_region: centroid")
    _check_unit_interval(new, "move_region: centroid")
    positions = tokens.positions.clone()
    positions[..., :2] = torch.where(mask[..., None], new[:, None, :], tokens.positions[..., :2])
    return RegionTokenSet(tokens.appearance.clone(), positions, tokens.valid.clone(), _cloned(tokens.silhouettes))


def resize_region(tokens: RegionTokenSet, slot: Slot, size: torch.Tensor | float) -> RegionTokenSet:
    """Resize a region: its size (``sqrt`` of its area fraction) becomes ``size``; appearance and centroid stay.

    To scale a region by a factor ``s``, pass ``s`` times its current size.

    Args:
        tokens: the token set.
        slot: the region's slot.
        size: new size in [0, 1], a float or (B,).
    """
    mask = _slot_mask(slot, tokens, "resize_region")
    _require_valid(mask, tokens, "resize_region")
    new = _per_sample(size, tokens.batch_size, 1, tokens.positions, "resize_region: size")
    _check_unit_interval(new, "resize_region: size")
    positions = tokens.positions.clone()
    positions[..., 2] = torch.where(mask, new, tokens.positions[..., 2])
    return RegionTokenSet(tokens.appearance.clone(), positions, tokens.valid.clone(), _cloned(tokens.silhouettes))


def swap_regions(tokens: RegionTokenSet, slot_a: Slot, slot_b: Slot) -> RegionTokenSet:
    """Swap two regions' appearances (and silhouettes) within each image; positions stay, so each object takes the
    other's place.

    Args:
        tokens: the token set.
        slot_a: first slot.
        slot_b: second slot.
    """
    index_a = _slot_index(slot_a, tokens, "swap_regions")
    index_b = _slot_index(slot_b, tokens, "swap_regions")
    mask_a = torch.nn.functional.one_hot(index_a, tokens.num_slots).bool()
    mask_b = torch.nn.functional.one_hot(index_b, tokens.num_slots).bool()
    _require_valid(mask_a | mask_b, tokens, "swap_regions")
    appearance_a, appearance_b = _take(tokens.appearance, index_a), _take(tokens.appearance, index_b)
    swapped = torch.where(mask_a[..., None], appearance_b, tokens.appearance)
    swapped = torch.where(mask_b[..., None] & ~mask_a[..., None], appearance_a, swapped)
    silhouettes = tokens.silhouettes
    if silhouettes is not None:
        first, second = _at_slot(mask_a, silhouettes), _at_slot(mask_b & ~mask_a, silhouettes)
        silhouettes = torch.where(first, _take(silhouettes, index_b), silhouettes)
        silhouettes = torch.where(second, _take(tokens.silhouettes, index_a), silhouettes)
    return RegionTokenSet(swapped, tokens.positions.clone(), tokens.valid.clone(), silhouettes)


def transplant_region(
    target: RegionTokenSet,
    source: RegionTokenSet,
    source_slot: Slot,
    target_slot: Slot,
    *,
    take_position: bool = False,
) -> RegionTokenSet:
    """Give a target region the appearance (and silhouette) of a region of another image (sample ``b`` of each,
    pairwise). Both token sets carry silhouettes of one size, or neither does.

    Args:
        target: the token set being edited.
        source: the token set the appearance comes from; same batch size as ``target``.
        source_slot: the region in ``source``.
        target_slot: the slot in ``target`` that receives it; may be empty when ``take_position`` is set (adding
            an object).
        take_position: also take the source region's position; otherwise the target slot keeps its own.
    """
    if source.batch_size != target.batch_size or source.appearance.shape[-1] != target.appearance.shape[-1]:
        raise ValueError(
            f"transplant_region: source {tuple(source.appearance.shape)} and target {tuple(target.appearance.shape)} "
            "need the same batch size and token width"
        )
    source_index = _slot_index(source_slot, source, "transplant_region: source_slot")
    _require_valid(
        torch.nn.functional.one_hot(source_index, source.num_slots).bool(), source, "transplant_region: source_slot"
    )
    target_mask = _slot_mask(target_slot, target, "transplant_region: target_slot")
    if not take_position:
        _require_valid(target_mask, target, "transplant_region: target_slot (use take_position to fill an empty one)")
    _check_same_silhouettes(source, target, "transplant_region")
    appearance, position = _take(source.appearance, source_index), _take(source.positions, source_index)
    slot = target_mask[..., None]
    positions = torch.where(slot, position, target.positions) if take_position else target.positions.clone()
    silhouettes = target.silhouettes
    if silhouettes is not None:
        taken = _take(source.silhouettes, source_index).to(silhouettes.dtype)
        silhouettes = torch.where(_at_slot(target_mask, silhouettes), taken, silhouettes)
    return RegionTokenSet(
        torch.where(slot, appearance.to(target.appearance.dtype), target.appearance),
        positions,
        target.valid | target_mask,
        silhouettes,
    )


def _check_same_silhouettes(first: RegionTokenSet, second: RegionTokenSet, what: str) -> None:
    shapes = [None if t.silhouettes is None else tuple(t.silhouettes.shape[2:]) for t in (first, second)]
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"{what}: one token set has silhouettes of size {shapes[0]} and the other {shapes[1]}; encode both with "
            "the same model"
        )


def interpolate_tokens(start: RegionTokenSet, end: RegionTokenSet, alpha: float) -> RegionTokenSet:
    """Linear interpolation between two images' token sets, slot by slot.

    Slots valid in both sets interpolate appearance and position (and silhouettes, when the sets carry them). A slot valid in only one set keeps that
    set's tokens and is present while ``alpha`` is on its side (``alpha < 0.5`` for ``start``, ``alpha >= 0.5``
    for ``end``), so a region appears or disappears at the midpoint instead of fading through a meaningless mix
    with a zero token.

    Args:
        start: token set at ``alpha = 0``.
        end: token set at ``alpha = 1``; same shapes as ``start``.
        alpha: interpolation weight in [0, 1].
    """
    if start.appearance.shape != end.appearance.shape:
        raise ValueError(
            f"interpolate_tokens: token sets of shapes {tuple(start.appearance.shape)} and "
            f"{tuple(end.appearance.shape)}; slots are matched by index, so shapes must agree"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"interpolate_tokens: alpha must be in [0, 1], got {alpha}")
    both = (start.valid & end.valid)[..., None]
    only_start = (start.valid & ~end.valid)[..., None]
    only_end = (end.valid & ~start.valid)[..., None]
    appearance = torch.lerp(start.appearance, end.appearance, alpha)
    positions = torch.lerp(start.positions, end.positions, alpha)
    lone_appearance = torch.where(only_start, start.appearance, end.appearance)
    lone_positions = torch.where(only_start, start.positions, end.positions)
    appearance = torch.where(both, appearance, lone_appearance)
    positions = torch.where(both, positions, lone_positions)
    present = both | (only_start & (alpha < 0.5)) | (only_end & (alpha >= 0.5))
    _check_same_silhouettes(start, end, "interpolate_tokens")
    silhouettes = None
    if start.silhouettes is not None:
        shape_both, shape_start = _at_slot(both[..., 0], start.silhouettes), _at_slot(only_start[..., 0], start.silhouettes)
        mixed = torch.lerp(start.silhouettes, end.silhouettes.to(start.silhouettes.dtype), alpha)
        lone = torch.where(shape_start, start.silhouettes, end.silhouettes.to(start.silhouettes.dtype))
        silhouettes = torch.where(shape_both, mixed, lone)
        silhouettes = torch.where(_at_slot(present[..., 0], silhouettes), silhouettes, torch.zeros_like(silhouettes))
    return RegionTokenSet(
        torch.where(present, appearance, torch.zeros_like(appearance)),
        torch.where(present, positions, torch.zeros_like(positions)),
        present[..., 0],
        silhouettes,
    )
