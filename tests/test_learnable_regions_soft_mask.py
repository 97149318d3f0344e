"""The soft-mask estimator of Learnable Regions: the expected box, inpainting under it (the pipeline's inpainting
for a hard mask), a differentiable reward, and a gradient that reaches AnchorNet through the last UNet steps."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPProcessor

from interpedit.backbones.stable_diffusion import load_stable_diffusion
from interpedit.diffusion.unet_cost import count_unet_calls
from interpedit.learnable_regions.boxes import box_masks
from interpedit.learnable_regions.soft_mask import expected_mask, soft_inpainting_conditioning, soft_mask_inpaint
from interpedit.metrics.clip_pixels import clip_pixel_values
from interpedit.stable_diffusion.inpainting import inpaint_images
from interpedit.stable_diffusion.inpainting_unet import inpainting_conditioning
from tests.test_learnable_regions import SOURCE, TARGET, tiny_method
from tests.tiny_components import tiny_clip_dir, tiny_shapes_inpainting_dir  # noqa: F401  (pytest fixtures)


def test_the_expected_mask_is_each_pixels_probability_of_being_repainted():
    boxes = torch.tensor([[[3.0, 3.0, 5.0, 5.0], [2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 8.0, 8.0]]])  # nested, 8x8 grid
    masks = box_masks(boxes, (8, 8), (8, 8)).float()  # (1, 3, 8, 8)
    probabilities = torch.tensor([[0.5, 0.3, 0.2]])
    soft = expected_mask(probabilities, masks)
    assert soft.shape == (1, 8, 8)
    assert soft[0, 4, 4] == pytest.approx(1.0)  # inside every box
    assert soft[0, 2, 2] == pytest.approx(0.5)  # in the two larger boxes
    assert soft[0, 0, 0] == pytest.approx(0.2)  # in the largest only
    with pytest.raises(ValueError, match="do not match masks"):
        expected_mask(probabilities[:, :2], masks)


def test_a_one_hot_soft_mask_inpaints_exactly_as_the_pipeline_composite(tiny_shapes_inpainting_dir):
    sd = load_stable_diffusion(tiny_shapes_inpainting_dir, inpainting=True)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    # Boxes on 8 px cells: on the 4 px latent cells' boundaries, where averaging the mask is the pipeline's resize.
    masks = box_masks(torch.tensor([[1.0, 1.0, 5.0, 4.0], [2.0, 0.0, 8.0, 8.0]]), (8, 8), (64, 64))
    hard = inpainting_conditioning(sd.vae, images, masks, generator=torch.Generator().manual_seed(3))
    soft = soft_inpainting_conditioning(sd.vae, images, masks.float(), generator=torch.Generator().manual_seed(3))
    for a, b in zip(hard, soft):
        torch.testing.assert_close(a, b)
    expected = inpaint_images(sd, images, masks, SOURCE, steps=3, guidance_scale=4.0, seed=5, composite=True)
    mine = soft_mask_inpaint(sd, images, masks.float(), SOURCE, steps=3, guidance_scale=4.0, seed=5,
                             backprop_steps=1)
    torch.testing.assert_close(mine, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="backprop_steps must be in \\[0, 3\\]"):
        soft_mask_inpaint(sd, images, masks.float(), SOURCE, steps=3, backprop_steps=4)
    with pytest.raises(ValueError, match="one prompt and one \\(H, W\\) mask per image"):
        soft_mask_inpaint(sd, images, masks.float(), SOURCE[:1], steps=3)


def test_the_soft_mask_gradient_flows_through_the_tracked_unet_steps_only(tiny_shapes_inpainting_dir):
    sd = load_stable_diffusion(tiny_shapes_inpainting_dir, inpainting=True)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for backprop_steps, backwards in ((0, 0), (2, 2 * 2 * 2)):  # 2 steps x 2 images x 2 CFG branches
        soft = torch.full((2, 64, 64), 0.5, requires_grad=True)
        with count_unet_calls(sd.unet) as cost:
            out = soft_mask_inpaint(sd, images, soft, TARGET, steps=3, guidance_scale=2.0, seed=0,
                                    backprop_steps=backprop_steps)
            out.mean().backward()
        assert cost.forwards == 3 * 2 * 2 and cost.backwards == backwards
        assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_the_differentiable_reward_keeps_the_gradient_and_agrees_with_the_metric_path(tiny_shapes_inpainting_dir):
    method = tiny_method(tiny_shapes_inpainting_dir, gradient="soft_mask")
    sources = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    candidates = torch.rand(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    edit_text, source_text = method.reward.text_embeddings(TARGET), method.reward.text_embeddings(SOURCE)
    soft = method.reward.losses(candidates, sources, edit_text, source_text, torch.Generator().manual_seed(0),
                                differentiable=True)
    hard = method.reward(candidates.detach(), sources, edit_text, source_text, torch.Generator().manual_seed(0))
    for name in ("clip", "directional", "structure"):
        # The metric path quantises to 8 bits; nothing else differs for the shapes CLIP.
        torch.testing.assert_close(soft[name], hard[name], rtol=0, atol=5e-3)
    soft["reward"].sum().backward()
    assert candidates.grad is not None and candidates.grad.abs().sum() > 0
    assert not hard["reward"].requires_grad


def test_clip_pixel_values_follow_the_transformers_processor(tiny_clip_dir):
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    # A smooth image, so that torch's bicubic and PIL's agree up to interpolation details.
    coarse = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    images = torch.nn.functional.interpolate(coarse, size=(48, 64), mode="bilinear", align_corners=False)
    images = (images * 255).round() / 255
    expected = processor(images=[(image * 255).round().to(torch.uint8) for image in images], return_tensors="pt")
    mine = clip_pixel_values(processor, images)
    assert mine.shape == expected["pixel_values"].shape
    assert (mine - expected["pixel_values"]).abs().mean() < 0.02
    images.requires_grad_(True)
    clip_pixel_values(processor, images).sum().backward()
    assert images.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="neither a ShapesCLIPProcessor nor"):
        clip_pixel_values(object(), images)


def test_soft_mask_optimisation_moves_anchor_net_towards_the_better_box(tiny_shapes_inpainting_dir):
    method = tiny_method(tiny_shapes_inpainting_dir, gradient="soft_mask", backprop_steps=1, optimisation_steps=10,
                         learning_rate=0.05, weight_decay=0.0)
    images = torch.zeros(2, 3, 64, 64)  # black sources: any repainted pixel brightens the composite
    proposals = method.propose(images)
    sizes = proposals.boxes[..., 2] - proposals.boxes[..., 0]  # (B, P, S) box widths in cells

    # A known differentiable reward: the composite's brightness. Its gradient in the soft mask is the decoded
    # inpainting's brightness, positive, so the widest box pays most.
    def brightness(images, candidates, edit_text, source_text, generator):
        value = candidates.mean(dim=(-3, -2, -1))
        return {"reward": value, "clip": value * 0, "directional": value * 0, "structure": value * 0}

    method.soft_rewards = brightness
    before = [p.detach().clone() for p in method.anchor_net.parameters()]

    def expected_width():
        with torch.no_grad():
            probabilities = method.size_logits(proposals).softmax(-1).reshape(sizes.shape)
        return float((probabilities * sizes).sum(-1).mean())

    curve = [expected_width()]
    edit_text, source_text = method.reward.text_embeddings(TARGET), method.reward.text_embeddings(SOURCE)
    with count_unet_calls(method.unet) as cost:
        history = method.optimise(images, proposals, TARGET, edit_text, source_text,
                                  torch.Generator().manual_seed(0), callback=lambda stats: curve.append(expected_width()))
    # one inpainting per anchor and step (2 images x 3 anchors), 2 sampler steps, 2 CFG branches; the last one tracked
    assert cost.forwards == 10 * 6 * 2 * 2 and cost.backwards == 10 * 6 * 2
    assert len(history) == 10 and all(p.grad is not None for p in method.anchor_net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, method.anchor_net.parameters()))
    assert curve[-1] > curve[0] + 0.3, curve


def test_the_soft_mask_edit_runs_and_bad_settings_are_refused(tiny_shapes_inpainting_dir):
    method = tiny_method(tiny_shapes_inpainting_dir, gradient="soft_mask", draws=1)  # draws is reinforce's
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():  # as in an evaluation loop
        result = method.edit(images, SOURCE, TARGET)
    assert result.edited.shape == images.shape and len(result.history) == 2
    assert all({"reward", "entropy", "clip"} <= set(step) for step in result.history)
    with pytest.raises(ValueError, match="gradient: 'adjoint' is not one of reinforce, soft_mask"):
        tiny_method(tiny_shapes_inpainting_dir, gradient="adjoint")
    with pytest.raises(ValueError, match="backprop_steps: 3 is not in \\[0, inpainting_steps = 2\\]"):
        tiny_method(tiny_shapes_inpainting_dir, gradient="soft_mask", backprop_steps=3)
