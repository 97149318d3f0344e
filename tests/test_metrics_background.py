"""Background preservation: clean masked means, PIE-Bench's formulas, LPIPS availability, DDP sums and bf16."""

import math
import urllib.error

import numpy as np
import pytest
import torch
import torchmetrics.functional.image.lpips as torchmetrics_lpips
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
from torchmetrics.regression import MeanSquaredError
from torchmetrics.utilities.data import dim_zero_sum

from interpedit.metrics import PSNR_CAP_DB, BackgroundPreservation, background_psnr

H = W = 24


def random_batch(seed: int, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8-bit images as float32 (what PIE-Bench reads from files) and random rectangular masks."""
    rng = np.random.default_rng(seed)
    source = torch.from_numpy(rng.integers(0, 256, (batch, 3, H, W), dtype=np.uint8)).float() / 255
    edited = torch.from_numpy(rng.integers(0, 256, (batch, 3, H, W), dtype=np.uint8)).float() / 255
    mask = torch.zeros(batch, H, W, dtype=torch.bool)
    for index in range(batch):
        top, left = rng.integers(0, H // 2, 2)
        mask[index, top : top + rng.integers(2, H // 2), left : left + rng.integers(2, W // 2)] = True
    return source, edited, mask


def pie_bench_reference(source_u8: np.ndarray, edited_u8: np.ndarray, mask: np.ndarray, lpips=None) -> dict:
    """PIE-Bench's evaluate.py / matrics_calculator.py for one image: (H, W, 3) uint8, (H, W) 0/1 mask."""
    mask = mask.astype(np.float64)
    mask[0, :] = 1
    mask[-1, :] = 1
    mask[:, 0] = 1
    mask[:, -1] = 1
    mask = mask[:, :, np.newaxis].repeat([3], axis=2)
    if (1 - mask).sum() == 0:
        return {"psnr": "nan", "ssim": "nan", "mse": "nan", "lpips": "nan"}

    def tensors(batched: bool):
        pred = source_u8.astype(np.float32) / 255 * (1 - mask).astype(np.float32)
        gt = edited_u8.astype(np.float32) / 255 * (1 - mask).astype(np.float32)
        pred, gt = torch.tensor(pred).permute(2, 0, 1), torch.tensor(gt).permute(2, 0, 1)
        return (pred.unsqueeze(0), gt.unsqueeze(0)) if batched else (pred.contiguous(), gt.contiguous())

    pred, gt = tensors(True)
    result = {
        "psnr": PeakSignalNoiseRatio(data_range=1.0)(pred, gt).item(),
        "ssim": StructuralSimilarityIndexMeasure(data_range=1.0)(pred, gt).item(),
        "mse": MeanSquaredError()(*tensors(False)).item(),
    }
    if lpips is not None:
        result["lpips"] = lpips(pred * 2 - 1, gt * 2 - 1).item()
    return result


def as_u8(images: torch.Tensor) -> np.ndarray:
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture
def random_lpips_backbone(monkeypatch):
    """torchmetrics' LPIPS with its shipped linear heads but a random backbone: no torchvision download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # let build_lpips construct it although no weights are cached
    build = torchmetrics_lpips._get_tv_model_features
    monkeypatch.setattr(torchmetrics_lpips, "_get_tv_model_features", lambda net, pretrained=False: build(net, False))


@pytest.fixture
def offline_torchvision(monkeypatch, tmp_path):
    """torchvision weight downloads fail, as offline or in CI, whatever the machine's network; returns the URLs
    a download was attempted for."""
    import torchvision.models._api as torchvision_api

    attempts = []

    def refuse(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("network disabled in this test")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torchvision_api, "load_state_dict_from_url", refuse)
    return attempts


def test_identical_images_give_the_documented_ideal():
    source, _, mask = random_batch(0)
    metric = BackgroundPreservation(lpips=False)
    metric.update(source, source.clone(), mask)
    result = metric.compute()
    assert result["background/psnr"].item() == PSNR_CAP_DB
    assert result["background/ssim"].item() == 1.0
    assert result["background/mse"].item() == 0.0
    assert result["background/psnr_count"].item() == 4


def test_clean_mode_ignores_changes_inside_the_mask():
    source, edited, mask = random_batch(1)
    inside_only = torch.where(mask[:, None], edited, source)
    metric = BackgroundPreservation(lpips=False)
    metric.update(source, inside_only, mask)
    assert torch.equal(metric.per_image["background/psnr"], torch.full((4,), PSNR_CAP_DB))
    assert torch.equal(metric.per_image["background/mse"], torch.zeros(4))


def test_clean_mode_is_a_true_masked_mean():
    # A constant shift of 0.1 outside the mask gives MSE 0.01 and PSNR 20 dB whatever the mask's size
    # (PIE-Bench's zero-filled images would dilute it by the mask's share of the image).
    source = torch.full((2, 3, H, W), 0.4)
    mask = torch.zeros(2, H, W, dtype=torch.bool)
    mask[0, :4, :4] = True
    mask[1, :, : W // 2] = True
    edited = torch.where(mask[:, None], torch.rand(2, 3, H, W), source + 0.1)
    metric = BackgroundPreservation(lpips=False)
    metric.update(source, edited, mask)
    torch.testing.assert_close(metric.per_image["background/mse"], torch.full((2,), 0.01))
    torch.testing.assert_close(metric.per_image["background/psnr"], torch.full((2,), 20.0))


@pytest.mark.parametrize("compat", [False, True])
def test_full_masks_are_undefined_and_dropped(compat):
    source, edited, mask = random_batch(2, batch=3)
    mask[1] = True
    metric = BackgroundPreservation(lpips=False, pie_bench_compat=compat)
    metric.update(source, edited, mask)
    assert torch.isnan(metric.per_image["background/psnr"][1])
    result = metric.compute()
    assert result["background/psnr_count"].item() == 2
    defined = metric.per_image["background/psnr"][[0, 2]]
    assert result["background/psnr"].item() == pytest.approx(defined.double().mean().item(), rel=1e-6)


def test_pie_bench_compat_equals_the_published_formulas(random_lpips_backbone):
    source, edited, mask = random_batch(3, batch=5)
    mask[4] = False  # an empty annotation: only the forced border is excluded
    torch.manual_seed(0)
    reference_lpips = LearnedPerceptualImagePatchSimilarity(net_type="squeeze")
    torch.manual_seed(0)
    metric = BackgroundPreservation(pie_bench_compat=True)
    assert "background/lpips" not in metric.unavailable
    metric.update(source, edited, mask)

    for index in range(5):
        expected = pie_bench_reference(
            as_u8(source)[index], as_u8(edited)[index], mask[index].numpy(), reference_lpips
        )
        for name in ("psnr", "ssim", "mse", "lpips"):
            got = metric.per_image[f"background/{name}"][index].item()
            assert got == pytest.approx(expected[name], rel=1e-5, abs=1e-6), (index, name)


def test_pie_bench_compat_identical_backgrounds_give_infinite_psnr_as_torchmetrics():
    source, _, mask = random_batch(4, batch=2)
    reference = pie_bench_reference(as_u8(source)[0], as_u8(source)[0], mask[0].numpy())
    assert reference["psnr"] == math.inf
    assert background_psnr(source, source.clone(), mask, pie_bench_compat=True).tolist() == [math.inf, math.inf]
    metric = BackgroundPreservation(lpips=False, pie_bench_compat=True)
    metric.update(source, source.clone(), mask)
    assert metric.compute()["background/psnr"].item() == math.inf


@pytest.mark.parametrize("hub_offline", ["1", "0"])
def test_lpips_unavailable_offline_reports_no_number(offline_torchvision, monkeypatch, hub_offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", hub_offline)
    source, edited, mask = random_batch(5)
    with pytest.warns(UserWarning, match="squeezenet1_1-b8a52dc0.pth") as caught:
        metric = BackgroundPreservation()
    message = str(caught[0].message)
    assert "background/lpips" in message and "checkpoints" in message and "lpips=False" in message
    # HF_HUB_OFFLINE=1 does not even try the download (a firewalled one could hang); otherwise it fails.
    assert len(offline_torchvision) == (0 if hub_offline == "1" else 1)
    assert "squeezenet1_1" in metric.unavailable["background/lpips"]
    metric.update(source, edited, mask)
    result = metric.compute()
    assert "background/lpips" not in result and "background/lpips_count" not in result
    assert "background/lpips" not in metric.per_image
    names = ("psnr", "ssim", "mse")
    assert set(result) == {f"background/{name}{suffix}" for name in names for suffix in ("", "_count")}


def test_lpips_off_builds_nothing_and_warns_nothing(offline_torchvision, recwarn):
    metric = BackgroundPreservation(lpips=False)
    assert metric.unavailable == {} and metric.lpips_module is None
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_clean_lpips_sees_only_background_differences(random_lpips_backbone):
    source, edited, mask = random_batch(6)
    torch.manual_seed(0)
    metric = BackgroundPreservation()
    metric.update(source, torch.where(mask[:, None], edited, source), mask)
    assert torch.equal(metric.per_image["background/lpips"], torch.zeros(4))
    metric.update(source, edited, mask)
    # The clean path fills the edit region with the source's pixels in the edited image, then runs LPIPS.
    torch.manual_seed(0)
    reference = LearnedPerceptualImagePatchSimilarity(net_type="squeeze", reduction="none")
    expected = reference(source * 2 - 1, torch.where(mask[:, None], source, edited) * 2 - 1)
    torch.testing.assert_close(metric.per_image["background/lpips"], expected.reshape(-1))


def test_injected_lpips_module_gets_the_masked_images():
    calls = []

    def mean_abs(first, second):
        calls.append((first.clone(), second.clone()))
        return (first - second).abs().mean(dim=(1, 2, 3))

    source, edited, mask = random_batch(7)
    metric = BackgroundPreservation(lpips_module=mean_abs, pie_bench_compat=True)
    metric.update(source, edited, mask)
    keep = ~mask.clone()
    keep[:, 0, :] = keep[:, -1, :] = keep[:, :, 0] = keep[:, :, -1] = False
    torch.testing.assert_close(calls[0][0], source * keep[:, None] * 2 - 1)
    torch.testing.assert_close(calls[0][1], edited * keep[:, None] * 2 - 1)
    with pytest.raises(ValueError, match="lpips=False"):
        BackgroundPreservation(lpips=False, lpips_module=mean_abs)


def test_states_are_sums_and_halves_merge_into_the_whole():
    source, edited, mask = random_batch(8, batch=6)
    mask[2] = True  # one undefined image
    whole = BackgroundPreservation(lpips=False)
    whole.update(source, edited, mask)
    first, second = BackgroundPreservation(lpips=False), BackgroundPreservation(lpips=False)
    first.update(source[:3], edited[:3], mask[:3])
    second.update(source[3:], edited[3:], mask[3:])
    first.merge_state(second)
    assert whole._reductions and all(fn is dim_zero_sum for fn in whole._reductions.values())
    merged, expected = first.compute(), whole.compute()
    assert merged.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(merged[key], expected[key])


@pytest.mark.parametrize("compat", [False, True])
def test_bf16_autocast_gives_float32_results(compat, random_lpips_backbone):
    source, edited, mask = random_batch(9)
    torch.manual_seed(0)
    plain = BackgroundPreservation(pie_bench_compat=compat)
    plain.update(source, edited, mask)
    torch.manual_seed(0)
    autocast = BackgroundPreservation(pie_bench_compat=compat)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast.update(source, edited, mask)
        result = autocast.compute()
    expected = plain.compute()
    assert result.keys() == expected.keys() and "background/lpips" in result
    for key, value in expected.items():
        assert torch.equal(result[key], value), key
        assert torch.equal(autocast.per_image.get(key, value), plain.per_image.get(key, value)), key


def test_bad_inputs_fail_with_clear_messages():
    source, edited, mask = random_batch(10)
    metric = BackgroundPreservation(lpips=False)
    with pytest.raises(ValueError, match=r"expected \[0, 1\]"):
        metric.update(source * 2 - 1, edited, mask)
    with pytest.raises(TypeError, match="bool"):
        metric.update(source, edited, mask.float())
    with pytest.raises(ValueError, match="mask"):
        metric.update(source, edited, mask[:, :-1])
    with pytest.raises(ValueError, match="edited"):
        metric.update(source, edited[:2], mask)
