"""NoiseSchedule: agreement with diffusers' noising, exact parameterisation round trips, timestep sampling."""

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDPMScheduler

from interpedit.backbones import scheduler_from_config, sd_ddim_scheduler
from interpedit.diffusion import PREDICTION_TYPES, NoiseSchedule, split_model_output


def test_view_reads_the_scheduler_alphas_final_level_and_prediction_type():
    scheduler = sd_ddim_scheduler(prediction_type="v_prediction")
    schedule = NoiseSchedule.from_scheduler(scheduler)
    assert torch.equal(schedule.alphas_cumprod, scheduler.alphas_cumprod.double())
    assert schedule.num_train_timesteps == 1000
    assert schedule.prediction_type == "v_prediction"
    # Stable Diffusion's DDIM config ends on alpha-bar of timestep 0, not on 1.
    assert schedule.final_alpha_cumprod == pytest.approx(float(scheduler.alphas_cumprod[0]))
    assert NoiseSchedule.from_scheduler(sd_ddim_scheduler(set_alpha_to_one=True)).final_alpha_cumprod == 1.0
    assert NoiseSchedule.from_scheduler(DDPMScheduler()).final_alpha_cumprod == 1.0
    inverse = scheduler_from_config(DDIMInverseScheduler, scheduler)
    assert NoiseSchedule.from_scheduler(inverse).final_alpha_cumprod == schedule.final_alpha_cumprod
    assert NoiseSchedule.from_scheduler(scheduler, prediction_type="sample").prediction_type == "sample"


def test_add_noise_and_velocity_equal_diffusers():
    scheduler = scheduler_from_config(DDPMScheduler, sd_ddim_scheduler())
    schedule = NoiseSchedule.from_scheduler(scheduler)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 8, 8, generator=generator)
    noise = torch.randn(4, 3, 8, 8, generator=generator)
    t = torch.tensor([0, 17, 500, 999])
    torch.testing.assert_close(schedule.add_noise(x0, noise, t), scheduler.add_noise(x0, noise, t))
    torch.testing.assert_close(schedule.velocity(x0, noise, t), scheduler.get_velocity(x0, noise, t))
    # One int timestep for the whole batch is the same as repeating it.
    repeated = torch.full((4,), 250)
    torch.testing.assert_close(schedule.add_noise(x0, noise, 250), schedule.add_noise(x0, noise, repeated))


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_every_parameterisation_recovers_x0_and_noise_exactly(prediction_type):
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler(prediction_type=prediction_type))
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 4, 6, 6, generator=generator, dtype=torch.float64)
    noise = torch.randn(3, 4, 6, 6, generator=generator, dtype=torch.float64)
    t = torch.tensor([1, 400, 999])
    x_t = schedule.add_noise(x0, noise, t)
    model_output = schedule.model_output_from(x0, noise, t)
    torch.testing.assert_close(schedule.predicted_x0(x_t, model_output, t), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(schedule.predicted_eps(x_t, model_output, t), noise, rtol=0, atol=1e-10)


def test_coefficients_follow_the_sample_dtype():
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    x = torch.ones(2, 1, 2, 2, dtype=torch.float16)
    assert schedule.add_noise(x, x, 10).dtype == torch.float16
    x0, eps = split_model_output(x, x, schedule.alpha_cumprod(10), "epsilon")
    assert x0.dtype == eps.dtype == torch.float16


def test_signal_to_noise_ratio_by_hand():
    schedule = NoiseSchedule(alphas_cumprod=torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64))
    expected = torch.tensor([0.9 / 0.1, 0.5 / 0.5, 0.2 / 0.8], dtype=torch.float64)
    torch.testing.assert_close(schedule.signal_to_noise_ratio(torch.tensor([0, 1, 2])), expected)


def test_training_timesteps_are_uniform_over_the_half_open_range_and_reproducible():
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    t = schedule.sample_timesteps(20_000, t_min=10, t_max=20, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long
    counts = torch.bincount(t, minlength=20)
    assert counts[:10].sum() == 0 and counts[10:].min() > 1_800  # 2,000 expected per value
    again = schedule.sample_timesteps(20_000, t_min=10, t_max=20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    assert int(schedule.sample_timesteps(5_000).max()) <= 999


def test_inference_timesteps_are_diffusers_own():
    scheduler = sd_ddim_scheduler(timestep_spacing="trailing")
    schedule = NoiseSchedule.from_scheduler(scheduler)
    scheduler.set_timesteps(7)
    assert torch.equal(schedule.inference_timesteps(7), scheduler.timesteps)
    assert NoiseSchedule.from_scheduler(sd_ddim_scheduler()).inference_timesteps(4).tolist() == [751, 501, 251, 1]


def test_bad_inputs_fail_with_clear_messages():
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 1000\); got values from 3 to 1000"):
        schedule.alpha_cumprod(torch.tensor([3, 1000]))
    with pytest.raises(TypeError, match="timesteps must be integers"):
        schedule.alpha_cumprod(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="prediction_type must be one of epsilon, v_prediction, sample; got 'x0'"):
        NoiseSchedule(alphas_cumprod=torch.tensor([0.5]), prediction_type="x0")
    with pytest.raises(ValueError, match=r"need 0 <= t_min < t_max <= 1000; got t_min=5, t_max=5"):
        schedule.sample_timesteps(2, t_min=5, t_max=5)
    with pytest.raises(ValueError, match=r"noise has shape \(1, 3\) but the samples have shape \(1, 4\)"):
        schedule.add_noise(torch.zeros(1, 4), torch.zeros(1, 3), 0)
    with pytest.raises(ValueError, match="3 timesteps or noise levels for a batch of 2 samples"):
        schedule.add_noise(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="not made from a scheduler"):
        NoiseSchedule(alphas_cumprod=torch.tensor([0.5])).inference_timesteps(2)
    with pytest.raises(ValueError, match=r"alphas_cumprod must lie in \(0, 1\]"):
        NoiseSchedule(alphas_cumprod=torch.tensor([0.5, 0.0]))
    with pytest.raises(TypeError, match="DDPM-family diffusers scheduler"):
        NoiseSchedule.from_scheduler(object())
