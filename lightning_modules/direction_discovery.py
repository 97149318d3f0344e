"""Direction discovery in h-space (Haas et al., FG 2024) as a LightningModule.

    python eval.py --config configs/hspace/shapes_pca.yaml          # collect, save, sweep
    python eval.py --config configs/hspace/shapes_supervised.yaml

``test_step`` (what ``eval.py`` runs) and ``predict_step`` take a batch of trajectories and add their h to the
statistics. The trajectories are the generator's own samples (seeds from ``datamodules.noise_seeds``), or, for
``pca`` and ``supervised``, DDIM inversions of real labelled images (``datamodules.shapes`` renders, whose exact
attributes are the labels: the second way of the paper's supervised method). Then come: a streaming per-timestep and global PCA (``method: pca``), or the per-value sums of
h for each labelled attribute (``method: supervised``, labels from ``interpedit.hspace.shapes_labels``: exact pixel
read-outs and shape templates), or the top singular vectors of the (masked) Jacobian of each sample
along its own trajectory (``method: jacobian``, block iteration, cached by everything it depends on). At the end of the epoch the statistics of every rank are merged, the
directions are saved (``out``: safetensors plus a JSON that names the method, the model, the timesteps, the h-space
place and the scale units), and sweeps of the first samples along each direction go to TensorBoard and to
``out/sweep.png``. The algorithms are in ``interpedit.hspace``; this module only runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torchvision.utils import make_grid, save_image

from interpedit.hspace.diffusion_model import HSpaceModel
from interpedit.hspace.directions_file import save_directions
from interpedit.hspace.pca import StreamingPCA
from interpedit.hspace.shapes_labels import ATTRIBUTE_VALUES, scene_attribute_labels, shapes_attribute_labels
from interpedit.hspace.supervised import explained_variance
from interpedit.hspace.trajectory import HTrajectory, apply_direction, ddim_inversion, sample_trajectory
from interpedit.user_errors import OptionError

METHODS = ("pca", "supervised", "jacobian")


class DirectionDiscoveryModule(LightningModule):
    """Collects h statistics over generated samples and saves directions (module docstring).

    Args:
        model: a ``UNet2DModel`` (``google/ddpm-ema-celebahq-256``) or a Stable Diffusion pipeline
            (``pretrained/shapes_stable_diffusion``), by hub id or folder.
        method: ``pca``, ``supervised`` or ``jacobian``.
        out: the folder the directions are saved to.
        place: ``before``, ``middle`` or ``after`` the mid block.
        num_inference_steps: steps of every trajectory (the released code uses 10).
        eta: sampling stochasticity (released: 1 for PCA and Jacobian, 0 for supervised).
        components: principal components kept.
        sketch_rows: rows of each Frequent Directions sketch (>= the sample count for an exact PCA).
        jacobian_vectors: singular vectors per step (``jacobian``; the released code takes 3).
        jacobian_steps: the step indices they are computed at (None: every step).
        mask_box: ``[x1, y1, x2, y2]`` in fractions of the output, the region the Jacobian's output is masked to
            (None: no mask).
        sweep_samples, sweep_scales, sweep_directions: the sweeps drawn at the end.
    """

    def __init__(self, model: str, method: str = "pca", out: str = "runs/hspace/directions", place: str = "after",
                 num_inference_steps: int = 10, eta: float = 1.0, components: int = 5, sketch_rows: int = 256,
                 sweep_samples: int = 4,
                 sweep_scales: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0), sweep_directions: int = 5,
                 jacobian_vectors: int = 3, jacobian_steps: list[int] | None = None,
                 mask_box: tuple[float, float, float, float] | None = None) -> None:
        super().__init__()
        if method not in METHODS:
            raise OptionError(f"DirectionDiscoveryModule.method: {method!r} is not one of {', '.join(METHODS)}")
        self.save_hyperparameters()
        self.model = HSpaceModel(model, place)
        self.method = method
        self.out = out
        self.timesteps = self.model.timesteps(num_inference_steps)
        self.eta = eta
        self.components = components
        self.sketch_rows = sketch_rows
        self._reset()

    def _reset(self) -> None:
        self.pca: StreamingPCA | None = None
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}
        self.squares: dict[str, torch.Tensor] = {}
        self.jacobians: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.sweep_trajectory: HTrajectory | None = None
        self.trajectories = "generated samples"  # what the statistics were collected over (set by the batches)

    def on_test_start(self) -> None:
        self.on_predict_start()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self.predict_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self.on_predict_epoch_end()

    def on_predict_start(self) -> None:
        self.model.unet.to(self.device)
        if self.model.vae is not None:
            self.model.vae.to(self.device)
        self.model.device = self.device
        self._reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        model = self.model
        self.trajectories = "DDIM inversions of labelled images" if "image" in batch else "generated samples"
        if "image" in batch:  # real images: invert them, and label them by their own attributes
            if self.method == "jacobian":
                raise OptionError("DirectionDiscoveryModule: method 'jacobian' follows the generator's own samples; "
                                  "use datamodules.noise_seeds.NoiseSeedsDataModule as its data")
            trajectory = ddim_inversion(model.hspace, model.schedule, model.encode(batch["image"]), self.timesteps)
        else:
            trajectory = sample_trajectory(model.hspace, model.schedule, self.timesteps, model.noise(batch["seed"]),
                                           eta=self.eta,
                                           generator=torch.Generator().manual_seed(int(batch["seed"][0])))
        hs = trajectory.hs.float().cpu()
        if self.sweep_trajectory is None:
            self.sweep_trajectory = trajectory.select(slice(0, self.hparams.sweep_samples))
        labels: dict[str, torch.Tensor] = {}
        if self.method == "jacobian":
            from interpedit.hspace.jacobian import jacobian_directions

            mask = self.output_mask(trajectory.x0.shape[1:])
            for b, seed in enumerate(batch["seed"].tolist()):
                found = jacobian_directions(model.hspace, model.schedule, trajectory.select([b]),
                                            self.hparams.jacobian_vectors, mask, self.hparams.jacobian_steps,
                                            seed=seed, cache_dir=Path(self.out).parent / f"{Path(self.out).name}-cache")
                self.jacobians.append((seed, found.vectors, found.values))
        elif self.method == "pca":
            if self.pca is None:
                self.pca = StreamingPCA(len(self.timesteps), tuple(hs.shape[2:]), ell=self.sketch_rows)
            self.pca.update(hs)
        else:
            if "image" in batch:
                labels = {k: v.cpu() for k, v in scene_attribute_labels(batch).items()}
            else:
                labels = shapes_attribute_labels(model.decode(trajectory.x0))
            for attribute, ids in labels.items():
                values = len(ATTRIBUTE_VALUES[attribute])
                if attribute not in self.sums:
                    self.sums[attribute] = torch.zeros(values, *hs.shape[0:1], *hs.shape[2:])
                    self.counts[attribute] = torch.zeros(values, dtype=torch.long)
                    self.squares[attribute] = torch.zeros(hs.shape[0], dtype=torch.float64)
                labelled = ids >= 0
                if bool(labelled.any()):
                    self.squares[attribute] += (hs[:, labelled].double() ** 2).flatten(2).sum(-1).sum(1)
                for value in range(values):
                    chosen = ids == value
                    if bool(chosen.any()):
                        self.sums[attribute][value] += hs[:, chosen].sum(1)
                        self.counts[attribute][value] += int(chosen.sum())
        first = {"seed": batch["seed"]} if "seed" in batch else {"scene_index": batch["scene_index"]}
        return {**first, **{f"label/{k}": v for k, v in labels.items()}}

    def output_mask(self, shape: tuple[int, ...]) -> torch.Tensor | None:
        """The (1, C, H, W) 0/1 mask of ``mask_box`` on the UNet's output grid, or None."""
        if self.hparams.mask_box is None:
            return None
        x1, y1, x2, y2 = self.hparams.mask_box
        channels, height, width = shape
        mask = torch.zeros(1, channels, height, width, device=self.device)
        mask[..., round(y1 * height):round(y2 * height), round(x1 * width):round(x2 * width)] = 1.0
        return mask

    # ------------------------------------------------------------------ merging, saving, sweeping
    def _merge_ranks(self) -> None:
        if self.trainer.world_size == 1 or self.method == "jacobian":  # per-sample results: each rank saves its own
            return
        if self.method == "pca":
            sketches = [self.all_gather(s.sketch.float()).flatten(0, 1) for s in self.pca.per_step]
            for sketch, gathered in zip(self.pca.per_step, sketches):
                total, count = self.all_gather(sketch.total).sum(0), int(self.all_gather(
                    torch.tensor(sketch.count, device=self.device)).sum())
                sketch.sketch = sketch.sketch[:0]
                sketch.update(gathered.double().cpu())
                sketch.total, sketch.count = total.double().cpu(), count
        else:
            for attribute in self.sums:
                self.sums[attribute] = self.all_gather(self.sums[attribute].to(self.device)).sum(0).cpu()
                self.counts[attribute] = self.all_gather(self.counts[attribute].to(self.device)).sum(0).cpu()
                self.squares[attribute] = self.all_gather(self.squares[attribute].to(self.device)).sum(0).cpu()

    def on_predict_epoch_end(self) -> None:
        self._merge_ranks()
        description: dict[str, Any] = {
            "method": self.method, "model": self.model.source, "kind": self.model.kind, "place": self.model.place,
            "timesteps": self.timesteps, "eta": self.eta,
            "trajectories": self.trajectories,
        }
        if self.method == "jacobian":
            seeds = torch.tensor([seed for seed, _, _ in self.jacobians])
            tensors = {"seeds": seeds, "vectors": torch.stack([v for _, v, _ in self.jacobians]),
                       "values": torch.stack([s for _, _, s in self.jacobians])}
            description.update(samples=len(seeds), vectors=self.hparams.jacobian_vectors,
                               steps=self.hparams.jacobian_steps, mask_box=self.hparams.mask_box,
                               scale_units="the singular value times the unit vector at each step")
            first = tensors["vectors"][0] * tensors["values"][0].view(*tensors["values"][0].shape,
                                                                     *[1] * (tensors["vectors"].ndim - 3))
            sweeps = list(first[: self.hparams.sweep_directions])
            names = [f"sample {int(seeds[0])}, singular vector {k}" for k in range(len(sweeps))]
            self.sweep_trajectory = self.sweep_trajectory.select([0]) if self.sweep_trajectory else None
            out = self.out if self.trainer.world_size == 1 else f"{self.out}-rank{self.global_rank}"
            save_directions(out, tensors, description)
            if self.trainer.is_global_zero:
                self._sweep(sweeps, names)
            return
        if self.method == "pca":
            directions = self.pca.per_timestep(self.components)
            tensors = {"directions": directions.directions, "std": directions.std}
            overall = self.pca.global_directions(self.components)
            tensors.update({"global_directions": overall.directions, "global_std": overall.std})
            description.update(samples=self.pca.count, components=self.components,
                               scale_units="one standard deviation along the component at each step")
            sweeps = [directions.offset(k) for k in range(min(self.components, self.hparams.sweep_directions))]
            names = [f"pc{k}" for k in range(len(sweeps))]
        else:
            tensors, attributes, explained = {}, {}, {}
            for attribute, sums in self.sums.items():
                counts = self.counts[attribute]
                means = sums / counts.clamp(min=1).view(-1, *[1] * (sums.ndim - 1))
                tensors[f"mean.{attribute}"], tensors[f"count.{attribute}"] = means, counts
                attributes[attribute] = list(ATTRIBUTE_VALUES[attribute])
                if int((counts > 0).sum()) >= 2:
                    ratio, chance = explained_variance(sums, counts, self.squares[attribute])
                    tensors[f"explained.{attribute}"] = ratio
                    explained[attribute] = {"mean_over_steps": round(float(ratio.mean()), 4),
                                            "per_step": [round(float(r), 4) for r in ratio], "chance": round(chance, 4)}
            description.update(attributes=attributes,
                               counts={a: self.counts[a].tolist() for a in self.counts},
                               explained_variance=explained,
                               scale_units="the difference of two values' mean h")
            sweeps, names = [], []
            colour_means, colour_counts = tensors.get("mean.colour"), tensors.get("count.colour")
            if colour_means is not None:
                present = torch.nonzero(colour_counts > 0).flatten().tolist()
                for source, target in zip(present, present[1:]):
                    sweeps.append(colour_means[target] - colour_means[source])
                    names.append(f"{ATTRIBUTE_VALUES['colour'][source]}->{ATTRIBUTE_VALUES['colour'][target]}")
                    if len(sweeps) == self.hparams.sweep_directions:
                        break
        if self.trainer.is_global_zero:
            save_directions(self.out, tensors, description)
            self._sweep(sweeps, names)

    def _sweep(self, directions: list[torch.Tensor], names: list[str]) -> None:
        if not directions or self.sweep_trajectory is None:
            return
        model, trajectory = self.model, self.sweep_trajectory
        rows = []
        for direction in directions:
            edited = apply_direction(model.hspace, model.schedule, trajectory, direction.to(self.device),
                                     list(self.hparams.sweep_scales))  # (S, B, ...)
            flat = model.decode(edited.flatten(0, 1))
            images = flat.reshape(edited.shape[0], edited.shape[1], *flat.shape[1:])
            rows.append(images.transpose(0, 1).flatten(0, 1).cpu())  # sample-major, scales along a row
        grid = make_grid(torch.cat(rows), nrow=len(self.hparams.sweep_scales))
        save_image(grid, Path(self.out) / "sweep.png")
        if self.logger is not None and hasattr(self.logger.experiment, "add_image"):
            self.logger.experiment.add_image(f"hspace/{self.method}_sweep", grid, 0)
            self.logger.experiment.add_text(f"hspace/{self.method}_sweep_rows", ", ".join(
                f"{name} (samples {', '.join(str(i) for i in range(trajectory.batch_size))})" for name in names), 0)
