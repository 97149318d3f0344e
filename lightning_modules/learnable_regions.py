"""The AnchorNet per-image optimiser: Learnable Regions as a LightningModule.

    python train.py fit --config configs/learnable_regions/images_json.yaml               # one shared AnchorNet
    python eval.py --config configs/learnable_regions/images_json.yaml --ckpt_path RUN/checkpoints/last.ckpt

- ``test_step`` / ``predict_step``: for each batch, a fresh AnchorNet (the seeded initial weights, or the shared
  one's after ``fit`` or from ``--ckpt_path`` when ``start_from_shared``) is optimised for ``optimisation_steps``
  REINFORCE steps on those images, then the final edit is made. The optimisation is manual, with gradients enabled
  inside the step; the configs set ``trainer.inference_mode: false`` (``LearnableRegions.edit`` also leaves
  inference mode itself). It returns an ``EditOutput``, so ``callbacks.edit_metrics.EditMetrics`` measures it.
- ``training_step``: one REINFORCE step of the shared AnchorNet over a batch of edit requests (the released JSON
  mode, which meant to train one AnchorNet over an ``images.json`` folder), with manual optimisation.
- TensorBoard: per optimisation step the reward, the three losses and the policy's entropy (per logged batch, and
  their mean over the test epoch); the anchors' boxes drawn on the image, the candidates and the chosen edit.

The algorithm is ``interpedit.learnable_regions.LearnableRegions``; this module only runs and logs it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torchvision.utils import draw_bounding_boxes, make_grid

from interpedit.diffusion.unet_cost import count_unet_calls
from interpedit.editing import EditOutput
from interpedit.learnable_regions.learnable_regions import LearnableRegions
from interpedit.metrics.clip_similarity import to_uint8
from interpedit.metrics.edit_cost import per_image_cost

HISTORY_KEYS = ("reward", "clip", "directional", "structure", "area", "entropy")


def boxes_on_images(images: torch.Tensor, boxes: torch.Tensor, grid: tuple[int, int],
                    chosen: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 3, H, W) images with their (B, P, 4) grid-unit boxes drawn (the chosen one red, the others yellow)."""
    height, width = images.shape[-2:]
    rows, cols = grid
    pixels = (boxes.float().cpu() * torch.tensor([width / cols, height / rows] * 2)).round()
    drawn = []
    for b, image in enumerate(to_uint8(images.float().cpu())):
        colours = ["yellow"] * pixels.shape[1]
        if chosen is not None:
            colours[int(chosen[b])] = "red"
        drawn.append(draw_bounding_boxes(image, pixels[b], colors=colours, width=1).float() / 255.0)
    return torch.stack(drawn)


