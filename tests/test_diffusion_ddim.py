"""DDIM sampling and inversion: equality with diffusers' schedulers, exact round trips, callbacks, stored noise."""

import pytest
import torch
from diffusers import DDIMInverseScheduler

from interpedit.backbones import scheduler_from_config, sd_ddim_scheduler, tiny_unet2d_condition
from interpedit.diffusion import (
    PREDICTION_TYPES,
    NoiseSchedule,
    ddim_invert,
    ddim_inversion_step,
    ddim_sample,
    ddim_step,
    guided_denoiser,
    unet_denoiser,
)

CALLBACK_KEYS = {"x", "i", "t", "denoised", "model_output", "x_next"}


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet2d_condition()


@pytest.fixture(scope="module")
def cond():
    return randn(2, 3, 8, seed=10), randn(2, 3, 8, seed=11)


def smooth_denoiser(x, t):
    """A cheap denoiser that depends on both x and t."""
    return torch.sin(x + t[:, None, None, None] / 100)


def unet_denoise(unet, cond):
    """Conditional-only denoiser of the tiny UNet."""
    return guided_denoiser(unet_denoiser(unet), cond, None, scale=1.0)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_one_step_equals_diffusers_ddim_step(prediction_type, eta, spacing):
    scheduler = sd_ddim_scheduler(prediction_type=prediction_type, timestep_spacing=spacing)
    schedule = NoiseSchedule.from_scheduler(scheduler)
    scheduler.set_timesteps(10)
    timesteps = scheduler.timesteps.tolist()
    for i in (0, 4, 9):
        x, model_output = randn(2, 4, 5, 5, seed=i), randn(2, 4, 5, 5, seed=100 + i)
        noise = randn(2, 4, 5, 5, seed=200 + i)
        expected = scheduler.step(model_output, timesteps[i], x, eta=eta, variance_noise=noise if eta else None)
        t_next = timesteps[i + 1] if i < 9 else None
        ours = ddim_step(schedule, x, model_output, timesteps[i], t_next, eta=eta, noise=noise)
        torch.testing.assert_close(ours.x_next, expected.prev_sample, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.denoised, expected.pred_original_sample, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_one_inversion_step_equals_diffusers_ddim_inverse_step(prediction_type):
    inverse = scheduler_from_config(DDIMInverseScheduler, sd_ddim_scheduler(prediction_type=prediction_type))
    schedule = NoiseSchedule.from_scheduler(inverse)
    inverse.set_timesteps(10)
    ascending = inverse.timesteps.tolist()
    for k in (0, 5, 9):
        x, model_output = randn(2, 4, 5, 5, seed=k), randn(2, 4, 5, 5, seed=50 + k)
        expected = inverse.step(model_output, ascending[k], x)
        t_from = ascending[k - 1] if k > 0 else None
        ours = ddim_inversion_step(schedule, x, model_output, t_from, ascending[k])
        torch.testing.assert_close(ours.x_next, expected.prev_sample, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_guided_sampling_equals_a_diffusers_loop_with_the_tiny_unet(unet, cond):
    text, empty = cond
    scheduler = sd_ddim_scheduler()
    schedule = NoiseSchedule.from_scheduler(scheduler)
    scheduler.set_timesteps(4)
    x_T = randn(2, 4, 8, 8, seed=3)

    expected = x_T
    generator = torch.Generator().manual_seed(7)
    for t in scheduler.timesteps:
        both = unet(torch.cat([expected, expected]), t, encoder_hidden_states=torch.cat([empty, text])).sample
        uncond, conditional = both.chunk(2)
        guided = uncond + 3.0 * (conditional - uncond)
        expected = scheduler.step(guided, t, expected, eta=1.0, generator=generator).prev_sample

    denoise = guided_denoiser(unet_denoiser(unet), text, empty, scale=3.0)
    ours = ddim_sample(
        denoise, x_T, schedule.inference_timesteps(4), schedule, eta=1.0, generator=torch.Generator().manual_seed(7)
    )
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_inversion_equals_a_diffusers_inverse_loop_and_orders_latents_like_sampling(unet, cond):
    text, _ = cond
    inverse = scheduler_from_config(DDIMInverseScheduler, sd_ddim_scheduler())
    inverse.set_timesteps(5)
    x0 = randn(2, 4, 8, 8, seed=4)
    expected = [x0]
    for t in inverse.timesteps:
        model_output = unet(expected[-1], t, encoder_hidden_states=text).sample
        expected.append(inverse.step(model_output, t, expected[-1]).prev_sample)

    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    timesteps = schedule.inference_timesteps(5)
    assert torch.equal(timesteps.flip(0), inverse.timesteps)
    inversion = ddim_invert(unet_denoise(unet, text), x0, timesteps, schedule)
    assert inversion.latents.shape == (6, 2, 4, 8, 8)
    torch.testing.assert_close(inversion.latents, torch.stack(expected[::-1]), rtol=1e-5, atol=1e-5)
    assert torch.equal(inversion.latents[0], inversion.x) and torch.equal(inversion.latents[-1], x0)


@pytest.fixture(scope="module")
def fixed_unet_outputs(cond):
    """Float64 tiny-UNet outputs on one fixed latent, per timestep of a 6-step schedule."""
    unet64 = tiny_unet2d_condition().double()
    fixed_latent = randn(2, 4, 8, 8, seed=5, dtype=torch.float64)
    timesteps = NoiseSchedule.from_scheduler(sd_ddim_scheduler()).inference_timesteps(6)
    with torch.no_grad():
        return {int(t): unet64(fixed_latent, t, encoder_hidden_states=cond[0].double()).sample for t in timesteps}


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_eta0_inversion_then_sampling_returns_the_input_with_a_fixed_denoiser(fixed_unet_outputs, prediction_type):
    """The tiny UNet evaluated on one fixed latent: its output depends on t only, so DDIM round trips exactly."""
    calls = []

    def fixed_denoiser(x, t):
        calls.append(t[0].item())
        return fixed_unet_outputs[t[0].item()]

    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler(prediction_type=prediction_type))
    timesteps = schedule.inference_timesteps(6)
    x0 = randn(2, 4, 8, 8, seed=6, dtype=torch.float64)
    inversion = ddim_invert(fixed_denoiser, x0, timesteps, schedule)
    assert inversion.x.dtype == torch.float64
    assert (inversion.x - x0).abs().max() > 0.5  # it really moved away
    assert calls == timesteps.flip(0).tolist()  # inversion queries the timesteps in ascending order
    torch.testing.assert_close(ddim_sample(fixed_denoiser, inversion.x, timesteps, schedule), x0, rtol=0, atol=1e-10)
    # Every intermediate latent is a sampling-loop state: sampling from latents[i] with timesteps[i:] gives x0.
    torch.testing.assert_close(
        ddim_sample(fixed_denoiser, inversion.latents[3], timesteps[3:], schedule), x0, rtol=0, atol=1e-10
    )


def test_sampling_callback_gets_one_dict_per_step_and_may_replace_the_result():
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    timesteps = schedule.inference_timesteps(4)
    field = randn(1, 2, 3, 3, seed=8)

    def denoise(x, t):
        assert t.shape == (x.shape[0],) and t.dtype == torch.long
        return field.expand_as(x) * (1 + x)

    seen = []

    def record(step):
        seen.append(step)
        if step["i"] == 1:
            return torch.zeros_like(step["x_next"])  # e.g. DiffEdit's blend with the inversion latent
        return None

    x_T = randn(1, 2, 3, 3, seed=9)
    result = ddim_sample(denoise, x_T, timesteps, schedule, callback=record)
    assert [step["i"] for step in seen] == [0, 1, 2, 3]
    assert [step["t"] for step in seen] == timesteps.tolist()
    assert all(set(step) == CALLBACK_KEYS for step in seen)
    assert torch.equal(seen[0]["x"], x_T)
    assert torch.equal(seen[2]["x"], torch.zeros_like(x_T))  # the replacement was used
    assert torch.equal(seen[3]["x"], seen[2]["x_next"])
    assert torch.equal(result, seen[3]["x_next"])
    for step in seen:
        assert torch.equal(step["model_output"], denoise(step["x"], torch.tensor([step["t"]])))
        torch.testing.assert_close(step["denoised"], schedule.predicted_x0(step["x"], step["model_output"], step["t"]))


def test_inversion_callback_counts_inversion_steps():
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    timesteps = schedule.inference_timesteps(3)
    seen = []
    inversion = ddim_invert(smooth_denoiser, randn(1, 1, 2, 2), timesteps, schedule, callback=seen.append)
    assert [step["i"] for step in seen] == [0, 1, 2]
    assert [step["t"] for step in seen] == timesteps.flip(0).tolist()
    assert all(set(step) == CALLBACK_KEYS for step in seen)
    for i, step in enumerate(seen):
        assert torch.equal(step["x_next"], inversion.latents[2 - i])


def test_stored_noises_reproduce_a_generator_run_and_only_noisy_steps_draw():
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    timesteps = schedule.inference_timesteps(4)
    x_T = randn(2, 1, 3, 3, seed=12)
    etas = [1.0, 0.0, 0.5, 1.0]
    with_generator = ddim_sample(
        smooth_denoiser, x_T, timesteps, schedule, eta=etas, generator=torch.Generator().manual_seed(0)
    )
    generator = torch.Generator().manual_seed(0)
    drawn = [torch.randn(x_T.shape, generator=generator) for _ in range(3)]  # steps 0, 2, 3 add noise
    noises = torch.stack([drawn[0], torch.full_like(x_T, float("nan")), drawn[1], drawn[2]])
    torch.testing.assert_close(
        ddim_sample(smooth_denoiser, x_T, timesteps, schedule, eta=etas, noises=noises), with_generator
    )
    # eta 0 everywhere is deterministic and ignores the generator.
    assert torch.equal(
        ddim_sample(smooth_denoiser, x_T, timesteps, schedule, generator=torch.Generator().manual_seed(1)),
        ddim_sample(smooth_denoiser, x_T, timesteps, schedule),
    )


@torch.no_grad()
def test_per_sample_generators_make_results_independent_of_the_batch(unet, cond):
    text, _ = cond
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    timesteps = schedule.inference_timesteps(3)
    x_T = randn(2, 4, 8, 8, seed=13)
    batch = ddim_sample(
        unet_denoise(unet, text),
        x_T,
        timesteps,
        schedule,
        eta=1.0,
        generator=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)],
    )
    for b in range(2):
        alone = ddim_sample(
            unet_denoise(unet, text[b : b + 1]),
            x_T[b : b + 1],
            timesteps,
            schedule,
            eta=1.0,
            generator=torch.Generator().manual_seed(b),
        )
        torch.testing.assert_close(batch[b : b + 1], alone, rtol=1e-5, atol=1e-5)


