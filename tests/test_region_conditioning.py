"""RegionConditioning: null slots, the global slot, the unconditional sequence, CFG dropout, and a tiny UNet."""

import pytest
import torch
from torch.utils.data import default_collate

from datamodules.shapes import ShapesDataset
from interpedit.backbones import tiny_unet2d_condition, tiny_vit
from interpedit.region import RegionConditioning, RegionEncoder, ViTFeatures


def tokens_and_valid(batch: int = 3, slots: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    valid = torch.rand(batch, slots, generator=generator) > 0.4
    valid[:, 0] = True
    valid[-1, 1:] = False
    return torch.randn(batch, slots, 10, generator=generator), valid


@pytest.mark.parametrize("global_token", [True, False])
def test_valid_slots_hold_projected_tokens_and_empty_slots_the_null_token(global_token):
    torch.manual_seed(0)
    conditioning = RegionConditioning(10, 8, global_token=global_token)
    tokens, valid = tokens_and_valid()
    out = conditioning(tokens, valid)
    extra = conditioning.num_extra_slots
    assert out.encoder_hidden_states.shape == (3, 4 + extra, 8)
    regions = out.encoder_hidden_states[:, extra:]
    torch.testing.assert_close(regions[valid], conditioning.projection(tokens)[valid])
    assert torch.equal(regions[~valid], conditioning.null_token.expand(int((~valid).sum()), -1))
    assert torch.equal(out.encoder_attention_mask[:, extra:], valid)
    if global_token:
        assert torch.equal(out.encoder_hidden_states[:, 0], conditioning.global_token.expand(3, -1))
        assert out.encoder_attention_mask[:, 0].all()


def test_cfg_dropout_gives_dropped_samples_exactly_the_unconditional_sequence():
    torch.manual_seed(0)
    conditioning = RegionConditioning(10, 8)
    tokens, valid = tokens_and_valid(batch=16)
    new_tokens, new_valid, dropped = conditioning.cfg_dropout(tokens, valid, 0.5, torch.Generator().manual_seed(1))
    assert dropped.any() and not dropped.all()
    out = conditioning(new_tokens, new_valid)
    unconditional = conditioning.unconditional(16, 4)
    kept = conditioning(tokens, valid)
    assert torch.equal(out.encoder_hidden_states[dropped], unconditional.encoder_hidden_states[dropped])
    assert torch.equal(out.encoder_attention_mask[dropped], unconditional.encoder_attention_mask[dropped])
    assert torch.equal(out.encoder_hidden_states[~dropped], kept.encoder_hidden_states[~dropped])
    # Same generator state, same choice; the inputs are left as they were.
    _, _, again = conditioning.cfg_dropout(tokens, valid, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(again, dropped)
    assert torch.equal(tokens_and_valid(batch=16)[0], tokens)


def test_cfg_dropout_rate_and_bounds():
    conditioning = RegionConditioning(10, 8)
    tokens, valid = torch.zeros(4000, 1, 10), torch.ones(4000, 1, dtype=torch.bool)
    _, _, dropped = conditioning.cfg_dropout(tokens, valid, 0.12, torch.Generator().manual_seed(0))
    assert abs(dropped.float().mean().item() - 0.12) < 0.02
    assert not conditioning.cfg_dropout(tokens, valid, 0.0)[2].any()
    assert conditioning.cfg_dropout(tokens, valid, 1.0)[2].all()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        conditioning.cfg_dropout(tokens, valid, 1.5)


def test_region_tokens_condition_a_unet_and_the_attention_mask_hides_null_slots():
    dataset = ShapesDataset("val", num_scenes=2, resolution=32)
    batch = default_collate([dataset[index] for index in range(2)])
    torch.manual_seed(0)
    encoder = RegionEncoder(ViTFeatures(tiny_vit(), trainable="lora", lora_rank=2), token_dim=16, pooling_width=16,
                            pooling_heads=2, position_embedding_dim=12, film_hidden_dim=16)
    conditioning = RegionConditioning(16, 8)
    unet = tiny_unet2d_condition(in_channels=3, out_channels=3, cross_attention_dim=8)
    out = encoder(batch["image"], batch["masks"], batch["region_valid"])
    sequence = conditioning(out.tokens, out.valid)
    noisy, timesteps = torch.randn(2, 3, 32, 32), torch.tensor([10, 500])

    def predict(hidden_states: torch.Tensor) -> torch.Tensor:
        return unet(noisy, timesteps, encoder_hidden_states=hidden_states,
                    encoder_attention_mask=sequence.encoder_attention_mask).sample

    prediction = predict(sequence.encoder_hidden_states)
    assert prediction.shape == (2, 3, 32, 32)
    prediction.square().mean().backward()
    assert encoder.pooling.queries.grad.abs().sum() > 0 and conditioning.projection[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for name, p in encoder.features.named_parameters() if "lora_A" in name)

    # A masked slot's content does not matter: replacing the null token everywhere leaves the prediction.
    assert (~out.valid).any()
    with torch.no_grad():
        other_null = sequence.encoder_hidden_states.clone()
        other_null[:, 1:][~out.valid] = 100.0
        torch.testing.assert_close(predict(other_null), prediction.detach(), atol=1e-5, rtol=1e-5)
