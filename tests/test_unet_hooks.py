"""UNet hooks: captured attention probabilities, block features and edits, all restored afterwards."""

from __future__ import annotations

import math

import pytest
import torch

from interpedit.backbones import tiny_unet2d_condition
from interpedit.diffusion.unet_hooks import (
    attention_layers,
    capture_attention,
    capture_outputs,
    offset_outputs,
    replace_outputs,
    select_layers,
)


@pytest.fixture()
def unet():
    return tiny_unet2d_condition(cross_attention_dim=8, block_out_channels=(4, 8, 8), attention_head_dim=2)


def inputs(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 32, 32, generator=generator), torch.full((batch,), 500),
            torch.randn(batch, 5, 8, generator=generator))


def manual_probabilities(attention, hidden, context=None):
    """softmax(Q K^T / sqrt(d)) per head, from the layer's own projections: (B, heads, queries, keys)."""
    context = hidden if context is None else context
    heads = attention.heads
    query = attention.to_q(hidden).unflatten(-1, (heads, -1)).transpose(1, 2)
    key = attention.to_k(context).unflatten(-1, (heads, -1)).transpose(1, 2)
    return (query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])).softmax(dim=-1)


def test_attention_layers_are_listed_with_kind_and_block(unet):
    layers = attention_layers(unet)
    assert [layer.kind for layer in layers[:2]] == ["self", "cross"]
    assert {layer.block for layer in layers} == {"down_blocks.1", "down_blocks.2", "up_blocks.0", "up_blocks.1",
                                                "mid_block"}
    assert select_layers(unet, "*attn1") == [layer.name for layer in layers if layer.kind == "self"]
    assert select_layers(unet, "mid_block.*", kind="cross") == ["mid_block.attentions.0.transformer_blocks.0.attn2"]


def test_captured_probabilities_equal_softmax_of_the_layers_own_projections(unet):
    x, t, context = inputs()
    names = ["down_blocks.1.attentions.0.transformer_blocks.0.attn1",
             "down_blocks.1.attentions.0.transformer_blocks.0.attn2"]
    seen = {}

    def keep_input(name):
        def hook(module, args, kwargs):
            seen[name] = (args[0] if args else kwargs["hidden_states"], kwargs.get("encoder_hidden_states"))
        return hook

    handles = [unet.get_submodule(n).register_forward_pre_hook(keep_input(n), with_kwargs=True) for n in names]
    with torch.no_grad(), capture_attention(unet, names) as maps:
        captured_output = unet(x, t, encoder_hidden_states=context).sample
    for handle in handles:
        handle.remove()
    for name in names:
        hidden, states = seen[name]
        expected = manual_probabilities(unet.get_submodule(name), hidden, states)
        assert maps[name][0].shape == expected.shape
        torch.testing.assert_close(maps[name][0], expected, rtol=1e-5, atol=1e-6)
    assert maps[names[0]][0].shape[-1] == 16 * 16 and maps[names[1]][0].shape[-1] == 5
    # The explicit softmax gives the same output as SDPA.
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=context).sample
    torch.testing.assert_close(captured_output, plain, rtol=1e-4, atol=1e-5)


def test_only_the_captured_layers_leave_sdpa(unet):
    before = {name: type(p).__name__ for name, p in unet.attn_processors.items()}
    with capture_attention(unet, "up_blocks.0.*attn1"):
        inside = {name: type(p).__name__ for name, p in unet.attn_processors.items()}
    changed = {name for name in before if before[name] != inside[name]}
    assert changed == {name + ".processor" for name in select_layers(unet, "up_blocks.0.*attn1")}
    assert all(inside[name] == "AttnProcessor2_0" for name in before if name not in changed)


def test_every_processor_and_hook_is_restored_after_an_error(unet):
    processors = dict(unet.attn_processors)
    hooks = {name: (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for name, m in unet.named_modules()}
    x, t, context = inputs()
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(unet, "*attn1"), capture_outputs(unet, ["mid_block", "up_blocks.1"]), \
                offset_outputs(unet, {"mid_block": torch.ones(1)}), \
                replace_outputs(unet, {"down_blocks.0": lambda h: h * 0}, where="input"):
            unet(x, t, encoder_hidden_states=context)
            raise RuntimeError("boom")
    assert {n: p for n, p in unet.attn_processors.items()} == processors
    assert {name: (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for name, m in unet.named_modules()} == hooks


def test_capture_and_offset_h_before_inside_and_after_the_mid_block(unet):
    x, t, context = inputs()
    places = {"before": ("mid_block", "input"), "inside": ("mid_block.resnets.1.norm2", "output"),
              "after": ("mid_block", "output")}
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=context).sample
        for name, where in places.values():
            with capture_outputs(unet, name, where=where) as stored:
                unet(x, t, encoder_hidden_states=context)
            h = stored[name][0]
            assert h.shape == (2, 8, 8, 8)
            delta = torch.randn_like(h)
            with offset_outputs(unet, {name: delta}, where=where), capture_outputs(unet, name, where=where) as seen:
                shifted = unet(x, t, encoder_hidden_states=context).sample
            if where == "output":  # the stored value is the edited one
                torch.testing.assert_close(seen[name][0], h + delta)
            assert not torch.allclose(shifted, plain)
            with offset_outputs(unet, {name: torch.zeros_like(h)}, where=where):
                torch.testing.assert_close(unet(x, t, encoder_hidden_states=context).sample, plain)


def test_replacing_a_block_output_and_a_per_call_offset(unet):
    x, t, context = inputs()
    with torch.no_grad():
        with capture_outputs(unet, "mid_block") as stored:
            reference = unet(x, t, encoder_hidden_states=context).sample
        # Replacing h by itself changes nothing; a callable offset is read at every call (None: no offset).
        with replace_outputs(unet, {"mid_block": lambda h: stored["mid_block"][0].clone()}):
            torch.testing.assert_close(unet(x, t, encoder_hidden_states=context).sample, reference)
        schedule = iter([None, torch.ones(1)])
        with offset_outputs(unet, {"mid_block": lambda: next(schedule)}):
            first = unet(x, t, encoder_hidden_states=context).sample
            second = unet(x, t, encoder_hidden_states=context).sample
    torch.testing.assert_close(first, reference)
    assert not torch.allclose(second, reference)


def test_attention_maps_keep_the_graph_when_asked(unet):
    x, t, context = inputs(batch=1)
    x.requires_grad_(True)
    with capture_attention(unet, "mid_block.*attn1", detach=False) as maps:
        unet(x, t, encoder_hidden_states=context)
    energy = maps.last()["mid_block.attentions.0.transformer_blocks.0.attn1"].pow(2).sum()
    energy.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_names_are_explained(unet):
    with pytest.raises(ValueError, match="matches no self-attention layer.*its layers are: down_blocks"):
        select_layers(unet, "down_blocks.0.*", kind="self")
    with pytest.raises(ValueError, match="no submodule 'mid_blok'.*mid_block"):
        with capture_outputs(unet, "mid_blok"):
            pass
    with pytest.raises(ValueError, match="where must be one of output, input"):
        with capture_outputs(unet, "mid_block", where="inside"):
            pass
