"""Structure distance: zero for identical images, PIE-Bench's DINO formula, key hooks always removed, DDP, bf16."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms
from torchvision.transforms import Resize
from torchmetrics.utilities.data import dim_zero_sum

from interpedit.backbones import tiny_vit
from interpedit.clip import ShapesCLIP
from interpedit.metrics import StructureDistance, capture_keys, vit_keys
from interpedit.shapes import vocabulary
from tests.tiny_components import tiny_vit_dir  # noqa: F401  (a pytest fixture)

HALF = (0.5, 0.5, 0.5)


def no_hooks_left(module: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def random_images(seed: int, batch: int = 3, height: int = 32, width: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    return tiny_vit(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def dynamic_vit() -> torch.nn.Module:
    """Patch 16 keeps PIE-Bench's 224-pixel inputs at 14 x 14 patches."""
    return tiny_vit(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=4, dynamic_img_size=True)


def pie_bench_structure_distance(vit: torch.nn.Module, source_u8: np.ndarray, edited_u8: np.ndarray) -> float:
    """PIE-Bench's calculate_structure_distance / LossG / VitExtractor for one image pair, (H, W, 3) uint8.

    Its Resize ran on torchvision < 0.17, which did not antialias tensors.
    """
    transform = transforms.Compose(
        [Resize(224, max_size=480, antialias=False), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )
    heads = vit.blocks[-1].attn.num_heads
    dim = vit.embed_dim

    def self_similarity(image_u8: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(np.transpose(image_u8.astype(np.float32), axes=(2, 0, 1)))  # 0-255, not /255
        image = transform(image).unsqueeze(0)
        outputs = []
        handle = vit.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: outputs.append(o))
        vit(image)
        handle.remove()
        patch_num = outputs[0].shape[1]
        keys = outputs[0].reshape(patch_num, 3, heads, dim // heads).permute(1, 2, 0, 3)[1]
        h, t, d = keys.shape
        x = keys.transpose(0, 1).reshape(t, h * d)[None]
        norm1 = x.norm(dim=2, keepdim=True)
        factor = torch.clamp(norm1 @ norm1.permute(0, 2, 1), min=1e-08)
        return (x @ x.permute(0, 2, 1)) / factor

    with torch.no_grad():
        return F.mse_loss(self_similarity(edited_u8), self_similarity(source_u8)).item()


def test_identical_images_have_zero_distance(vit):
    images = random_images(0)
    metric = StructureDistance(vit, mean=HALF, std=HALF)
    metric.update(images, images.clone())
    assert torch.equal(metric.per_image["structure/distance"], torch.zeros(3))
    assert metric.compute()["structure/distance"].item() == 0.0
    metric.update(images, random_images(1))
    assert bool((metric.per_image["structure/distance"] > 0).all())


def test_distance_is_the_mse_of_key_self_similarities(vit):
    source, edited = random_images(2), random_images(3)
    metric = StructureDistance(vit, mean=HALF, std=HALF)
    with torch.no_grad():
        keys = [vit_keys(vit, (images - 0.5) / 0.5) for images in (source, edited)]
    similarity = [F.normalize(k, dim=-1) @ F.normalize(k, dim=-1).transpose(1, 2) for k in keys]
    assert keys[0].shape == (3, 1 + 8 * 8, 32)  # CLS + 8 x 8 patches, 2 heads x 16 concatenated
    expected = (similarity[0] - similarity[1]).pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(metric.distances(source, edited), expected)


@pytest.mark.parametrize("size", [(256, 256), (256, 384)])
def test_pie_bench_compat_equals_the_published_formula(dynamic_vit, size):
    rng = np.random.default_rng(4)
    source_u8 = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
    edited_u8 = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
    to_tensor = lambda u8: torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    metric = StructureDistance(dynamic_vit, pie_bench_compat=True)
    values = metric.distances(to_tensor(source_u8), to_tensor(edited_u8))
    for index in range(2):
        expected = pie_bench_structure_distance(dynamic_vit, source_u8[index], edited_u8[index])
        assert values[index].item() == pytest.approx(expected, rel=1e-4)
    assert no_hooks_left(dynamic_vit)


def test_pie_bench_compat_fixes_preprocessing(dynamic_vit, vit):
    with pytest.raises(ValueError, match="leave image_size, mean and std unset"):
        StructureDistance(dynamic_vit, pie_bench_compat=True, mean=HALF)
    fixed = StructureDistance(vit, pie_bench_compat=True)  # a 32-pixel ViT cannot take 224 inputs
    with pytest.raises(ValueError, match="dynamic_img_size=True"):
        fixed.update(random_images(5), random_images(6))
    assert no_hooks_left(vit)


def test_shapes_clip_vision_tower_works(vit):
    clip = ShapesCLIP(vocabulary())
    metric = StructureDistance(clip.vision_model, mean=HALF, std=HALF)
    images = random_images(7, height=64, width=64)  # resized to the tower's 32 pixels
    metric.update(images, images.clone())
    metric.update(images, random_images(8, height=64, width=64))
    result = metric.compute()
    assert result["structure/distance_count"].item() == 6
    assert metric.per_image["structure/distance"].min() > 0
    assert no_hooks_left(clip)


def test_a_shared_vit_runs_in_eval_mode_and_keeps_its_training_state():
    # Dropout makes two passes over the same images differ unless the metric runs the ViT in eval mode.
    vit = tiny_vit(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, drop_rate=0.5, proj_drop_rate=0.5)
    vit.train()
    metric = StructureDistance(vit, mean=HALF, std=HALF)
    images = random_images(16)
    assert torch.equal(metric.distances(images, images.clone()), torch.zeros(3))
    assert all(module.training for module in vit.modules())
    assert all(parameter.requires_grad for parameter in vit.parameters())


def test_loads_a_saved_vit_by_path(tiny_vit_dir):
    metric = StructureDistance(str(tiny_vit_dir))
    assert metric.dynamic_img_size and metric.image_size == 32
    images = random_images(9)
    assert torch.equal(metric.distances(images, images.clone()), torch.zeros(3))


def test_hook_is_removed_after_use_and_after_errors(vit):
    metric = StructureDistance(vit, mean=HALF, std=HALF)
    metric.update(random_images(10), random_images(11))
    assert no_hooks_left(vit)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_keys(vit) as captured:
            vit.forward_features(torch.rand(1, 3, 32, 32))
            assert len(captured) == 1
            raise RuntimeError("boom")
    assert no_hooks_left(vit)
    with pytest.raises(Exception):  # the fixed-size ViT rejects 48-pixel inputs inside the forward pass
        vit_keys(vit, torch.rand(1, 3, 48, 48))
    assert no_hooks_left(vit)


def test_states_are_sums_and_halves_merge_into_the_whole(vit):
    source, edited = random_images(12, batch=4), random_images(13, batch=4)
    whole = StructureDistance(vit, mean=HALF, std=HALF)
    whole.update(source, edited)
    first, second = StructureDistance(vit, mean=HALF, std=HALF), StructureDistance(vit, mean=HALF, std=HALF)
    first.update(source[:1], edited[:1])
    second.update(source[1:], edited[1:])
    first.merge_state(second)
    assert all(fn is dim_zero_sum for fn in whole._reductions.values())
    for key, value in whole.compute().items():
        torch.testing.assert_close(first.compute()[key], value)


def test_bf16_autocast_gives_float32_results(vit):
    source, edited = random_images(14), random_images(15)
    metric = StructureDistance(vit, mean=HALF, std=HALF)
    expected = metric.distances(source, edited)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = metric.distances(source, edited)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