def test_bad_inputs_fail_with_clear_messages():
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match=r"strictly decreasing, as for sampling .* got \[1, 501\]"):
        ddim_sample(smooth_denoiser, x, [1, 501], schedule)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim_invert(smooth_denoiser, x, torch.tensor([1, 501]), schedule)
    with pytest.raises(TypeError, match="timesteps must be integers"):
        ddim_sample(smooth_denoiser, x, torch.tensor([500.0, 1.0]), schedule)
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 1000\)"):
        ddim_sample(smooth_denoiser, x, [1000, 1], schedule)
    with pytest.raises(ValueError, match="eta has 1 values for 2 timesteps"):
        ddim_sample(smooth_denoiser, x, [501, 1], schedule, eta=[1.0])
    with pytest.raises(ValueError, match="eta must be >= 0"):
        ddim_sample(smooth_denoiser, x, [501, 1], schedule, eta=-0.1)
    with pytest.raises(ValueError, match="pass either generator or noises, not both"):
        ddim_sample(smooth_denoiser, x, [501, 1], schedule, generator=torch.Generator(), noises=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="3 generators for a batch of 2 samples"):
        ddim_sample(smooth_denoiser, x, [501, 1], schedule, eta=1.0, generator=[torch.Generator()] * 3)
    with pytest.raises(ValueError, match="eta > 0 needs standard normal noise"):
        ddim_step(schedule, x, x, 501, 1, eta=1.0)
    with pytest.raises(ValueError, match="a sampling step must go to a smaller timestep; got t=1, t_next=501"):
        ddim_step(schedule, x, x, 1, 501)
    with pytest.raises(TypeError, match=r"return None or a tensor of shape \(2, 1, 2, 2\); got \(1,\)"):
        ddim_sample(smooth_denoiser, x, [501, 1], schedule, callback=lambda step: torch.zeros(1))
