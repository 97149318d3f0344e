"""Guide-and-Rescale: a guider step lowers its energy, the rescaled term's norm lies in its range, unguided steps
make one batched CFG call, the passes per step, the inversion-recorded reference, presets and bad settings."""

from __future__ import annotations

import pytest
import torch

from interpedit.diffusion import ddim_invert
from interpedit.diffusion.unet_cost import count_unet_calls
from interpedit.editing import GuideAndRescaleEdit
from interpedit.guidance import (
    ClassifierFreeGuidance,
    GuidedDenoiser,
    PassRecorder,
    RangeRescaler,
    SelfAttentionAppearance,
    SelfAttentionMapL2,
    StepSchedule,
)
from tests.tiny_components import tiny_shapes_sd_dir  # noqa: F401  (pytest fixture)

SOURCE = ["a small red circle at the top left", "a large blue square at the center"]
TARGET = ["a small green circle at the top left", "a large blue star at the center"]


def batch_of(images):
    return {"source_image": images, "source_prompt": SOURCE[: len(images)], "target_prompt": TARGET[: len(images)]}


def method(folder, **overrides):
    settings = dict(num_inference_steps=5, guided_steps=2, guidance_scale=4.0)
    settings.update(overrides)
    return GuideAndRescaleEdit(str(folder), **settings)


def test_a_guider_step_lowers_its_energy_at_that_step(tiny_shapes_sd_dir):
    edit = method(tiny_shapes_sd_dir)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    timesteps = edit.schedule.inference_timesteps(5)
    source, target = edit.prompt_embeddings(SOURCE), edit.prompt_embeddings(TARGET)
    latents = edit.encode(images)
    inverted = ddim_invert(edit.denoiser(source, None, 1.0), latents, timesteps, edit.schedule)
    guider = SelfAttentionAppearance(attention_scale=1e3, appearance_scale=10.0, schedule=StepSchedule(first=5),
                                     appearance_module="up_blocks.1")
    recorder = PassRecorder([guider])
    # A current latent off the inversion trajectory, so the energy is not zero.
    x = inverted.latents[1] + 0.3 * torch.randn(inverted.latents[1].shape, generator=torch.Generator().manual_seed(1))
    t = torch.full((2,), int(timesteps[1]))

    def energy_at(z):
        with recorder.recording(edit.unet, ["cur_src", "inv_src"], detach=False) as records:
            edit.unet(torch.cat([z, inverted.latents[1]]), t.repeat(2),
                      encoder_hidden_states=torch.cat([source, source]))
        return guider.energy(records, 1, 5)

    z = x.clone().requires_grad_(True)
    with torch.enable_grad():
        before = energy_at(z)
        (gradient,) = torch.autograd.grad(before, z)
    denoiser = GuidedDenoiser(edit.unet, source, target, edit.empty_prompt(2), inverted.latents, 5,
                              ClassifierFreeGuidance(4.0), [guider], RangeRescaler(0.33, 3.0))
    denoiser.step = 1
    guided = denoiser(x, t)
    plain = GuidedDenoiser(edit.unet, source, target, edit.empty_prompt(2), inverted.latents, 5,
                           ClassifierFreeGuidance(4.0), [], RangeRescaler(0.33, 3.0))
    plain.step = 1
    unguided = plain(x, t)
    # DDIM subtracts sqrt(1 - a) * eps: adding +grad to eps moves the next latent along -grad.
    alpha = edit.schedule.alpha_cumprod(int(timesteps[1])).float()
    moved = x - 0.05 * (1 - alpha).sqrt() * (guided - unguided) / (guided - unguided).norm() * x.norm()
    with torch.no_grad():
        after = energy_at(moved)
    assert float(after) < float(before)
    # The guided step added exactly the rescaled gradient (up to batching differences of the UNet calls).
    factors = torch.tensor(denoiser.history[0]["rescale"]).view(-1, 1, 1, 1)
    torch.testing.assert_close((guided - unguided) / factors, gradient, rtol=1e-3, atol=1e-5)


def test_the_rescaled_term_lies_in_its_range_and_unguided_steps_make_one_batched_cfg_call(tiny_shapes_sd_dir):
    edit = method(tiny_shapes_sd_dir, num_inference_steps=6, guided_steps=3, rescale=(0.5, 2.0),
                  self_attention_scale=1e4, appearance_scale=100.0)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    calls = []
    original = edit.unet.forward

    def counted(*args, **kwargs):
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)

    edit.unet.forward = counted
    with count_unet_calls(edit) as cost:
        edit(batch_of(images))
    edit.unet.forward = original
    history = edit.last_history
    # Step 0 starts on the inversion latent: the energy is exactly 0 there and nothing is rescaled.
    assert history[0]["energy"] == 0.0 and history[0]["guider_norm"] == [0.0, 0.0]
    for entry in history[1:3]:
        # Each image's term is rescaled against its own CFG term.
        for guider_norm, cfg_norm in zip(entry["guider_norm"], entry["cfg_norm"], strict=True):
            assert guider_norm > 0
            assert 0.5 - 1e-6 <= guider_norm / cfg_norm <= 2.0 + 1e-6
    assert all(entry["guider_norm"] == [0.0, 0.0] for entry in history[3:])
    # 6 inversion calls (batch 2); guided steps: [uncond, cur_trg], [inv_src], then [cur_src] with grad; then
    # [uncond, cur_trg] only.
    assert calls == [2] * 6 + [4, 2, 2] * 3 + [4] * 3
    assert cost.forwards == 2 * 6 + (6 + 2) * 3 + 4 * 3 and cost.backwards == 2 * 3


