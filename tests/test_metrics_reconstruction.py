"""Reconstruction quality (reconstruction/psnr, reconstruction/ssim): by hand, capped, NaN-free counts."""

import math

import pytest
import torch

from interpedit.metrics import PSNR_CAP_DB, RECONSTRUCTION_KEYS, ReconstructionQuality, reconstruction_psnr


def test_psnr_by_hand():
    source = torch.zeros(3, 3, 8, 8)
    source[1] = 0.5
    reconstruction = source.clone()
    reconstruction[0] += 0.1  # MSE 0.01 everywhere: 20 dB
    reconstruction[1, :, :4, :4] += 0.05  # a quarter of the pixels off by 0.05: MSE 0.000625, 10 log10(1600) dB
    got = reconstruction_psnr(reconstruction, source)
    assert got.tolist() == pytest.approx([20.0, 10 * math.log10(1600), PSNR_CAP_DB], abs=1e-4)
    assert got[2].item() == PSNR_CAP_DB  # identical: exactly the cap


def test_the_metric_averages_per_image_values_with_counts():
    source = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    reconstruction = source.clone()
    reconstruction[0] = (reconstruction[0] + 0.1).clamp(max=1)
    metric = ReconstructionQuality()
    metric.update(reconstruction, source)
    assert set(metric.per_image) == set(RECONSTRUCTION_KEYS)
    assert metric.per_image["reconstruction/psnr"][1].item() == PSNR_CAP_DB
    assert metric.per_image["reconstruction/ssim"][1].item() == pytest.approx(1.0, abs=1e-6)
    assert metric.per_image["reconstruction/ssim"][0].item() < 1.0
    result = metric.compute()
    expected = metric.per_image["reconstruction/psnr"].double().mean().item()
    assert result["reconstruction/psnr"].item() == pytest.approx(expected, rel=1e-6)
    assert result["reconstruction/psnr_count"].item() == result["reconstruction/ssim_count"].item() == 2


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="reconstruction is .* but source is"):
        ReconstructionQuality().update(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 10))
    with pytest.raises(ValueError, match="reconstruction has values in"):
        ReconstructionQuality().update(torch.full((1, 3, 8, 8), 2.0), torch.zeros(1, 3, 8, 8))