class LearnableRegionsModule(LightningModule):
    """Per-image AnchorNet optimisation and the shared AnchorNet's training (module docstring).

    Args:
        inpainting, backbone, clip: as ``LearnableRegions``.
        start_from_shared: start each test/predict batch from the shared AnchorNet (trained by ``fit``, or loaded
            with ``--ckpt_path``) rather than from the seeded initial weights.
        log_batches: test/predict batches whose curves and images are logged one by one (the epoch means are
            always logged).
        **kwargs: the rest of ``LearnableRegions``' arguments.
    """

    def __init__(self, inpainting: str, backbone: str, clip: str, start_from_shared: bool = False,
                 log_batches: int = 4, **kwargs: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.method = LearnableRegions(inpainting, backbone, clip, **kwargs)
        self.automatic_optimization = False
        self.start_from_shared = start_from_shared
        self.log_batches = log_batches
        self.shared_anchor_net = {k: v.clone() for k, v in self.method.anchor_net.state_dict().items()}
        self._curves: dict[str, defaultdict[tuple[str, int], list[float]]] = {}

    # ------------------------------------------------------------------ the shared AnchorNet
    def configure_optimizers(self) -> torch.optim.Optimizer:
        method = self.method
        return torch.optim.Adam(method.anchor_net.parameters(), lr=method.learning_rate, betas=method.betas,
                                weight_decay=method.weight_decay)

    def on_fit_start(self) -> None:
        self.method.fresh_policy(self.shared_anchor_net)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        method = self.method
        images = batch["source_image"]
        generator = torch.Generator().manual_seed(method.seed * 1_000_003 + self.global_step)
        proposals = method.propose(images)
        edit_text = method.reward.text_embeddings([method.prompt(p) for p in batch["target_prompt"]])
        source_text = method.reward.text_embeddings(list(batch["source_prompt"]))
        loss, stats = method.policy_step(images, proposals, list(batch["target_prompt"]), edit_text, source_text,
                                         generator)
        optimiser = self.optimizers()
        optimiser.zero_grad()
        self.manual_backward(loss)
        optimiser.step()
        size = images.shape[0]
        for key in HISTORY_KEYS:
            self.log(f"train/{key}", stats[key], prog_bar=key == "reward", batch_size=size)
        self.log("train/surrogate", loss.detach(), batch_size=size)
        return loss.detach()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.shared_anchor_net = {k: v.detach().clone() for k, v in self.method.anchor_net.state_dict().items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The weights the shared AnchorNet has, not the last per-image optimisation's.
        state = checkpoint["state_dict"]
        for key, value in self.shared_anchor_net.items():
            state[f"method.anchor_net.{key}"] = value

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        prefix = "method.anchor_net."
        self.shared_anchor_net = {k[len(prefix):]: v.clone() for k, v in checkpoint["state_dict"].items()
                                  if k.startswith(prefix)}

    # ------------------------------------------------------------------ per-image optimisation
    def edit(self, batch: dict[str, Any], batch_idx: int, stage: str) -> EditOutput:
        method = self.method
        images = batch["source_image"]
        curves = self._curves.setdefault(stage, defaultdict(list))
        logged = batch_idx < self.log_batches and self.logger is not None
        name = f"{stage}/optimisation/batch{batch_idx:04d}"

        def record(stats: dict[str, Any]) -> None:
            for key in HISTORY_KEYS:
                curves[key, stats["step"]].append(stats[key])
                if logged:
                    self.logger.experiment.add_scalar(f"{name}/{key}", stats[key], stats["step"])

        shared = self.shared_anchor_net if self.start_from_shared else None
        with count_unet_calls(method) as cost:
            result = method.edit(images, list(batch["source_prompt"]), list(batch["target_prompt"]), shared, record)
        if logged:
            experiment = self.logger.experiment
            experiment.add_image(f"{name}/boxes", make_grid(boxes_on_images(images, result.candidate_boxes,
                                                                             method.backbone.grid, result.chosen)),
                                 self.global_step)
            experiment.add_image(f"{name}/candidates", make_grid(result.candidates.flatten(0, 1).float().cpu(),
                                                                 nrow=result.candidates.shape[1]), self.global_step)
            experiment.add_image(f"{name}/chosen", make_grid(torch.cat([images.float().cpu(),
                                                                        result.edited.float().cpu()]),
                                                             nrow=images.shape[0]), self.global_step)
        return {"edited": result.edited.to(images.device), "edit_region": result.region.to(images.device),
                "cost": per_image_cost(cost, images.shape[0])}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> EditOutput:
        return self.edit(batch, batch_idx, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> EditOutput:
        return self.edit(batch, batch_idx, "predict")

    def on_test_epoch_end(self) -> None:
        self._log_mean_curve("test")

    def on_predict_epoch_end(self) -> None:
        self._log_mean_curve("predict")

    def _log_mean_curve(self, stage: str) -> None:
        curves = self._curves.pop(stage, {})
        if self.logger is None:
            return
        for (key, step), values in sorted(curves.items()):
            self.logger.experiment.add_scalar(f"{stage}/optimisation/mean_{key}", sum(values) / len(values), step)

    def log_images(self, batch: dict[str, Any], output: EditOutput) -> dict[str, torch.Tensor]:
        """For ``callbacks.image_grid.ImageGrid``: source | edit | the chosen box."""
        return {"source": batch["source_image"], "edited": output["edited"],
                "chosen box": output["edit_region"][:, None].float().expand(-1, 3, -1, -1)}
