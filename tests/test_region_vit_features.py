"""ViTFeatures: which tokens and blocks come out, input normalisation, trainable modes, gradient checkpointing."""

import pytest
import torch

from interpedit.backbones import tiny_vit
from interpedit.region import ViTFeatures, patch_token_masks
from tests.tiny_components import tiny_vit_dir  # noqa: F401  (a pytest fixture)


def dinov2_like() -> torch.nn.Module:
    """DINOv2's architecture (class token + 4 registers, layer scale), tiny: 28-pixel inputs, 7-pixel patches."""
    return tiny_vit(architecture="vit_small_patch14_reg4_dinov2", img_size=28, patch_size=7, depth=3)


def images(batch: int = 2, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_last_block_features_are_the_normed_patch_tokens_without_class_and_register_tokens():
    model = dinov2_like()
    assert model.num_prefix_tokens == 5
    x = images()
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.forward_features((x - mean) / std)[:, 5:]
    features = ViTFeatures(model, layers=(-1,), final_norm=True)(x)
    assert features.shape == (2, 16, 32)
    torch.testing.assert_close(features, expected)


def test_several_blocks_concatenate_in_the_order_given_or_average():
    x = images()
    concat = ViTFeatures(dinov2_like(), layers=(0, 2), layer_merge="concat")
    reversed_order = ViTFeatures(dinov2_like(), layers=(2, 0), layer_merge="concat")
    mean = ViTFeatures(dinov2_like(), layers=(0, 2), layer_merge="mean")
    assert concat.feature_dim == 64 and mean.feature_dim == 32
    a, b = concat(x).split(32, dim=-1)
    torch.testing.assert_close(reversed_order(x), torch.cat([b, a], dim=-1))
    torch.testing.assert_close(mean(x), (a + b) / 2)
    assert not torch.allclose(a, b)


def test_blocks_after_the_deepest_one_read_are_cut_off():
    features = ViTFeatures(dinov2_like(), layers=(1,), final_norm=False)
    assert len(features.model.blocks) == 2
    assert isinstance(features.model.norm, torch.nn.Identity)


def test_a_region_mask_selects_the_tokens_of_the_patches_under_it():
    # Patch embedding is per patch, so changing pixels inside a region changes exactly its masked tokens.
    features = ViTFeatures(tiny_vit(), layers=(-1,))
    masks = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    masks[0, 0, 5:9, 13:22] = True
    token_mask = patch_token_masks(masks, features.grid_size)[0, 0]
    x = images(1, 32)
    changed = x.clone()
    changed[..., 5:9, 13:22] = 1 - changed[..., 5:9, 13:22]
    with torch.no_grad():
        embed = features.model.patch_embed
        before = embed(features.normalise_images(x))
        after = embed(features.normalise_images(changed))
    differs = (before - after).abs().amax(dim=-1)[0] > 0
    assert torch.equal(differs, token_mask)


def test_images_of_another_size_are_resized_to_the_vit_input():
    features = ViTFeatures(tiny_vit(), layers=(-1,))
    colours = torch.tensor([[0.1, 0.5, 0.9], [0.7, 0.2, 0.4]]).view(2, 3, 1, 1)
    # A flat image is the same flat image at every size, so only a missing or wrong resize can change its features.
    small, large = colours.expand(2, 3, 32, 32), colours.expand(2, 3, 80, 48)
    torch.testing.assert_close(features(large), features(small))


def test_loading_by_path_gives_the_same_model_as_passing_it(tiny_vit_dir):
    x = images(1, 32)
    torch.testing.assert_close(ViTFeatures(str(tiny_vit_dir))(x), ViTFeatures(tiny_vit())(x))


def test_frozen_mode_has_no_gradients_and_stays_in_eval_mode():
    features = ViTFeatures(tiny_vit(drop_path_rate=0.5), trainable="frozen")
    features.train()
    assert not features.model.training
    assert not any(p.requires_grad for p in features.parameters())
    assert features(images(1, 32)).grad_fn is None
    x = images(1, 32).requires_grad_(True)
    features(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_last_n_mode_trains_the_last_blocks_read_and_the_final_norm():
    features = ViTFeatures(dinov2_like(), layers=(-1,), trainable="last_n", last_n_blocks=2)
    trainable = {name for name, p in features.model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("blocks.1.", "blocks.2.", "norm.")) for name in trainable)
    assert any(name.startswith("blocks.1.") for name in trainable) and "norm.weight" in trainable
    features(images()).square().mean().backward()
    assert all(p.grad is not None for p in features.parameters() if p.requires_grad)


def test_lora_mode_trains_only_lora_weights_on_attention_and_mlp_layers():
    features = ViTFeatures(dinov2_like(), trainable="lora", lora_rank=2, last_n_blocks=2)
    trainable = [name for name, p in features.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    adapted = {name.split(".lora_")[0] for name in trainable}
    layers = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    assert adapted == {f"model.blocks.{i}.{layer}" for i in (1, 2) for layer in layers}
    before = features(images()).detach()
    features(images()).square().mean().backward()
    lora_b = [p for name, p in features.named_parameters() if "lora_B" in name]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    # LoRA starts as the identity edit: B is zero, so the features are the base model's.
    torch.testing.assert_close(before, ViTFeatures(dinov2_like())(images()))


@pytest.mark.parametrize("trainable", ["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(trainable):
    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        features = ViTFeatures(
            dinov2_like(), layers=(0, -1), trainable=trainable, lora_rank=2, gradient_checkpointing=checkpointing
        )
        features.train()
        if trainable == "lora":  # nonzero B, so that gradients reach A too
            for name, p in features.named_parameters():
                if "lora_B" in name:
                    torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(len(name)))
        assert features.model.grad_checkpointing is checkpointing
        features(images()).square().mean().backward()
        return {name: p.grad for name, p in features.named_parameters() if p.requires_grad}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_bad_settings_fail_with_the_field_in_the_message():
    with pytest.raises(ValueError, match="image_size.*fixed input size"):
        ViTFeatures(tiny_vit(), image_size=64)
    with pytest.raises(ValueError, match="layers.*block 5 does not exist"):
        ViTFeatures(tiny_vit(), layers=(5,))
    with pytest.raises(ValueError, match="names a block twice"):
        ViTFeatures(tiny_vit(), layers=(1, -1))
    with pytest.raises(ValueError, match="last_n_blocks: required"):
        ViTFeatures(tiny_vit(), trainable="last_n")
    with pytest.raises(ValueError, match="lora_modules"):
        ViTFeatures(tiny_vit(), trainable="lora", lora_modules=("to_q",))
    with pytest.raises(ValueError, match="trainable"):
        ViTFeatures(tiny_vit(), trainable="some")
    dynamic = ViTFeatures(tiny_vit(dynamic_img_size=True), image_size=(48, 40))
    assert dynamic.grid_size == (12, 10) and dynamic(images(1, 32)).shape == (1, 120, 32)
