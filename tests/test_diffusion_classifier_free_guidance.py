"""Classifier-free guidance: the guider by hand, Lin et al.'s rescale, one batched forward pass, the UNet adapter."""

import pytest
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from interpedit.backbones import tiny_unet2d, tiny_unet2d_condition
from interpedit.diffusion import ClassifierFreeGuidance, guided_denoiser, rescale_guidance, unet_denoiser


def test_guider_by_hand():
    conditional = torch.tensor([[1.0, 2.0]])
    unconditional = torch.tensor([[0.5, 4.0]])
    # 0.5 + 3 * 0.5 = 2.0; 4 + 3 * (-2) = -2
    assert torch.equal(ClassifierFreeGuidance(3.0)(conditional, unconditional), torch.tensor([[2.0, -2.0]]))
    assert torch.equal(ClassifierFreeGuidance(1.0)(conditional, unconditional), conditional)
    assert torch.equal(ClassifierFreeGuidance(0.0)(conditional, unconditional), unconditional)


def test_rescale_by_hand_and_equal_to_diffusers():
    conditional = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    guided = torch.tensor([[0.0, 4.0], [1.0, 1.0 + 1e-3]])
    # Sample 0: std(conditional) = sqrt(2), std(guided) = sqrt(8); rescaled = guided / 2 = [0, 2].
    # With phi = 0.75: 0.75 * [0, 2] + 0.25 * [0, 4] = [0, 2.5].
    result = rescale_guidance(guided, conditional, 0.75)
    torch.testing.assert_close(result[0], torch.tensor([0.0, 2.5]))
    torch.testing.assert_close(result, rescale_noise_cfg(guided, conditional, guidance_rescale=0.75))
    assert torch.equal(rescale_guidance(guided, conditional, 0.0), guided)
    # phi = 1 matches the conditional prediction's per-sample std exactly.
    torch.testing.assert_close(rescale_guidance(guided, conditional, 1.0).std(dim=1), conditional.std(dim=1))


def test_guider_with_rescale_applies_it_after_guidance():
    generator = torch.Generator().manual_seed(0)
    conditional = torch.randn(2, 3, 4, 4, generator=generator)
    unconditional = torch.randn(2, 3, 4, 4, generator=generator)
    guider = ClassifierFreeGuidance(5.0, guidance_rescale=0.7)
    guided = unconditional + 5.0 * (conditional - unconditional)
    expected = rescale_noise_cfg(guided, conditional, guidance_rescale=0.7)
    torch.testing.assert_close(guider(conditional, unconditional), expected)


class RecordingModel:
    """``model(x, t, cond)`` whose output depends on all three inputs, recording the batch of every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, cond):
        self.calls.append((x.shape[0], t.clone(), cond.clone()))
        return x * cond.mean(dim=(1, 2))[:, None, None, None] + t[:, None, None, None].float()


def test_guided_denoiser_runs_one_batched_pass_unconditional_first():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 4, generator=generator)
    cond = torch.randn(2, 5, 8, generator=generator)
    uncond = torch.randn(1, 5, 8, generator=generator)  # one empty prompt for the whole batch
    t = torch.tensor([500, 500])
    model = RecordingModel()
    guided = guided_denoiser(model, cond, uncond, 4.0)(x, t)

    assert len(model.calls) == 1
    batch, t_seen, cond_seen = model.calls[0]
    assert batch == 4 and t_seen.tolist() == [500] * 4
    assert torch.equal(cond_seen, torch.cat([uncond.expand(2, -1, -1), cond]))
    separate = RecordingModel()
    conditional, unconditional = separate(x, t, cond), separate(x, t, uncond.expand(2, -1, -1))
    torch.testing.assert_close(guided, unconditional + 4.0 * (conditional - unconditional))


def test_scale_one_skips_the_unconditional_pass():
    model = RecordingModel()
    cond = torch.ones(2, 5, 8)
    x = torch.ones(2, 3, 4, 4)
    out = guided_denoiser(model, cond, None, 1.0)(x, torch.tensor([3, 3]))
    assert [call[0] for call in model.calls] == [2]
    assert torch.equal(out, model(x, torch.tensor([3, 3]), cond))


@torch.no_grad()
def test_unet_adapter_calls_the_unet_with_encoder_hidden_states():
    unet = tiny_unet2d_condition()
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    cond = torch.randn(2, 3, 8, generator=generator)
    t = torch.tensor([10, 700])
    torch.testing.assert_close(unet_denoiser(unet)(x, t, cond), unet(x, t, encoder_hidden_states=cond).sample)
    unconditional = tiny_unet2d()
    image = torch.randn(1, 3, 8, 8, generator=generator)
    torch.testing.assert_close(unet_denoiser(unconditional)(image, t[:1], None), unconditional(image, t[:1]).sample)


def test_bad_inputs_fail_with_clear_messages():
    model = RecordingModel()
    cond = torch.ones(2, 5, 8)
    with pytest.raises(ValueError, match="guidance scale 7.5 needs an unconditional conditioning; pass uncond"):
        guided_denoiser(model, cond, None)
    with pytest.raises(ValueError, match=r"uncond has shape \(2, 4, 8\); .* it must be \(2, 5, 8\) or \(1, 5, 8\)"):
        guided_denoiser(model, cond, torch.ones(2, 4, 8))
    with pytest.raises(ValueError, match="built for 2 conditionings but x has 3 samples"):
        guided_denoiser(model, cond, torch.ones(1, 5, 8))(torch.ones(3, 3, 4, 4), torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match=r"guidance_rescale must lie in \[0, 1\]; got 1.5"):
        ClassifierFreeGuidance(7.5, guidance_rescale=1.5)
    with pytest.raises(ValueError, match=r"conditional prediction has shape \(1, 2\) but the unconditional one has"):
        ClassifierFreeGuidance()(torch.ones(1, 2), torch.ones(1, 3))