def test_range_rescaler_takes_each_images_norms():
    cfg = torch.ones(3, 4, 2, 2)  # each image's CFG norm is 4
    guider = torch.stack([torch.full((4, 2, 2), v) for v in (0.1, 1.0, 100.0)])  # norms 0.4, 4 and 400
    factors = RangeRescaler(0.5, 2.0)(guider, cfg)
    assert factors.shape == (3, 1, 1, 1)
    norms = torch.linalg.vector_norm((factors * guider).flatten(1), dim=1)
    torch.testing.assert_close(norms, torch.tensor([2.0, 4.0, 8.0]))  # raised to 0.5x, kept, cut to 2x
    # A zero guider term stays zero and is not divided by.
    assert RangeRescaler(0.5, 2.0)(torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2)).flatten().tolist() == [1.0, 1.0]


def test_a_batch_is_edited_as_each_image_would_be_alone(tiny_shapes_sd_dir):
    # The reference edits one image at a time: per-image energies and rescaling keep batching from coupling images.
    edit = method(tiny_shapes_sd_dir, self_attention_scale=1e4, appearance_scale=100.0)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    together = edit(batch_of(images))["edited"]
    alone = torch.cat([edit({"source_image": images[i:i + 1], "source_prompt": SOURCE[i:i + 1],
                             "target_prompt": TARGET[i:i + 1]})["edited"] for i in range(2)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-3)


def test_the_inversion_can_supply_the_reference_pass(tiny_shapes_sd_dir):
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    exact, recorded = method(tiny_shapes_sd_dir), method(tiny_shapes_sd_dir, reference="inversion")
    with count_unet_calls(exact) as exact_cost:
        exact(batch_of(images))
    with count_unet_calls(recorded) as recorded_cost:
        out = recorded(batch_of(images))
    assert recorded_cost.forwards == exact_cost.forwards - 2  # one inv_src entry fewer on each of the 2 guided steps
    assert out["edited"].shape == images.shape and torch.isfinite(out["edited"]).all()


def test_target_prompt_attention_lets_the_cfg_pass_carry_the_gradient(tiny_shapes_sd_dir):
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    edit = method(tiny_shapes_sd_dir, attention_prompt="target", reference="inversion")
    assert edit.guiders[0].passes == ("cur_trg", "inv_src") and edit.name == "guide_and_rescale_target_attention"
    with count_unet_calls(edit) as cost:
        edit(batch_of(images))
    # 5 inversion steps; guided steps: [uncond], then [cur_trg] with grad; unguided: [uncond, cur_trg].
    assert cost.forwards == 5 + 2 * 2 + 3 * 2 and cost.backwards == 2
    with pytest.raises(ValueError, match="attention_prompt: 'both' is not source or target"):
        method(tiny_shapes_sd_dir, attention_prompt="both")


def test_style_preset_differentiates_the_target_pass_for_its_feature_guider(tiny_shapes_sd_dir):
    edit = method(tiny_shapes_sd_dir, preset="style", self_attention_scale=1e3, feature_scale=1.0)
    assert [type(g).__name__ for g in edit.guiders] == ["SelfAttentionMapL2", "FeatureMapL2"]
    assert edit.rescaler.lower == edit.rescaler.upper == 1.5
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with count_unet_calls(edit) as cost:
        edit(batch_of(images))
    # Guided: [uncond, inv_src] without grad, [cur_src, cur_trg] with grad; 5 inversion + 3 plain CFG steps.
    assert cost.forwards == 5 + (2 + 2) * 2 + 2 * 3
    entry = edit.last_history[1]
    assert entry["guider_norm"] == pytest.approx([1.5 * norm for norm in entry["cfg_norm"]], rel=1e-5)


def test_presets_and_bad_settings(tiny_shapes_sd_dir):
    edit = GuideAndRescaleEdit(str(tiny_shapes_sd_dir))
    assert edit.settings["guided_steps"] == 30 and edit.settings["rescale"] == (0.33, 3.0)
    guider = edit.guiders[0]
    assert isinstance(guider, SelfAttentionAppearance) and guider.attention_scale == 3e5
    assert guider.appearance_scale == 500.0 and guider.appearance_module == "up_blocks.1"
    assert isinstance(method(tiny_shapes_sd_dir, preset="style").guiders[0], SelfAttentionMapL2)
    with pytest.raises(ValueError, match="preset: 'cartoon' is not one of non_style, style"):
        GuideAndRescaleEdit(str(tiny_shapes_sd_dir), preset="cartoon")
    with pytest.raises(ValueError, match="reference: 'cached'"):
        GuideAndRescaleEdit(str(tiny_shapes_sd_dir), reference="cached")
    with pytest.raises(ValueError, match="need 0 < lower <= upper"):
        GuideAndRescaleEdit(str(tiny_shapes_sd_dir), rescale=(2.0, 1.0))
    with pytest.raises(ValueError, match="give first or last, not both"):
        StepSchedule(first=2, last=3)
