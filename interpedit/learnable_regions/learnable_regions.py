"""Learnable Regions (Lin et al., CVPR 2024): edit an image from text alone by learning where to inpaint.

For a batch of images, with their edit prompts (``target_prompt``) and source prompts:

1. the frozen ViT (``AnchorBackbone``) gives a feature map and the CLS attention map; anchors are the attention's
   highest cells away from the border, optionally kept ``anchor_spacing`` cells apart (``anchor_points``);
2. around each anchor, boxes of every half-size are candidates; their ROI features go to a fresh AnchorNet per
   image, which outputs a categorical over the sizes (``anchor_boxes``, ``roi_features``, ``AnchorNet``);
3. **optimisation**, ``optimisation_steps`` times, with one of two gradients (``gradient``):
   - ``reinforce``: draw ``draws`` sizes per anchor, inpaint every drawn box with the SD-inpainting components in
     one batched call, score each candidate with the CLIP, directional and structure losses (``EditReward``), and
     step AnchorNet along the leave-one-out REINFORCE gradient (``reinforce_loss``);
   - ``soft_mask``: inpaint each anchor once under its expected box (the soft mask of ``soft_mask.py``), with the
     last ``backprop_steps`` sampler steps tracked, and step AnchorNet along the gradient of the differentiable
     reward of the soft composite;
4. **the edit**: each anchor's most likely size is inpainted once more, and one candidate per image is chosen
   (``final_choice``): by the paper's Eq. 7 ranking (``rank_candidates``), or, beyond the paper, by the same reward
   the optimisation maximised (``EditReward``), which scores the anchors as well as the sizes; the chosen
   candidate's box is the edit region.

The released code never trains AnchorNet (its gradient is cut), so its boxes are draws from a random network:
``LearnableRegions(optimisation_steps=0, final_sizes="sample")`` is that baseline.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from interpedit.backbones.stable_diffusion import load_stable_diffusion
from interpedit.learnable_regions.anchor_net import AnchorNet
from interpedit.learnable_regions.anchors import anchor_points
from interpedit.learnable_regions.boxes import anchor_boxes, box_area_fraction, box_masks, roi_features
from interpedit.learnable_regions.policy_gradient import draw_sizes, reinforce_loss
from interpedit.learnable_regions.ranking import rank_candidates
from interpedit.learnable_regions.rewards import EditReward
from interpedit.learnable_regions.soft_mask import expected_mask, soft_mask_inpaint
from interpedit.learnable_regions.views import ViewAugmentation
from interpedit.learnable_regions.vit_backbone import AnchorBackbone
from interpedit.stable_diffusion.inpainting import inpaint_images
from interpedit.user_errors import OptionError

FINAL_SIZES = ("mode", "sample")
FINAL_CHOICES = ("ranking", "reward")
GRADIENTS = ("reinforce", "soft_mask")
RELEASED_PROMPT_TEMPLATE = "a high quality image of {}."
"""The released code's inpainting and CLIP prompt; the shapes world's closed vocabulary takes the prompt as is."""


@dataclass
class Proposals:
    """What the frozen backbone proposes for a batch."""

    anchors: Tensor
    """(B, P, 2) long (row, col) cells."""
    boxes: Tensor
    """(B, P, S, 4) candidate boxes in grid units."""
    features: Tensor
    """(B, D, rows, cols) the backbone's feature map."""
    attention: Tensor
    """(B, rows, cols) the CLS attention."""
    grid: tuple[int, int]


@dataclass
class RegionEdit:
    """The result for a batch."""

    edited: Tensor
    """(B, 3, H, W) the chosen candidates."""
    region: Tensor
    """(B, H, W) bool, the chosen boxes' masks."""
    candidates: Tensor
    """(B, P, 3, H, W) one candidate per anchor."""
    candidate_boxes: Tensor
    """(B, P, 4) their boxes in grid units."""
    scores: Tensor
    """(B, P) the final choice's scores: Eq. 7 (-inf outside the text top-k) or the reward."""
    chosen: Tensor
    """(B,) index of the chosen anchor."""
    history: list[dict[str, float]]
    """Per optimisation step: mean reward, losses and the policy's entropy."""


