"""The denoising loss: targets per parameterisation, masked and weighted means by hand, Min-SNR weights."""

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from interpedit.backbones import scheduler_from_config, sd_ddim_scheduler
from interpedit.diffusion import NoiseSchedule, diffusion_loss, min_snr_weights, training_target


def make_batch(seed: int = 0, shape=(3, 2, 4, 4)):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64), torch.randn(
        shape, generator=generator, dtype=torch.float64
    )


def test_training_targets_are_noise_x0_and_diffusers_velocity():
    scheduler = scheduler_from_config(DDPMScheduler, sd_ddim_scheduler())
    schedule = NoiseSchedule.from_scheduler(scheduler)
    x0, noise = make_batch()
    t = torch.tensor([5, 300, 900])
    assert training_target(schedule, x0, noise, t) is noise
    assert training_target(schedule, x0, noise, t, "sample") is x0
    torch.testing.assert_close(
        training_target(schedule, x0, noise, t, "v_prediction"), scheduler.get_velocity(x0, noise, t)
    )


def test_without_mask_or_weights_it_is_the_mean_squared_error():
    output, target = make_batch(1)
    torch.testing.assert_close(diffusion_loss(output, target), F.mse_loss(output, target))


def test_mask_counts_only_masked_pixels_and_every_sample_equally():
    output, target = make_batch(2, shape=(2, 2, 3, 3))
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[0, 0, 0] = True  # 1 pixel
    mask[1, :2, :] = True  # 6 pixels
    squared = (output - target) ** 2
    first = squared[0, :, 0, 0].mean()
    second = squared[1, :, :2, :].mean()
    torch.testing.assert_close(diffusion_loss(output, target, mask=mask), (first + second) / 2)
    per_sample = diffusion_loss(output, target, mask=mask, reduction="none")
    torch.testing.assert_close(per_sample, torch.stack([first, second]))
    # Changing the output outside the mask changes nothing.
    changed = output.clone()
    changed[~mask[:, None].expand_as(output)] += 100
    torch.testing.assert_close(diffusion_loss(changed, target, mask=mask), diffusion_loss(output, target, mask=mask))
    # (B, 1, H, W) and per-channel (B, C, H, W) masks mean the same thing.
    torch.testing.assert_close(
        diffusion_loss(output, target, mask=mask[:, None]), diffusion_loss(output, target, mask=mask)
    )
    torch.testing.assert_close(
        diffusion_loss(output, target, mask=mask[:, None].expand(-1, 2, -1, -1).float()),
        diffusion_loss(output, target, mask=mask),
    )


def test_soft_mask_weights_pixels():
    output = torch.tensor([[[[1.0, 3.0]]]])
    target = torch.zeros(1, 1, 1, 2)
    mask = torch.tensor([[[0.25, 0.75]]])
    # (0.25 * 1 + 0.75 * 9) / (0.25 + 0.75)
    torch.testing.assert_close(diffusion_loss(output, target, mask=mask), torch.tensor(7.0))


def test_empty_masks_are_left_out_of_the_batch_mean_and_keep_the_graph():
    output, target = make_batch(3, shape=(2, 1, 2, 2))
    output.requires_grad_(True)
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[0] = True
    torch.testing.assert_close(diffusion_loss(output, target, mask=mask), ((output[0] - target[0]) ** 2).mean())
    nothing = diffusion_loss(output, target, mask=torch.zeros_like(mask))
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.equal(output.grad, torch.zeros_like(output))


def test_per_sample_weights_by_hand():
    output, target = make_batch(4)
    weights = torch.tensor([0.5, 2.0, 0.0], dtype=torch.float64)
    per_sample = ((output - target) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(diffusion_loss(output, target, weights), (per_sample * weights).mean())


def test_low_precision_outputs_are_compared_in_float32():
    output = torch.full((1, 1, 1, 1), 1.0, dtype=torch.bfloat16)
    target = torch.full((1, 1, 1, 1), 1.00390625 + 2**-12)  # not representable in bf16
    assert diffusion_loss(output, target).dtype == torch.float32
    assert diffusion_loss(output, target).item() == pytest.approx((1.00390625 + 2**-12 - 1.0) ** 2)


def test_min_snr_weights_by_hand():
    schedule = NoiseSchedule(alphas_cumprod=torch.tensor([0.99, 0.5, 0.1], dtype=torch.float64))
    t = torch.tensor([0, 1, 2])
    snr = torch.tensor([99.0, 1.0, 0.1 / 0.9], dtype=torch.float64)
    clamped = torch.tensor([5.0, 1.0, 0.1 / 0.9], dtype=torch.float64)
    torch.testing.assert_close(min_snr_weights(schedule, t, 5.0, "epsilon"), (clamped / snr).float())
    torch.testing.assert_close(min_snr_weights(schedule, t, 5.0, "v_prediction"), (clamped / (snr + 1)).float())
    torch.testing.assert_close(min_snr_weights(schedule, t, 5.0, "sample"), clamped.float())
    floored = torch.tensor([5.0, 1.0, 0.5], dtype=torch.float64)  # the SNR 1/9 of t=2 is raised to the floor 0.5
    torch.testing.assert_close(min_snr_weights(schedule, t, 5.0, "epsilon", floor=0.5), (floored / snr).float())


def test_bad_inputs_fail_with_clear_messages():
    output, target = make_batch(5)
    with pytest.raises(ValueError, match=r"model output has shape \(3, 2, 4, 4\) but target has \(3, 2, 4\)"):
        diffusion_loss(output, target[..., 0])
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\), one per sample; got \(2,\)"):
        diffusion_loss(output, target, torch.ones(2))
    with pytest.raises(ValueError, match=r"mask has shape \(3, 5, 5\); .* \(B, H, W\), \(B, 1, H, W\) or"):
        diffusion_loss(output, target, mask=torch.ones(3, 5, 5))
    with pytest.raises(ValueError, match=r"mask values must lie in \[0, 1\]"):
        diffusion_loss(output, target, mask=torch.full((3, 4, 4), 2.0))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'none'"):
        diffusion_loss(output, target, reduction="sum")
    with pytest.raises(ValueError, match="gamma must be positive"):
        min_snr_weights(NoiseSchedule.from_scheduler(sd_ddim_scheduler()), torch.tensor([1]), gamma=0)
    with pytest.raises(ValueError, match=r"floor must lie in \(0, gamma=5.0\); got 6"):
        min_snr_weights(NoiseSchedule.from_scheduler(sd_ddim_scheduler()), torch.tensor([1]), gamma=5.0, floor=6)
