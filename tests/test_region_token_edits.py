"""Token-set edits: each changes only the edited slots and leaves its inputs untouched."""

import pytest
import torch

from interpedit.region import (
    RegionTokenSet,
    interpolate_tokens,
    move_region,
    remove_regions,
    resize_region,
    swap_regions,
    transplant_region,
)


def token_set(seed: int = 0, batch: int = 2, slots: int = 4) -> RegionTokenSet:
    generator = torch.Generator().manual_seed(seed)
    valid = torch.ones(batch, slots, dtype=torch.bool)
    valid[:, -1] = False
    appearance = torch.randn(batch, slots, 6, generator=generator) * valid[..., None]
    positions = torch.rand(batch, slots, 3, generator=generator) * valid[..., None]
    return RegionTokenSet(appearance, positions, valid)


def changed_slots(before: RegionTokenSet, after: RegionTokenSet) -> torch.Tensor:
    """(B, K) bool: slots where anything differs."""
    return (
        (before.appearance != after.appearance).any(dim=-1)
        | (before.positions != after.positions).any(dim=-1)
        | (before.valid != after.valid)
    )


def one_hot_slots(slots_per_sample: list[list[int]], num_slots: int = 4) -> torch.Tensor:
    mask = torch.zeros(len(slots_per_sample), num_slots, dtype=torch.bool)
    for b, slots in enumerate(slots_per_sample):
        mask[b, slots] = True
    return mask


FIELDS = ("appearance", "positions", "valid")


def untouched(tokens: RegionTokenSet, copy: RegionTokenSet) -> bool:
    return all(torch.equal(getattr(tokens, field), getattr(copy, field)) for field in FIELDS)


def snapshot(tokens: RegionTokenSet) -> RegionTokenSet:
    return RegionTokenSet(tokens.appearance.clone(), tokens.positions.clone(), tokens.valid.clone())


def test_remove_regions_invalidates_and_zeroes_only_those_slots():
    tokens = token_set()
    copy = snapshot(tokens)
    edited = remove_regions(tokens, [1])
    assert torch.equal(changed_slots(tokens, edited), one_hot_slots([[1], [1]]))
    assert not edited.valid[:, 1].any() and (edited.appearance[:, 1] == 0).all()
    per_sample = remove_regions(tokens, one_hot_slots([[0], [2]]))
    assert torch.equal(changed_slots(tokens, per_sample), one_hot_slots([[0], [2]]))
    assert untouched(tokens, copy)


def test_move_region_sets_the_centroid_and_keeps_size_and_appearance():
    tokens = token_set()
    copy = snapshot(tokens)
    edited = move_region(tokens, torch.tensor([2, 0]), torch.tensor([[0.9, 0.1], [0.2, 0.3]]))
    assert torch.equal(changed_slots(tokens, edited), one_hot_slots([[2], [0]]))
    assert torch.equal(edited.positions[0, 2, :2], torch.tensor([0.9, 0.1]))
    assert torch.equal(edited.positions[1, 0, :2], torch.tensor([0.2, 0.3]))
    assert torch.equal(edited.positions[..., 2], tokens.positions[..., 2])
    assert torch.equal(edited.appearance, tokens.appearance)
    assert untouched(tokens, copy)
    with pytest.raises(ValueError, match="holds no region"):
        move_region(tokens, 3, (0.5, 0.5))
    with pytest.raises(ValueError, match=r"centroid: expected values in \[0, 1\]"):
        move_region(tokens, 0, (1.5, 0.5))
    with pytest.raises(ValueError, match=r"centroid: shape \(4,\) is neither one value nor one per sample of 2"):
        move_region(tokens, 0, (0.1, 0.2, 0.3, 0.4))


def test_resize_region_sets_only_the_size():
    tokens = token_set()
    copy = snapshot(tokens)
    edited = resize_region(tokens, 1, 0.25)
    assert torch.equal(changed_slots(tokens, edited), one_hot_slots([[1], [1]]))
    assert torch.equal(edited.positions[:, 1, 2], torch.tensor([0.25, 0.25]))
    per_sample = resize_region(tokens, 1, torch.tensor([0.1, 0.2]))
    assert torch.equal(per_sample.positions[:, 1, 2], torch.tensor([0.1, 0.2]))
    assert torch.equal(edited.positions[:, 1, :2], tokens.positions[:, 1, :2])
    assert untouched(tokens, copy)


def test_swap_regions_exchanges_appearance_and_keeps_positions():
    tokens = token_set()
    copy = snapshot(tokens)
    edited = swap_regions(tokens, 0, 2)
    assert torch.equal(changed_slots(tokens, edited), one_hot_slots([[0, 2], [0, 2]]))
    assert torch.equal(edited.appearance[:, 0], tokens.appearance[:, 2])
    assert torch.equal(edited.appearance[:, 2], tokens.appearance[:, 0])
    assert torch.equal(edited.positions, tokens.positions)
    assert untouched(swap_regions(edited, 0, 2), copy)
    assert untouched(swap_regions(tokens, 1, 1), copy)
    assert untouched(tokens, copy)


