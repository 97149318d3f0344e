"""CLIP similarity: equality with torchmetrics' CLIPScore (shapes CLIP and a saved transformers CLIP), PIE-Bench's
edited-region CLIP, directional CLIP by hand, the shapes CLIP processor, DDP sums and bf16."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.multimodal import CLIPScore
from torchmetrics.utilities.data import dim_zero_sum
from transformers import CLIPModel, CLIPProcessor

from interpedit.clip import ShapesCLIP
from interpedit.clip.shapes_clip_processor import ShapesCLIPProcessor, clip_score_components
from interpedit.metrics import CLIPSimilarity, directional_similarity
from interpedit.shapes import vocabulary
from tests.tiny_components import tiny_clip_dir  # noqa: F401  (a pytest fixture)

PROMPTS = [
    "a red circle",
    "a blue square",
    "a green triangle at the top",
    "a large star",
    "a small yellow hexagon",
    "two circles",
    "a purple square on the left",
    "a cyan star",
]
SHORT_PROMPTS = ["a red circle", "a dog", "two cats", "a blue sky"]  # the tiny CLIP reads 14 characters


class PooledCLIP(torch.nn.Module):
    """transformers 5's CLIPModel returns ModelOutputs from get_*_features; CLIPScore 1.9 needs the tensors."""

    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, pixel_values):
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    def get_text_features(self, input_ids, attention_mask=None):
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


@pytest.fixture(scope="module")
def shapes_clip() -> ShapesCLIP:
    torch.manual_seed(0)
    return ShapesCLIP(vocabulary()).eval()


def images(seed: int, batch: int = 8, size: int = 32) -> torch.Tensor:
    """8-bit values as floats in [0, 1], so that PIE-Bench's uint8 path sees exactly the same pixels."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), generator=generator).float() / 255


def pie_bench_clip(reference: CLIPScore, image: torch.Tensor, prompt: str, mask: np.ndarray | None = None) -> float:
    """PIE-Bench's calculate_clip_similarity for one image: uint8 array, optional 0/1 mask, CLIPScore."""
    img = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if mask is not None:
        img = np.uint8(img * mask[:, :, np.newaxis].repeat(3, axis=2))
    return reference(torch.tensor(img).permute(2, 0, 1), prompt).item()


def pie_bench_mask(mask: torch.Tensor) -> np.ndarray:
    forced = mask.numpy().astype(np.float64)
    forced[0, :] = forced[-1, :] = 1
    forced[:, 0] = forced[:, -1] = 1
    return forced


