"""Learnable Regions end to end on tiny random shapes components: the gradient reaches AnchorNet and the expected
reward rises; candidates are batched inpaintings of the drawn boxes; the final edit is a chosen box."""

from __future__ import annotations

import pytest
import torch

from interpedit.backbones.stable_diffusion import load_stable_diffusion
from interpedit.diffusion.unet_cost import count_unet_calls
from interpedit.learnable_regions.learnable_regions import LearnableRegions
from interpedit.stable_diffusion.inpainting import inpaint_images
from interpedit.stable_diffusion.inpainting_masks import box_masks
from tests.tiny_components import tiny_shapes_inpainting_dir  # noqa: F401  (pytest fixture)

SOURCE = ["a small red circle at the top left", "a large blue square at the center"]
TARGET = ["a small green circle at the top left", "a large blue star at the center"]


def tiny_method(folder, **overrides):
    settings = dict(backbone=str(folder.parent / "clip"), clip=str(folder.parent / "clip"), backbone_image_size=64,
                    num_anchors=3, half_sizes=(0, 1, 2), border=1, optimisation_steps=2, draws=2,
                    inpainting_steps=2, guidance_scale=2.0, prompt_template=None, num_views=2)
    settings.update(overrides)
    return LearnableRegions(str(folder), **settings)


def test_inpaint_images_is_the_pipeline_and_composites_outside_the_mask(tiny_shapes_inpainting_dir):
    sd = load_stable_diffusion(tiny_shapes_inpainting_dir, inpainting=True)
    pipe = sd.pipeline()
    pipe.set_progress_bar_config(disable=True)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    masks = box_masks(torch.tensor([[8.0, 8.0, 40.0, 30.0], [20.0, 0.0, 64.0, 64.0]]), 64, 64)
    theirs = pipe(SOURCE, image=images, mask_image=masks[:, None].float(), num_inference_steps=3, guidance_scale=4.0,
                  strength=1.0, generator=torch.Generator().manual_seed(5), output_type="pt").images
    mine = inpaint_images(sd, images, masks, SOURCE, steps=3, guidance_scale=4.0, seed=5)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)
    pasted = inpaint_images(sd, images, masks, SOURCE, steps=3, guidance_scale=4.0, seed=5, composite=True)
    keep = ~masks[:, None].expand_as(images)
    assert torch.equal(pasted[keep], images[keep]) and torch.equal(pasted[~keep], mine[~keep])


def test_the_gradient_reaches_anchor_net_and_the_expected_reward_rises(tiny_shapes_inpainting_dir):
    method = tiny_method(tiny_shapes_inpainting_dir, optimisation_steps=12, learning_rate=0.05, weight_decay=0.0)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    proposals = method.propose(images)
    sizes = proposals.boxes[..., 2] - proposals.boxes[..., 0]  # (B, P, S) box widths in cells

    # A known reward: the widest box pays most. It replaces the CLIP objective (which is random for random
    # networks), so that the expected reward under the policy can be computed exactly after every update.
    def widest_pays(images, candidates, edit_text, source_text, generator, boxes, grid):
        width = method.last_boxes[..., 2] - method.last_boxes[..., 0]
        return {"reward": width.float(), "clip": width * 0, "directional": width * 0, "structure": width * 0}

    original_inpaint = method.inpaint_boxes

    def remember_boxes(images, boxes, prompts, grid, seed):
        method.last_boxes = boxes
        return original_inpaint(images, boxes, prompts, grid, seed)

    method.rewards, method.inpaint_boxes = widest_pays, remember_boxes
    before = [p.detach().clone() for p in method.anchor_net.parameters()]

    def expected_reward():
        with torch.no_grad():
            probabilities = method.size_logits(proposals).softmax(-1).reshape(sizes.shape)
        return float((probabilities * sizes).sum(-1).mean())

    curve = [expected_reward()]
    edit_text = method.reward.text_embeddings(TARGET)
    source_text = method.reward.text_embeddings(SOURCE)
    history = method.optimise(images, proposals, TARGET, edit_text, source_text, torch.Generator().manual_seed(0),
                              callback=lambda stats: curve.append(expected_reward()))
    assert len(history) == 12 and all(p.grad is not None for p in method.anchor_net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, method.anchor_net.parameters()))
    assert curve[-1] > curve[0] + 0.3, curve  # the policy moves towards the widest boxes (3 to 5 cells)


