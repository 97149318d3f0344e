"""LoRA adapters on a diffusers UNet through its peft integration."""

from __future__ import annotations

import pytest
import torch

from interpedit.backbones.tiny_presets import tiny_unet2d_condition
from interpedit.diffusion import DEFAULT_LORA_TARGETS, add_unet_lora, unet_lora_settings


def unet_and_inputs():
    torch.manual_seed(0)
    unet = tiny_unet2d_condition(in_channels=3, out_channels=3, sample_size=16, cross_attention_dim=8).eval()
    inputs = (torch.randn(2, 3, 16, 16), torch.tensor([10, 500]), torch.randn(2, 5, 8))
    return unet, inputs


def test_adapters_start_as_the_identity_and_only_they_train():
    unet, inputs = unet_and_inputs()
    with torch.no_grad():
        before = unet(*inputs).sample
    add_unet_lora(unet, rank=4)
    with torch.no_grad():
        torch.testing.assert_close(unet(*inputs).sample, before, rtol=0, atol=0)  # B starts at zero
    trainable = [name for name, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    # Every attention projection of every transformer block (self and cross) has an adapter.
    for target in DEFAULT_LORA_TARGETS:
        for attention in ("attn1", "attn2"):
            assert any(f".{attention}.{target}.lora_A." in name for name in trainable), (attention, target)

    optimizer = torch.optim.SGD([p for p in unet.parameters() if p.requires_grad], lr=1.0)
    frozen = {name: p.detach().clone() for name, p in unet.named_parameters() if not p.requires_grad}
    unet(*inputs).sample.square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        assert not torch.allclose(unet(*inputs).sample, before)
    for name, p in unet.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name


def test_settings_rebuild_the_same_adapter():
    unet, inputs = unet_and_inputs()
    add_unet_lora(unet, rank=4, alpha=2.0, target_modules=["to_k", "to_v"])
    settings = unet_lora_settings(unet)
    assert settings == {"rank": 4, "alpha": 2.0, "dropout": 0.0, "target_modules": ["to_k", "to_v"]}
    for name, p in unet.named_parameters():
        if ".lora_B." in name:
            torch.nn.init.normal_(p)
    rebuilt, _ = unet_and_inputs()
    add_unet_lora(rebuilt, **settings)
    rebuilt.load_state_dict(unet.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(*inputs).sample, unet(*inputs).sample)
    assert unet_lora_settings(unet_and_inputs()[0]) is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, "rank must be at least 1"),
        ({"target_modules": []}, "target_modules is empty"),
        ({"target_modules": ["to_q", "query"]}, r"\['query'\] match no linear layer"),
    ],
)
def test_bad_settings_say_what_is_wrong(kwargs, message):
    unet, _ = unet_and_inputs()
    with pytest.raises(ValueError, match=message):
        add_unet_lora(unet, **kwargs)
    assert unet_lora_settings(unet) is None  # nothing was added


def test_adding_twice_is_refused():
    unet, _ = unet_and_inputs()
    add_unet_lora(unet, rank=2)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        add_unet_lora(unet, rank=2)