@torch.no_grad()
def step_statistics(logits: Tensor, scored: dict[str, Tensor], candidates: Tensor, boxes: Tensor,
                    grid: tuple[int, int]) -> dict[str, Any]:
    """An optimisation step's statistics: the mean ``reward``, ``clip``, ``directional``, ``structure`` and box
    ``area`` and the policy's ``entropy`` as floats, with the (detached) ``candidates``, their ``boxes`` and
    ``rewards``."""
    probabilities = logits.detach().softmax(-1)
    entropy = -(probabilities * probabilities.clamp(min=1e-12).log()).sum(-1).mean()
    stats: dict[str, Any] = {"entropy": float(entropy)}
    names = ("reward", "clip", "directional", "structure", "area")
    stats.update({name: float(scored[name].detach().mean()) for name in names if name in scored})
    stats.update(candidates=candidates.detach(), boxes=boxes, rewards=scored["reward"].detach(), grid=grid)
    return stats


class LearnableRegions(nn.Module):
    """The method on any SD-inpainting pipeline (module docstring).

    Args:
        inpainting: SD-inpainting hub id (``stabilityai/stable-diffusion-2-inpainting``) or folder
            (``pretrained/shapes_stable_diffusion_inpainting``).
        backbone: the anchor ViT: a timm name or folder (``dino_vitb8``) or a saved ShapesCLIP folder.
        clip: the CLIP of the losses and the ranking: hub id or folder (``openai/clip-vit-base-patch16``,
            ``pretrained/shapes_clip``).
        backbone_image_size: the ViT's input side (DINO: 256; None keeps the ViT's own).
        num_anchors: P anchors per image (9).
        half_sizes: candidate half-sizes in grid cells (released: 4, 6, ..., 14 on DINO's 32x32 grid).
        border: cells kept clear of the edges when choosing anchors (None: the largest half-size + 1, as released).
        anchor_spacing: minimum distance in cells between anchors, by greedy non-maximum suppression (beyond the
            paper; 0: the released top-k, where every anchor can sit on the strongest peak).
        feature_dim, roi_size: AnchorNet's projected width (12) and ROI side (8).
        optimisation_steps: AnchorNet updates per image (0: no learning).
        gradient: ``reinforce`` (the score-function estimator over drawn sizes) or ``soft_mask`` (backpropagation
            through the expected box and the last inpainting steps).
        draws: sizes drawn per anchor and step with ``reinforce`` (>= 2, for the leave-one-out baseline).
        backprop_steps: with ``soft_mask``, the last inpainting steps the gradient flows through (0: the
            composite alone).
        learning_rate, weight_decay, betas: AnchorNet's Adam (released: 5e-3, 4.5e-2, (0.9, 0.96)).
        final_sizes: ``mode``, each anchor's most likely size, or ``sample``, one draw (the released behaviour).
        inpainting_steps, guidance_scale: the inpainting sampler.
        prompt_template: ``"{}"``-template of the inpainting and CLIP prompt (None: the prompt as is).
        composite: paste the source back outside each box.
        num_views, clip_weight, directional_weight, structure_weight: the reward (``EditReward``).
        area_weight: beyond the paper: the reward also loses ``area_weight`` times the share of the image the box
            covers (the expected share under the soft mask), a prior for the smallest box that makes the edit.
            0 (the default) is the paper's reward. It enters the sizes' optimisation and the ``reward`` choice,
            not Eq. 7.
        final_choice: how one of the P final candidates is chosen: ``ranking``, the paper's Eq. 7 (CLIP text-to-image
            plus image-to-image similarity), or ``reward``, beyond the paper: the highest ``EditReward`` (CLIP,
            directional and structure losses over the augmented views), the objective AnchorNet was optimised for.
            It costs no UNet forwards.
        alpha, beta, top_k: the Eq. 7 ranking.
        seed: seeds the fresh AnchorNet, the draws, the views and the inpainting noise.
        torch_dtype: dtype of the SD networks (``float16`` on a GPU), None keeps the stored one.
    """

    def __init__(
        self,
        inpainting: str,
        backbone: str | nn.Module,
        clip: Any,
        backbone_image_size: int | None = None,
        num_anchors: int = 9,
        half_sizes: Sequence[int] = (4, 6, 8, 10, 12, 14),
        border: int | None = None,
        anchor_spacing: int = 0,
        feature_dim: int = 12,
        roi_size: int = 8,
        optimisation_steps: int = 4,
        gradient: str = "reinforce",
        draws: int = 2,
        backprop_steps: int = 1,
        learning_rate: float = 5e-3,
        weight_decay: float = 4.5e-2,
        betas: tuple[float, float] = (0.9, 0.96),
        final_sizes: str = "mode",
        inpainting_steps: int = 25,
        guidance_scale: float = 7.5,
        prompt_template: str | None = RELEASED_PROMPT_TEMPLATE,
        composite: bool = True,
        num_views: int = 16,
        clip_weight: float = 1.0,
        directional_weight: float = 1.0,
        structure_weight: float = 1.0,
        area_weight: float = 0.0,
        final_choice: str = "ranking",
        alpha: float = 2.0,
        beta: float = 1.0,
        top_k: int | None = 3,
        seed: int = 0,
        torch_dtype: str | None = None,
    ) -> None:
        super().__init__()
        if final_sizes not in FINAL_SIZES:
            raise OptionError(f"LearnableRegions.final_sizes: {final_sizes!r} is not one of {', '.join(FINAL_SIZES)}")
        if final_choice not in FINAL_CHOICES:
            raise OptionError(f"LearnableRegions.final_choice: {final_choice!r} is not one of "
                              f"{', '.join(FINAL_CHOICES)}")
        if gradient not in GRADIENTS:
            raise OptionError(f"LearnableRegions.gradient: {gradient!r} is not one of {', '.join(GRADIENTS)}")
        if optimisation_steps < 0 or (gradient == "reinforce" and draws < 2) or num_anchors < 1 or inpainting_steps < 1:
            raise ValueError("LearnableRegions: optimisation_steps must be >= 0, draws >= 2 (with reinforce), "
                             "num_anchors and inpainting_steps >= 1")
        if not 0 <= backprop_steps <= inpainting_steps:
            raise OptionError(f"LearnableRegions.backprop_steps: {backprop_steps} is not in [0, inpainting_steps = "
                              f"{inpainting_steps}]")
        if area_weight < 0:
            raise OptionError(f"LearnableRegions.area_weight: must be >= 0, got {area_weight}")
        if prompt_template is not None and "{}" not in prompt_template:
            raise OptionError(f"LearnableRegions.prompt_template: {prompt_template!r} has no '{{}}' for the prompt")
        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if torch_dtype is not None and torch_dtype not in dtypes:
            raise OptionError(f"LearnableRegions.torch_dtype: {torch_dtype!r} is not one of {', '.join(dtypes)}")
        sd = load_stable_diffusion(inpainting, torch_dtype=dtypes.get(torch_dtype), inpainting=True)
        self.sd = sd
        self.vae = sd.vae.eval().requires_grad_(False)  # registered so that they move with the module
        self.unet = sd.unet.eval().requires_grad_(False)
        self.text_encoder = sd.text_encoder.eval().requires_grad_(False)
        self.backbone = AnchorBackbone(backbone, image_size=backbone_image_size)
        self.reward = EditReward(clip, self.backbone.vit, ViewAugmentation(num_views), clip_weight,
                                 directional_weight, structure_weight,
                                 structure_mean=self.backbone.mean.flatten().tolist(),
                                 structure_std=self.backbone.std.flatten().tolist())
        self.half_sizes = tuple(int(s) for s in half_sizes)
        self.border = max(self.half_sizes) + 1 if border is None else border
        if anchor_spacing < 0:
            raise OptionError(f"LearnableRegions.anchor_spacing: must be >= 0, got {anchor_spacing}")
        self.anchor_spacing = anchor_spacing
        rows, cols = self.backbone.grid
        if num_anchors > rows * cols:
            raise OptionError(f"LearnableRegions.num_anchors: {num_anchors} is more than the {rows}x{cols} grid's cells")
        self.num_anchors = num_anchors
        self.anchor_net = AnchorNet(self.backbone.width, len(self.half_sizes), feature_dim, roi_size)
        self.initial_state = copy.deepcopy(self.anchor_net.state_dict())
        self.optimisation_steps = optimisation_steps
        self.gradient = gradient
        self.draws = draws
        self.backprop_steps = backprop_steps
        self.learning_rate, self.weight_decay, self.betas = learning_rate, weight_decay, tuple(betas)
        self.final_sizes = final_sizes
        self.final_choice = final_choice
        self.area_weight = area_weight
        self.inpainting_steps = inpainting_steps
        self.guidance_scale = guidance_scale
        self.prompt_template = prompt_template
        self.composite = composite
        self.alpha, self.beta, self.top_k = alpha, beta, top_k
        self.seed = seed

    # ------------------------------------------------------------------ pieces
    def prompt(self, text: str) -> str:
        return self.prompt_template.format(text) if self.prompt_template else text

    def propose(self, images: Tensor) -> Proposals:
        """Anchors, candidate boxes and features of (B, 3, H, W) images."""
        features, attention = self.backbone(images)
        anchors = anchor_points(attention, self.num_anchors, self.border, self.anchor_spacing)
        grid = self.backbone.grid
        return Proposals(anchors, anchor_boxes(anchors, self.half_sizes, grid), features, attention, grid)

    def fresh_policy(self, state: dict[str, Tensor] | None = None) -> None:
        """Reset AnchorNet to its seeded initial weights, or to ``state`` (a shared AnchorNet)."""
        self.anchor_net.load_state_dict(state if state is not None else self.initial_state)

    def size_logits(self, proposals: Proposals) -> Tensor:
        """(B * P, S) logits of AnchorNet for the proposals (with grad when enabled)."""
        projected = self.anchor_net.project(proposals.features)
        return self.anchor_net(roi_features(projected, proposals.boxes, self.anchor_net.roi_size))

    def inpaint_boxes(self, images: Tensor, boxes: Tensor, prompts: Sequence[str], grid: tuple[int, int],
                      seed: int) -> tuple[Tensor, Tensor]:
        """Inpaint K boxes per image in one batched call: (B, K, 4) boxes -> ``(candidates (B, K, 3, H, W), masks
        (B, K, H, W))``."""
        batch, count = boxes.shape[:2]
        masks = box_masks(boxes, grid, tuple(images.shape[-2:]))
        repeated = images[:, None].expand(batch, count, *images.shape[1:]).flatten(0, 1)
        texts = [self.prompt(prompt) for prompt in prompts for _ in range(count)]
        out = inpaint_images(self.sd, repeated, masks.flatten(0, 1), texts, steps=self.inpainting_steps,
                             guidance_scale=self.guidance_scale, seed=seed, composite=self.composite)
        return out.to(images.device).reshape(batch, count, *images.shape[1:]), masks

    def rewards(self, images: Tensor, candidates: Tensor, edit_text: Tensor, source_text: Tensor,
                generator: torch.Generator, boxes: Tensor, grid: tuple[int, int]) -> dict[str, Tensor]:
        """``EditReward``'s losses of (B, K) candidates, with their (B, K, 4) boxes' ``area`` (the share of the
        image) added and, by ``area_weight``, taken off the ``reward``."""
        scored = self.reward(candidates, images, edit_text, source_text, generator)
        return self.with_area(scored, box_area_fraction(boxes, grid).to(scored["reward"].device))

    def with_area(self, scored: dict[str, Tensor], area: Tensor) -> dict[str, Tensor]:
        """``scored`` with ``area`` recorded and ``area_weight * area`` added to the loss, off the reward."""
        if self.area_weight == 0:
            return {**scored, "area": area}
        penalty = self.area_weight * area
        return {**scored, "area": area, "loss": scored["loss"] + penalty, "reward": scored["reward"] - penalty}

    # ------------------------------------------------------------------ the method
    def soft_rewards(self, images: Tensor, candidates: Tensor, edit_text: Tensor, source_text: Tensor,
                     generator: torch.Generator) -> dict[str, Tensor]:
        """``rewards`` with the gradient of the candidates kept (the soft-mask estimator's)."""
        return self.reward.losses(candidates, images, edit_text, source_text, generator, differentiable=True)

    def policy_step(self, images: Tensor, proposals: Proposals, prompts: Sequence[str], edit_text: Tensor,
                    source_text: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        """One gradient estimate for AnchorNet, by ``gradient``: ``reinforce_step`` or ``soft_mask_step``."""
        step = self.reinforce_step if self.gradient == "reinforce" else self.soft_mask_step
        return step(images, proposals, prompts, edit_text, source_text, generator)

    def soft_mask_step(self, images: Tensor, proposals: Proposals, prompts: Sequence[str], edit_text: Tensor,
                       source_text: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        """One pathwise estimate: inpaint each anchor once under its expected box, backpropagate the reward.

        Returns:
            ``(loss with grad for AnchorNet, statistics)`` as ``reinforce_step``'s, with one candidate per anchor:
            ``candidates`` (B, P, 3, H, W) are the soft composites, ``boxes`` (B, P, 4) each anchor's most likely
            box, ``rewards`` (B, P).
        """
        batch, anchors, sizes = proposals.boxes.shape[:3]
        size = tuple(images.shape[-2:])
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.enable_grad():
            logits = self.size_logits(proposals)  # (B * P, S)
            probabilities = logits.softmax(-1)
            masks = box_masks(proposals.boxes, proposals.grid, size).reshape(batch * anchors, sizes, *size)
            soft = expected_mask(probabilities, masks.to(probabilities.device))  # (B * P, H, W)
            repeated = images[:, None].expand(batch, anchors, *images.shape[1:]).flatten(0, 1)
            texts = [self.prompt(prompt) for prompt in prompts for _ in range(anchors)]
            candidates = soft_mask_inpaint(self.sd, repeated, soft, texts, steps=self.inpainting_steps,
                                           guidance_scale=self.guidance_scale, seed=seed,
                                           backprop_steps=self.backprop_steps)
            candidates = candidates.to(images.device).reshape(batch, anchors, *images.shape[1:])
            scored = self.soft_rewards(images, candidates, edit_text, source_text, generator)
            scored = self.with_area(scored, soft.reshape(batch, anchors, -1).float().mean(-1).to(candidates.device))
            loss = -scored["reward"].mean()
        with torch.no_grad():
            likely = probabilities.detach().argmax(-1)[:, None, None].expand(-1, 1, 4)
            boxes = proposals.boxes.reshape(batch * anchors, sizes, 4).gather(1, likely).reshape(batch, anchors, 4)
        return loss, step_statistics(logits, scored, candidates, boxes, proposals.grid)

    def reinforce_step(self, images: Tensor, proposals: Proposals, prompts: Sequence[str], edit_text: Tensor,
                       source_text: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        """One REINFORCE estimate: draw ``draws`` sizes per anchor, inpaint them all in one call, score them.

        Returns:
            ``(surrogate loss with grad for AnchorNet, statistics)``; the statistics hold the mean ``reward``,
            ``clip``, ``directional``, ``structure`` and policy ``entropy`` as floats, and the ``candidates``
            (B, P * K, 3, H, W) with their ``boxes`` (B, P * K, 4) and ``rewards`` (B, P * K).
        """
        batch, anchors, sizes = proposals.boxes.shape[:3]
        with torch.enable_grad():
            logits = self.size_logits(proposals)  # (B * P, S)
            drawn = draw_sizes(logits, self.draws, generator)  # (B * P, K)
            log_probs = torch.log_softmax(logits, dim=-1).gather(1, drawn)
        boxes = proposals.boxes.reshape(batch * anchors, sizes, 4).gather(
            1, drawn[..., None].expand(-1, -1, 4)).reshape(batch, anchors * self.draws, 4)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        candidates, _ = self.inpaint_boxes(images, boxes, prompts, proposals.grid, seed)
        scored = self.rewards(images, candidates, edit_text, source_text, generator, boxes, proposals.grid)
        rewards = scored["reward"].reshape(batch * anchors, self.draws)
        with torch.enable_grad():
            loss = reinforce_loss(log_probs, rewards)
        return loss, step_statistics(logits, scored, candidates, boxes, proposals.grid)

    def optimise(self, images: Tensor, proposals: Proposals, prompts: Sequence[str], edit_text: Tensor,
                 source_text: Tensor, generator: torch.Generator,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, float]]:
        """``optimisation_steps`` Adam updates of AnchorNet along ``policy_step``'s estimate; returns the
        per-step scalar statistics. ``callback`` gets each step's full statistics (with the candidates)."""
        history: list[dict[str, float]] = []
        if self.optimisation_steps == 0:
            return history
        optimiser = torch.optim.Adam(self.anchor_net.parameters(), lr=self.learning_rate, betas=self.betas,
                                     weight_decay=self.weight_decay)
        for step in range(self.optimisation_steps):
            loss, stats = self.policy_step(images, proposals, prompts, edit_text, source_text, generator)
            with torch.enable_grad():
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
            optimiser.step()
            stats["step"] = step
            history.append({k: v for k, v in stats.items() if isinstance(v, (int, float))})
            if callback is not None:
                callback(stats)
        return history

    @torch.no_grad()
    def final_candidates(self, proposals: Proposals, generator: torch.Generator) -> Tensor:
        """(B, P, 4) boxes: each anchor's most likely size, or one draw (``final_sizes``)."""
        logits = self.size_logits(proposals)
        chosen = logits.argmax(-1, keepdim=True) if self.final_sizes == "mode" else draw_sizes(logits, 1, generator)
        batch, anchors, sizes = proposals.boxes.shape[:3]
        return proposals.boxes.reshape(batch * anchors, sizes, 4).gather(
            1, chosen[..., None].expand(-1, -1, 4)).reshape(batch, anchors, 4)

    @torch.no_grad()
    def choose(self, images: Tensor, candidates: Tensor, edit_text: Tensor, source_text: Tensor,
               generator: torch.Generator, boxes: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``(scores (B, P), chosen (B,))`` over the (B, P, 3, H, W) final candidates and their (B, P, 4) boxes, by
        ``final_choice``."""
        if self.final_choice == "reward":
            scores = self.rewards(images, candidates, edit_text, source_text, generator, boxes, grid)["reward"]
            return scores, scores.argmax(dim=1)
        embeddings = self.reward.image_embeddings(candidates)
        source = self.reward.image_embeddings(images)
        return rank_candidates(embeddings, source, edit_text, self.alpha, self.beta, self.top_k)

    def edit(self, images: Tensor, source_prompts: Sequence[str], target_prompts: Sequence[str],
             shared_state: dict[str, Tensor] | None = None,
             callback: Callable[[dict[str, Any]], None] | None = None) -> RegionEdit:
        """The whole method on a batch: a fresh AnchorNet (or ``shared_state``), optimised, then the edit.

        Runs with gradients for AnchorNet whatever the caller's grad mode, and outside inference mode (an
        evaluation loop's tensors are cloned).
        """
        with torch.inference_mode(False):
            images = images.clone()
            generator = torch.Generator().manual_seed(self.seed)
            self.fresh_policy(shared_state)
            proposals = self.propose(images)
            edit_text = self.reward.text_embeddings([self.prompt(p) for p in target_prompts])
            source_text = self.reward.text_embeddings(list(source_prompts))
            history = self.optimise(images, proposals, target_prompts, edit_text, source_text, generator, callback)
            boxes = self.final_candidates(proposals, generator)
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            candidates, masks = self.inpaint_boxes(images, boxes, target_prompts, proposals.grid, seed)
            scores, chosen = self.choose(images, candidates, edit_text, source_text, generator, boxes,
                                         proposals.grid)
            index = torch.arange(images.shape[0], device=chosen.device)
            return RegionEdit(candidates[index, chosen], masks[index, chosen], candidates, boxes, scores, chosen,
                              history)