def test_the_area_weight_takes_the_box_share_off_the_reward_and_the_policy_shrinks_the_boxes(
        tiny_shapes_inpainting_dir):
    method = tiny_method(tiny_shapes_inpainting_dir, optimisation_steps=12, learning_rate=0.05, weight_decay=0.0,
                         area_weight=2.0)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    proposals = method.propose(images)
    sizes = proposals.boxes[..., 2] - proposals.boxes[..., 0]  # (B, P, S) box widths in cells

    # An edit reward that no box changes, so that the area term alone sets the reward.
    def indifferent(candidates, *_):
        zero = candidates.new_zeros(candidates.shape[:2])
        return {"clip": zero, "directional": zero, "structure": zero, "loss": zero, "reward": zero}

    method.reward.forward = indifferent

    def expected_width():
        with torch.no_grad():
            probabilities = method.size_logits(proposals).softmax(-1).reshape(sizes.shape)
        return float((probabilities * sizes).sum(-1).mean())

    steps, curve = [], [expected_width()]

    def record(stats):
        steps.append(stats)
        curve.append(expected_width())

    edit_text, source_text = method.reward.text_embeddings(TARGET), method.reward.text_embeddings(SOURCE)
    method.optimise(images, proposals, TARGET, edit_text, source_text, torch.Generator().manual_seed(0),
                    callback=record)
    rows, cols = proposals.grid
    boxes = steps[0]["boxes"]  # (B, P * K, 4) grid units
    share = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]) / (rows * cols)
    torch.testing.assert_close(steps[0]["rewards"], -2.0 * share)
    assert steps[0]["area"] == pytest.approx(float(share.mean()))
    assert curve[-1] < curve[0] - 0.3, curve  # the policy moves towards the smallest boxes (1 cell)
    with pytest.raises(ValueError, match="area_weight: must be >= 0, got -1"):
        tiny_method(tiny_shapes_inpainting_dir, area_weight=-1.0)


def test_edit_inpaints_every_drawn_box_in_one_call_per_step_and_returns_the_chosen_box(tiny_shapes_inpainting_dir):
    method = tiny_method(tiny_shapes_inpainting_dir)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode(), count_unet_calls(method.unet) as cost:  # as in an evaluation loop
        result = method.edit(images, SOURCE, TARGET)
    # 2 steps x (2 images x 3 anchors x 2 draws) + the final 2 x 3 candidates, 2 sampler steps x 2 CFG branches each
    assert cost.forwards == (2 * 12 + 6) * 2 * 2
    assert cost.calls == (2 + 1) * 2
    assert result.edited.shape == images.shape and result.region.shape == (2, 64, 64)
    assert result.candidates.shape == (2, 3, 3, 64, 64) and len(result.history) == 2
    for b in range(2):
        chosen = result.candidates[b, result.chosen[b]]
        assert torch.equal(result.edited[b], chosen)
        outside = ~result.region[b][None].expand_as(chosen)
        assert torch.equal(result.edited[b][outside], images[b][outside])  # composited outside the box
        assert result.region[b].any()
    # The chosen box surrounds its anchor cell (8 px cells: the tiny tower's 8 px patches at 64 px).
    proposals = method.propose(images)
    assert proposals.grid == (8, 8)
    for b in range(2):
        row, col = proposals.anchors[b, result.chosen[b]].tolist()
        assert result.region[b, row * 8 + 4, col * 8 + 4]


def test_the_reward_choice_picks_the_candidate_with_the_highest_edit_reward(tiny_shapes_inpainting_dir):
    method = tiny_method(tiny_shapes_inpainting_dir, optimisation_steps=0, final_choice="reward")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    scored = []
    original = method.rewards

    def recorded(*args):
        scored.append(original(*args)["reward"])
        return {"reward": scored[-1]}

    method.rewards = recorded
    with count_unet_calls(method.unet) as cost:
        result = method.edit(images, SOURCE, TARGET)
    assert cost.forwards == 6 * 2 * 2  # the final candidates only: the choice itself costs no UNet forward
    assert len(scored) == 1 and scored[0].shape == (2, 3)
    assert torch.equal(result.scores, scored[0]) and torch.equal(result.chosen, scored[0].argmax(1))
    assert torch.equal(result.edited, result.candidates[torch.arange(2), result.chosen])


def test_bad_settings_are_refused(tiny_shapes_inpainting_dir):
    with pytest.raises(ValueError, match="final_sizes: 'best' is not one of mode, sample"):
        tiny_method(tiny_shapes_inpainting_dir, final_sizes="best")
    with pytest.raises(ValueError, match="final_choice: 'clip' is not one of ranking, reward"):
        tiny_method(tiny_shapes_inpainting_dir, final_choice="clip")
    with pytest.raises(ValueError, match="draws >= 2"):
        tiny_method(tiny_shapes_inpainting_dir, draws=1)
    with pytest.raises(ValueError, match="num_anchors: 300 is more than the 8x8"):
        tiny_method(tiny_shapes_inpainting_dir, num_anchors=300)
    with pytest.raises(ValueError, match="anchor_spacing: must be >= 0, got -2"):
        tiny_method(tiny_shapes_inpainting_dir, anchor_spacing=-2)
