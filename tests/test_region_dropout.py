"""Region dropout: subsets of valid regions within the configured range, blanking exactly the dropped pixels."""

import torch

from interpedit.region.region_dropout import blank_regions, keep_random_subset, unknown_pixels


def test_subsets_are_within_range_and_reproducible():
    valid = torch.tensor([[True, True, True, True, False], [True, False, False, False, False], [False] * 5])
    seen = set()
    for seed in range(200):
        keep = keep_random_subset(valid, 0.5, torch.Generator().manual_seed(seed))
        assert not (keep & ~valid).any()
        assert 2 <= int(keep[0].sum()) <= 4 and int(keep[1].sum()) == 1 and int(keep[2].sum()) == 0
        seen.add(int(keep[0].sum()))
        again = keep_random_subset(valid, 0.5, torch.Generator().manual_seed(seed))
        assert torch.equal(keep, again)
    assert seen == {2, 3, 4}  # every count in the range occurs
    assert torch.equal(keep_random_subset(valid, 1.0), valid)


def test_blanking_touches_only_dropped_regions():
    images = torch.rand(1, 3, 4, 4)
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[0, 1, 2:] = True
    out = blank_regions(images, masks, torch.tensor([[True, False]]), fill=0.5)
    assert torch.all(out[..., :2, :] == 0.5) and torch.equal(out[..., 2:, :], images[..., 2:, :])
    assert torch.equal(unknown_pixels(masks, torch.tensor([[False, True]]))[0], masks[0, 1])