def test_shapes_clip_processor_follows_the_clipscore_convention(shapes_clip):
    processor = ShapesCLIPProcessor.from_model(shapes_clip)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    pixels = processor(images=[image], return_tensors="pt", padding=True)["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32) and pixels.dtype == torch.float32
    torch.testing.assert_close(pixels[0], image.float() / 255)
    torch.testing.assert_close(processor(images=image.float())["pixel_values"], pixels)  # 0-255 floats too
    large = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    expected = F.interpolate(large.float() / 255, size=(32, 32), mode="bilinear", antialias=True)
    torch.testing.assert_close(processor(images=list(large))["pixel_values"], expected)
    text = processor(text=PROMPTS[:3], return_tensors="pt", padding=True)
    tokens = shapes_clip.tokenize(PROMPTS[:3])
    assert torch.equal(text["input_ids"], tokens["input_ids"])
    assert torch.equal(text["attention_mask"], tokens["attention_mask"])
    assert processor.model_max_length == shapes_clip.tokenizer.model_max_length
    with pytest.raises(ValueError, match="return_tensors='pt'"):
        processor(text="a red circle", return_tensors="np")


def test_whole_and_edited_clip_equal_clipscore_on_the_shapes_clip(shapes_clip):
    edited = images(1)
    mask = torch.zeros(8, 32, 32, dtype=torch.bool)
    mask[:, 4:20, 6:24] = True
    metric = CLIPSimilarity(shapes_clip)
    metric.update(edited, PROMPTS, mask=mask)
    reference = CLIPScore(model_name_or_path=lambda: clip_score_components(shapes_clip))
    whole = [pie_bench_clip(reference, edited[i], PROMPTS[i]) for i in range(8)]
    region = [pie_bench_clip(reference, edited[i], PROMPTS[i], mask[i].numpy()) for i in range(8)]
    assert 0.0 in whole and max(whole) > 1.0  # both sides of the max(cos, 0) clamp are exercised
    torch.testing.assert_close(metric.per_image["clip/whole"], torch.tensor(whole), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(metric.per_image["clip/edited"], torch.tensor(region), rtol=1e-5, atol=1e-4)
    result = metric.compute()
    assert result["clip/whole"].item() == pytest.approx(sum(whole) / 8, rel=1e-5)
    assert math.isnan(result["clip/directional"].item()) and result["clip/directional_count"].item() == 0


def test_saved_transformers_clip_loads_by_path_and_equals_clipscore(tiny_clip_dir):
    edited = images(2, batch=4, size=40)
    mask = torch.zeros(4, 40, 40, dtype=torch.bool)
    mask[:, 10:30, 5:25] = True
    mask[3] = False
    metric = CLIPSimilarity(str(tiny_clip_dir), pie_bench_compat=True)
    metric.update(edited, SHORT_PROMPTS, mask=mask)
    reference = CLIPScore(
        model_name_or_path=lambda: (
            PooledCLIP(CLIPModel.from_pretrained(tiny_clip_dir)),
            CLIPProcessor.from_pretrained(tiny_clip_dir),
        )
    )
    whole = [pie_bench_clip(reference, edited[i], SHORT_PROMPTS[i]) for i in range(4)]
    region = [pie_bench_clip(reference, edited[i], SHORT_PROMPTS[i], pie_bench_mask(mask[i])) for i in range(4)]
    torch.testing.assert_close(metric.per_image["clip/whole"], torch.tensor(whole), rtol=1e-5, atol=1e-4)
    # compat: the forced border keeps image 3's edited-region score defined (only its border is kept).
    torch.testing.assert_close(metric.per_image["clip/edited"], torch.tensor(region), rtol=1e-5, atol=1e-4)


def test_clean_edited_clip_is_undefined_for_empty_masks(shapes_clip):
    metric = CLIPSimilarity(shapes_clip)
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[0, 5:9, 5:9] = True
    metric.update(images(3, batch=2), PROMPTS[:2], mask=mask)
    edited = metric.per_image["clip/edited"]
    assert not torch.isnan(edited[0]) and torch.isnan(edited[1])
    assert metric.compute()["clip/edited_count"].item() == 1


def test_directional_similarity_by_hand():
    e = torch.eye(3)
    source_image, edited_image = e[[0, 0, 0, 0]], e[[1, 1, 0, 2]] * 5.0  # scale does not matter
    source_text = e[[0, 0, 0, 1]]
    target_text = e[[1, 2, 1, 1]]
    got = directional_similarity(source_image, edited_image, source_text, target_text)
    # 1: same direction; 0.5: (-1, 1, 0) vs (-1, 0, 1); 0: the image did not move; NaN: the prompts do not differ.
    assert got[:3].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert math.isnan(got[3].item())


def test_directional_clip_of_the_metric(shapes_clip):
    source, edited = images(4, batch=3), images(5, batch=3)
    source_prompts = ["a red circle", "a red circle", "a blue square"]
    target_prompts = ["a blue circle", "a red square", "a blue square"]
    metric = CLIPSimilarity(shapes_clip)
    metric.update(edited, target_prompts, source=source, source_prompts=source_prompts)
    with torch.no_grad():
        unit = lambda x: F.normalize(x, dim=-1)  # noqa: E731
        image_direction = unit(shapes_clip.get_image_features(edited)) - unit(shapes_clip.get_image_features(source))
        text_direction = unit(shapes_clip.get_text_features(**shapes_clip.tokenize(target_prompts))) - unit(
            shapes_clip.get_text_features(**shapes_clip.tokenize(source_prompts))
        )
    expected = F.cosine_similarity(image_direction, text_direction, dim=-1)
    directional = metric.per_image["clip/directional"]
    torch.testing.assert_close(directional[:2], expected[:2], rtol=1e-4, atol=1e-5)
    assert torch.isnan(directional[2])  # identical prompts: no direction
    metric.update(source, target_prompts, source=source, source_prompts=source_prompts)
    assert metric.per_image["clip/directional"][:2].tolist() == [0.0, 0.0]  # an edit that changed nothing


def test_states_are_sums_and_halves_merge_into_the_whole(shapes_clip):
    edited, source = images(6, batch=4), images(7, batch=4)
    kwargs = dict(source=source, source_prompts=PROMPTS[4:])
    whole = CLIPSimilarity(shapes_clip)
    whole.update(edited, PROMPTS[:4], **kwargs)
    first, second = CLIPSimilarity(shapes_clip), CLIPSimilarity(shapes_clip)
    first.update(edited[:2], PROMPTS[:2], source=source[:2], source_prompts=PROMPTS[4:6])
    second.update(edited[2:], PROMPTS[2:4], source=source[2:], source_prompts=PROMPTS[6:])
    first.merge_state(second)
    assert all(fn is dim_zero_sum for fn in whole._reductions.values())
    merged = first.compute()
    for key, value in whole.compute().items():
        torch.testing.assert_close(merged[key], value, equal_nan=True, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_gives_float32_results(shapes_clip):
    edited, source = images(8, batch=3), images(9, batch=3)
    mask = torch.zeros(3, 32, 32, dtype=torch.bool)
    mask[:, 8:24, 8:24] = True
    kwargs = dict(mask=mask, source=source, source_prompts=PROMPTS[3:6])
    plain = CLIPSimilarity(shapes_clip)
    plain.update(edited, PROMPTS[:3], **kwargs)
    autocast = CLIPSimilarity(shapes_clip)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast.update(edited, PROMPTS[:3], **kwargs)
    for key, value in plain.per_image.items():
        assert torch.equal(autocast.per_image[key], value), key


def test_a_shared_clip_keeps_its_training_state():
    torch.manual_seed(1)
    clip = ShapesCLIP(vocabulary()).train()
    clip.text_model.eval()  # a mixed state must come back as it was, module by module
    modes = {name: module.training for name, module in clip.named_modules()}
    metric = CLIPSimilarity(clip)
    metric.update(images(12, batch=2), PROMPTS[:2], source=images(13, batch=2), source_prompts=PROMPTS[2:4])
    assert {name: module.training for name, module in clip.named_modules()} == modes
    assert all(parameter.requires_grad for parameter in clip.parameters())


def test_bad_inputs_fail_with_clear_messages(shapes_clip):
    metric = CLIPSimilarity(shapes_clip)
    with pytest.raises(ValueError, match="2 target_prompts for 3 images"):
        metric.update(images(10, batch=3), PROMPTS[:2])
    with pytest.raises(ValueError, match="both source and source_prompts"):
        metric.update(images(10, batch=2), PROMPTS[:2], source=images(11, batch=2))
    with pytest.raises(TypeError, match="callable returning"):
        CLIPSimilarity(torch.nn.Linear(2, 2))
