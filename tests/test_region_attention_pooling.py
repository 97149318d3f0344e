"""RegionAttentionPooling: locality, permutation equivariance, batched = per-region, empty regions."""

import torch

from interpedit.region import RegionAttentionPooling


def pooling(num_queries: int = 1) -> RegionAttentionPooling:
    torch.manual_seed(0)
    return RegionAttentionPooling(feature_dim=12, token_dim=10, width=16, depth=2, num_heads=2, num_queries=num_queries)


def inputs(batch: int = 2, slots: int = 4, patches: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, patches, 12, generator=generator)
    masks = torch.rand(batch, slots, patches, generator=generator) > 0.6
    masks[:, 0] = False
    masks[:, 0, 3] = True  # a one-patch region
    masks[1, 2] = False  # an empty slot
    return features, masks


def test_a_region_token_depends_only_on_its_own_patches():
    module = pooling().eval()
    features, masks = inputs()
    tokens, _ = module(features, masks)
    for slot in range(masks.shape[1]):
        outside = ~masks[:, slot, :, None]
        changed = torch.where(outside, torch.randn_like(features) * 5, features)
        changed_tokens, _ = module(changed, masks)
        assert torch.equal(changed_tokens[:, slot], tokens[:, slot]), slot


def test_permuting_regions_permutes_their_tokens():
    module = pooling(num_queries=2)
    features, masks = inputs()
    order = torch.tensor([2, 0, 3, 1])
    tokens, valid = module(features, masks)
    permuted_tokens, permuted_valid = module(features, masks[:, order])
    torch.testing.assert_close(permuted_tokens, tokens[:, order])
    assert torch.equal(permuted_valid, valid[:, order])


def test_batched_pooling_equals_pooling_each_region_on_its_own_patches():
    module = pooling(num_queries=3)
    features, masks = inputs()
    tokens, valid = module(features, masks)
    for b in range(masks.shape[0]):
        for k in range(masks.shape[1]):
            if not valid[b, k]:
                continue
            own = features[b, masks[b, k]][None]  # (1, n_k, D): the region's patches only, no masking needed
            alone, _ = module(own, torch.ones(1, 1, own.shape[1], dtype=torch.bool))
            torch.testing.assert_close(tokens[b, k], alone[0, 0], atol=1e-5, rtol=1e-5)


def test_empty_regions_give_zero_tokens_flagged_invalid_and_finite_gradients():
    module = pooling()
    features, masks = inputs()
    features.requires_grad_(True)
    tokens, valid = module(features, masks)
    assert torch.equal(valid, masks.any(dim=-1)) and not valid[1, 2]
    assert torch.equal(tokens[1, 2], torch.zeros(10))
    tokens.sum().backward()
    assert torch.isfinite(features.grad).all()
    unused = ~masks.any(dim=1)  # patches in no region receive no gradient
    assert torch.equal(features.grad[unused], torch.zeros_like(features.grad[unused]))
