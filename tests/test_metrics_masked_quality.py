"""Masked MSE/PSNR/SSIM: values computed by hand, the PSNR cap, agreement with torchmetrics on the whole image."""

import math

import pytest
import torch
from torchmetrics.image import StructuralSimilarityIndexMeasure

from interpedit.metrics import PSNR_CAP_DB, force_mask_border, masked_mse, masked_psnr, masked_ssim

C1 = 0.01**2  # torchmetrics' SSIM constants for data range 1


def constant_ssim(a: float, b: float) -> float:
    # Two constant images have no variance: SSIM reduces to its luminance term.
    return (2 * a * b + C1) / (a * a + b * b + C1)


def test_masked_mse_and_psnr_by_hand_on_a_4x4_example():
    first = torch.zeros(1, 3, 4, 4)
    second = first.clone()
    second[0, :, 0, 0] = 0.5  # inside the region to exclude, all channels
    second[0, 0, 1, 1] = 0.2  # outside it, one channel
    edit_region = torch.zeros(1, 4, 4, dtype=torch.bool)
    edit_region[0, 0, 0] = edit_region[0, 3, 3] = True
    background = ~edit_region  # 14 pixels, 42 values

    assert masked_mse(first, second, background).item() == pytest.approx(0.2**2 / 42)
    assert masked_psnr(first, second, background).item() == pytest.approx(10 * math.log10(42 / 0.04), rel=1e-6)
    # Inside: 3 x 0.25 over 2 pixels x 3 channels.
    assert masked_mse(first, second, edit_region).item() == pytest.approx(0.125)
    assert masked_psnr(first, second, edit_region).item() == pytest.approx(10 * math.log10(8), rel=1e-6)


def test_constant_shift_gives_known_mse_psnr_and_ssim():
    # float64 so that the SSIM variances of the constants are exactly zero, not float32 round-off.
    first = torch.full((2, 3, 16, 16), 0.5, dtype=torch.float64)
    second = first + 0.1
    everywhere = torch.ones(2, 16, 16, dtype=torch.bool)
    expected = torch.full((2,), constant_ssim(0.5, 0.6), dtype=torch.float64)
    torch.testing.assert_close(masked_mse(first, second, everywhere), torch.full((2,), 0.01, dtype=torch.float64))
    torch.testing.assert_close(masked_psnr(first, second, everywhere), torch.full((2,), 20.0, dtype=torch.float64))
    torch.testing.assert_close(masked_ssim(first, second, everywhere), expected)
    single = masked_ssim(first.float(), second.float(), everywhere)
    torch.testing.assert_close(single, expected.float())


def test_identical_images_give_the_psnr_cap_ssim_one_mse_zero():
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    region = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.3
    assert torch.equal(masked_psnr(images, images.clone(), region), torch.full((3,), PSNR_CAP_DB))
    assert torch.equal(masked_mse(images, images.clone(), region), torch.zeros(3))
    assert torch.equal(masked_ssim(images, images.clone(), region), torch.ones(3))


def test_empty_region_is_nan():
    images = torch.rand(2, 3, 8, 8)
    region = torch.zeros(2, 8, 8, dtype=torch.bool)
    region[1, 2, 2] = True
    assert torch.isnan(masked_psnr(images, images * 0.5, region)[0])
    assert torch.isnan(masked_ssim(images, images * 0.5, region)[0])
    assert not torch.isnan(masked_mse(images, images * 0.5, region)[1])


def test_masked_ssim_over_the_whole_image_equals_torchmetrics():
    generator = torch.Generator().manual_seed(2)
    first, second = torch.rand(2, 2, 3, 24, 20, generator=generator)
    everywhere = torch.ones(2, 24, 20, dtype=torch.bool)
    for index in range(2):
        expected = StructuralSimilarityIndexMeasure(data_range=1.0)(first[index : index + 1], second[index : index + 1])
        torch.testing.assert_close(masked_ssim(first, second, everywhere)[index], expected)


def test_masked_ssim_averages_only_the_region():
    # Left 16 columns: constants 0.2 vs 0.6; right half: identical texture. Pixels whose 11-pixel window stays on
    # the left (columns 0-10; the border reflects the constant) have exactly the constant pair's SSIM.
    first = torch.full((1, 3, 24, 32), 0.2, dtype=torch.float64)
    first[..., 16:] = torch.rand(1, 3, 24, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    second = first.clone()
    second[..., :16] = 0.6
    region = torch.zeros(1, 24, 32, dtype=torch.bool)
    region[..., :11] = True
    expected = torch.tensor([constant_ssim(0.2, 0.6)], dtype=torch.float64)
    torch.testing.assert_close(masked_ssim(first, second, region), expected)
    whole = masked_ssim(first, second, torch.ones_like(region))
    assert whole.item() - expected.item() > 0.1


def test_ssim_rejects_images_smaller_than_its_window():
    tiny = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="at least 6x6"):
        masked_ssim(tiny, tiny, torch.ones(1, 4, 4, dtype=torch.bool))


def test_force_mask_border_sets_only_the_outer_ring():
    mask = torch.zeros(1, 5, 6, dtype=torch.bool)
    forced = force_mask_border(mask)
    assert forced.sum().item() == 5 * 6 - 3 * 4
    assert not forced[0, 1:-1, 1:-1].any()
    assert not mask.any()  # the input is not modified