def test_transplant_region_takes_the_other_image_appearance_into_one_slot():
    target, source = token_set(0), token_set(1)
    copies = snapshot(target), snapshot(source)
    edited = transplant_region(target, source, source_slot=2, target_slot=0)
    assert torch.equal(changed_slots(target, edited), one_hot_slots([[0], [0]]))
    assert torch.equal(edited.appearance[:, 0], source.appearance[:, 2])
    assert torch.equal(edited.positions, target.positions)
    # Into an empty slot, with the source's position: an added object.
    added = transplant_region(target, source, source_slot=1, target_slot=3, take_position=True)
    assert torch.equal(changed_slots(target, added), one_hot_slots([[3], [3]]))
    assert added.valid[:, 3].all() and torch.equal(added.positions[:, 3], source.positions[:, 1])
    with pytest.raises(ValueError, match="use take_position"):
        transplant_region(target, source, source_slot=1, target_slot=3)
    assert untouched(target, copies[0]) and untouched(source, copies[1])


def test_interpolation_matches_slots_and_switches_lone_regions_at_the_midpoint():
    start, end = token_set(0), token_set(1)
    end = remove_regions(end, one_hot_slots([[2], []]))  # slot 2 of sample 0 is in the start set only
    copies = snapshot(start), snapshot(end)
    at_start, at_end = interpolate_tokens(start, end, 0.0), interpolate_tokens(start, end, 1.0)
    assert untouched(at_start, start)
    assert torch.equal(at_end.valid, end.valid) and torch.equal(at_end.appearance, end.appearance)
    middle = interpolate_tokens(start, end, 0.25)
    both = start.valid & end.valid
    torch.testing.assert_close(middle.appearance[both], (0.75 * start.appearance + 0.25 * end.appearance)[both])
    assert middle.valid[0, 2] and torch.equal(middle.appearance[0, 2], start.appearance[0, 2])
    assert not interpolate_tokens(start, end, 0.5).valid[0, 2]
    assert untouched(start, copies[0]) and untouched(end, copies[1])


def test_token_sets_check_their_shapes():
    with pytest.raises(ValueError, match="do not share"):
        RegionTokenSet(torch.zeros(2, 4, 6), torch.zeros(2, 3, 3), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"slot \[5, 5\] is outside \[0, 4\)"):
        resize_region(token_set(), 5, 0.1)


def test_edited_sets_share_no_memory_with_their_inputs():
    target, source = token_set(0), token_set(1)
    edits = [
        remove_regions(target, 0),
        move_region(target, 0, (0.5, 0.5)),
        resize_region(target, 0, 0.5),
        swap_regions(target, 0, 1),
        transplant_region(target, source, 0, 1),
        interpolate_tokens(target, source, 0.3),
    ]
    inputs = [getattr(tokens, field).untyped_storage().data_ptr() for tokens in (target, source) for field in FIELDS]
    for edited in edits:
        assert not {getattr(edited, field).untyped_storage().data_ptr() for field in FIELDS} & set(inputs)


def with_silhouettes(tokens: RegionTokenSet, seed: int = 1, size: int = 5) -> RegionTokenSet:
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.rand(tokens.batch_size, tokens.num_slots, size, size, generator=generator)
    return RegionTokenSet(tokens.appearance, tokens.positions, tokens.valid, shapes * tokens.valid[..., None, None])


def test_silhouettes_travel_with_appearance():
    tokens = with_silhouettes(token_set())
    shapes = tokens.silhouettes
    # Move and resize change positions only; the outline is position-free and stays.
    assert torch.equal(move_region(tokens, 0, (0.2, 0.8)).silhouettes, shapes)
    assert torch.equal(resize_region(tokens, 1, 0.3).silhouettes, shapes)
    # Swap trades outlines with appearance; remove zeroes the removed slot's.
    swapped = swap_regions(tokens, 0, 2).silhouettes
    assert torch.equal(swapped[:, 0], shapes[:, 2]) and torch.equal(swapped[:, 2], shapes[:, 0])
    assert torch.equal(swapped[:, 1], shapes[:, 1])
    removed = remove_regions(tokens, [1]).silhouettes
    assert removed[:, 1].abs().sum() == 0 and torch.equal(removed[:, [0, 2]], shapes[:, [0, 2]])
    # Transplant takes the source region's outline; interpolation mixes outlines of regions present in both.
    other = with_silhouettes(token_set(seed=5), seed=6)
    taken = transplant_region(tokens, other, 2, 0).silhouettes
    assert torch.equal(taken[:, 0], other.silhouettes[:, 2]) and torch.equal(taken[:, 1:], shapes[:, 1:])
    mixed = interpolate_tokens(tokens, other, 0.25).silhouettes
    torch.testing.assert_close(mixed[:, :3], torch.lerp(shapes[:, :3], other.silhouettes[:, :3], 0.25))
    assert shapes.data_ptr() != swapped.data_ptr()


def test_silhouettes_must_fit_the_set_and_both_sets_of_an_edit():
    tokens = token_set()
    with pytest.raises(ValueError, match="silhouettes"):
        RegionTokenSet(tokens.appearance, tokens.positions, tokens.valid, torch.zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match="silhouettes"):
        RegionTokenSet(tokens.appearance, tokens.positions, tokens.valid, torch.zeros(2, 4, 5, 6))
    with pytest.raises(ValueError, match="silhouettes of size"):
        transplant_region(with_silhouettes(tokens), token_set(seed=3), 0, 1)
    with pytest.raises(ValueError, match="silhouettes of size"):
        interpolate_tokens(with_silhouettes(tokens, size=5), with_silhouettes(token_set(seed=3), size=7), 0.5)
