"""RegionEncoder on shapes-world scenes: outputs, flips, position edits, autocast, heads, input checks."""

import pytest
import torch
from torch.utils.data import default_collate

from datamodules.shapes import ShapesDataset
from interpedit.backbones import tiny_vit
from interpedit.region import RegionConditioning, RegionEncoder, ViTFeatures, move_region, resize_region
from interpedit.shapes import COLOURS, SHAPES, SIZES


def shapes_batch(num_scenes: int = 4) -> dict:
    dataset = ShapesDataset("val", num_scenes=num_scenes, resolution=32, include_background_region=True)
    return default_collate([dataset[index] for index in range(num_scenes)])


def encoder(**kwargs) -> RegionEncoder:
    torch.manual_seed(0)
    settings = dict(token_dim=16, pooling_width=16, pooling_heads=2, position_embedding_dim=12, film_hidden_dim=16)
    settings.update(kwargs)
    return RegionEncoder(ViTFeatures(tiny_vit(), layers=(0, -1)), **settings)


def trained_film(module: RegionEncoder) -> RegionEncoder:
    """FiLM starts as the identity; give it weights so that positions change the tokens, as after training."""
    torch.nn.init.normal_(module.film.modulation[-1].weight, std=0.5, generator=torch.Generator().manual_seed(3))
    return module


def test_outputs_have_the_documented_shapes_and_invalid_slots_are_zero():
    batch = shapes_batch()
    out = encoder()(batch["image"], batch["masks"], batch["region_valid"])
    b, k = batch["region_valid"].shape
    assert out.appearance.shape == (b, k, 16) and out.tokens.shape == (b, k, 16) and out.positions.shape == (b, k, 3)
    assert torch.equal(out.valid, batch["region_valid"]) and (~out.valid).any()
    assert (out.tokens[~out.valid] == 0).all() and (out.appearance[~out.valid] == 0).all()
    assert (out.appearance[out.valid].abs().sum(dim=-1) > 0).all()
    # Centroids of the objects' masks agree with the scenes' object positions (occlusion moves them a little).
    objects = batch["attributes"]["shape"] >= 0
    error = (out.positions[..., :2] - batch["position"])[objects].abs()
    assert error.max() < 0.1 and error.mean() < 0.02


def test_flipping_image_and_masks_maps_x_to_one_minus_x():
    batch = shapes_batch()
    module = encoder()
    out = module(batch["image"], batch["masks"], batch["region_valid"])
    flipped = module(batch["image"].flip(-1), batch["masks"].flip(-1), batch["region_valid"])
    valid = batch["region_valid"]
    torch.testing.assert_close(flipped.positions[..., 0][valid], 1 - out.positions[..., 0][valid], atol=1e-6, rtol=0)
    torch.testing.assert_close(flipped.positions[..., 1:], out.positions[..., 1:], atol=1e-6, rtol=0)


def test_a_position_edit_changes_only_the_edited_region_conditioning():
    batch = shapes_batch()
    module = trained_film(encoder())
    conditioning = RegionConditioning(16, 8)
    with torch.no_grad():
        out = module(batch["image"], batch["masks"], batch["region_valid"])
        edited = move_region(out.token_set(), 0, (0.9, 0.1))
        edited = resize_region(edited, 1, 0.3)
        tokens = module.condition(edited.appearance, edited.positions, edited.valid)
        before = conditioning(out.tokens, out.valid).encoder_hidden_states
        after = conditioning(tokens, edited.valid).encoder_hidden_states
    assert torch.equal(edited.appearance, out.appearance)
    changed = (after != before).any(dim=-1)  # (B, 1 + K): the global slot, then the regions
    expected = torch.zeros_like(changed)
    expected[:, 1:3] = True
    assert torch.equal(changed, expected)


def test_given_positions_change_the_tokens_but_not_the_appearance():
    batch = shapes_batch()
    module = trained_film(encoder())
    out = module(batch["image"], batch["masks"], batch["region_valid"])
    other = module(batch["image"], batch["masks"], batch["region_valid"], positions=out.positions.flip(1))
    assert torch.equal(other.appearance, out.appearance)
    assert torch.equal(other.positions, out.positions.flip(1))
    assert not torch.allclose(other.tokens[out.valid], out.tokens[out.valid])


def test_the_encoder_runs_under_bfloat16_autocast_close_to_float32():
    batch = shapes_batch()
    module = trained_film(encoder())
    reference = module(batch["image"], batch["masks"], batch["region_valid"]).tokens
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens = module(batch["image"], batch["masks"], batch["region_valid"]).tokens
    assert torch.isfinite(tokens).all()
    relative = (tokens.float() - reference).norm() / reference.norm()
    assert relative < 0.05


def test_attribute_and_rotation_heads_read_the_appearance_tokens():
    batch = shapes_batch()
    classes = {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES)}
    module = encoder(attribute_classes=classes, rotation_head=True, detach_heads=True)
    out = module(batch["image"], batch["masks"], batch["region_valid"])
    b, k = batch["region_valid"].shape
    assert {name: logits.shape for name, logits in out.attribute_logits.items()} == {
        name: (b, k, count) for name, count in classes.items()
    }
    torch.testing.assert_close(out.rotation.norm(dim=-1), torch.ones(b, k))
    # Detached heads train themselves only: their loss leaves the pooling without gradients.
    labels = batch["attributes"]["shape"]
    loss = torch.nn.functional.cross_entropy(out.attribute_logits["shape"][labels >= 0], labels[labels >= 0])
    loss.backward()
    assert all(p.grad is None for p in module.pooling.parameters())
    assert all(p.grad is not None for p in module.attribute_heads.heads["shape"].parameters())


def test_inconsistent_inputs_fail_with_the_slot_in_the_message():
    batch = shapes_batch(2)
    module = encoder()
    valid = batch["region_valid"].clone()
    valid[1, -1] = True
    masks = batch["masks"].clone()
    masks[1, -1] = False
    with pytest.raises(ValueError, match=r"mask is empty at \(sample, slot\) \[\(1, 4\)\]"):
        module(batch["image"], masks, valid)
    with pytest.raises(ValueError, match="at the images' resolution"):
        module(batch["image"], batch["masks"][..., :16, :16], batch["region_valid"])
    with pytest.raises(ValueError, match="positions"):
        module(batch["image"], batch["masks"], batch["region_valid"], positions=torch.zeros(2, 5, 2))
