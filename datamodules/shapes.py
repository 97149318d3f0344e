"""The shapes world as a LightningDataModule, and the benchmark exporter's command line.

Scene ``index`` of a split is drawn from ``np.random.SeedSequence([split_id, seed, index])`` (train 0, val 1,
test 2; exported benchmarks use 3), so splits are disjoint by construction and every item is a pure function of
its index: epochs are reproducible, and worker processes give the same batches as the main process.

Export a benchmark (PIE-Bench layout, see ``interpedit.shapes.export``)::

    python -m datamodules.shapes export --out DIR --num-scenes N --seed S [--resolution R] [--edits move,remove]
        [--backgrounds solid,gradient]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from interpedit.data.distributed_index_sampler import DistributedIndexSampler, current_replica
from interpedit.data.paired_views import PairedViews
from interpedit.data.regions import boxes_from_masks, pad_regions, sample_regions_by_area
from interpedit.shapes.attributes import BACKGROUND_KINDS, COLOURS, SHAPES, SIZES
from interpedit.shapes.edits import EDIT_TYPES
from interpedit.shapes.export import EXPORT_RESOLUTIONS, export_benchmark, validate_export_arguments
from interpedit.shapes.render import render
from interpedit.shapes.scene import SceneConfig, sample_scene
from interpedit.user_errors import OptionError, run_command

SceneSampler = DistributedIndexSampler
"""The shapes splits' sampler: ``DistributedIndexSampler`` under its earlier name."""

SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
"""First SeedSequence word of each split's scenes."""


class ShapesDataset(Dataset):
    """Scenes of one split, rendered on the fly.

    An item is a dict (``K = region_budget``, ``H = W = resolution``):

    - ``image``: (3, H, W) float32 in [0, 1].
    - ``masks``: (K, H, W) bool label masks: objects in drawing order, then the background if
      ``include_background_region``, then empty padding.
    - ``region_valid``: (K,) bool, True where the slot's mask is non-empty.
    - ``boxes``: (K, 4) float32 ``x0, y0, x1, y1`` pixels, exclusive end, zeros where invalid.
    - ``attributes``: dict of (K,) long class ids (indices into ``SHAPES``, ``COLOURS``, ``SIZES``) for ``shape``,
      ``colour`` and ``size``; -1 on the background slot and on invalid slots.
    - ``position``: (K, 2) float32 normalised centre ``x, y``; ``rotation``: (K,) float32 radians; zeros where
      there is no object.
    - ``caption``: str, naming every object of the scene.
    - ``scene_index``: () long.

    Args:
        split: ``train``, ``val`` or ``test``.
        num_scenes: number of scenes; None for an endless split (any index >= 0 is a scene).
        seed: added to the seed namespace, so another seed gives other scenes.
        resolution: image side in pixels.
        scene_config: what scenes may contain.
        region_budget: slots K; None for ``max_objects`` (+1 with the background region). With fewer slots than
            objects, objects are chosen by area (``sample_regions_by_area``, seeded by the scene).
        include_background_region: add the background as a region after the objects.
        supersample: anti-aliasing samples per pixel side.
        paired_views: when given, items also carry a source and a target view of the scene under independent
            augmentations (``source_*``/``target_*`` keys, see ``interpedit.data.PairedViews``), drawn from a
            generator seeded by the scene, so they are reproducible.
    """

    def __init__(
        self,
        split: str = "train",
        num_scenes: int | None = 512,
        seed: int = 0,
        resolution: int = 32,
        scene_config: SceneConfig | None = None,
        region_budget: int | None = None,
        include_background_region: bool = False,
        supersample: int = 4,
        paired_views: PairedViews | None = None,
    ) -> None:
        if split not in SPLIT_IDS:
            raise OptionError(f"ShapesDataset.split: unknown split {split!r}; expected one of {', '.join(SPLIT_IDS)}")
        if num_scenes is not None and num_scenes < 0:
            raise OptionError(f"ShapesDataset.num_scenes: must be >= 0 or None (endless), got {num_scenes}")
        self.split = split
        self.num_scenes = num_scenes
        self.seed = seed
        self.resolution = resolution
        self.scene_config = scene_config or SceneConfig()
        self.include_background_region = include_background_region
        background_slots = int(include_background_region)
        self.region_budget = (
            self.scene_config.max_objects + background_slots if region_budget is None else region_budget
        )
        if self.region_budget < background_slots + 1:
            raise ValueError(
                f"ShapesDataset.region_budget: {self.region_budget} leaves no slot for objects"
                + (" besides the background" if background_slots else "")
            )
        self.supersample = supersample
        self.paired_views = paired_views

    def __len__(self) -> int:
        if self.num_scenes is None:
            raise TypeError("an endless ShapesDataset has no length; iterate it with a SceneSampler")
        return self.num_scenes

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if index < 0 or (self.num_scenes is not None and index >= self.num_scenes):
            raise IndexError(f"ShapesDataset({self.split}): scene {index} is outside [0, {self.num_scenes})")
        rng = np.random.default_rng(np.random.SeedSequence([SPLIT_IDS[self.split], self.seed, index]))
        scene = sample_scene(rng, self.scene_config)
        rendered = render(scene, self.resolution, self.supersample)
        object_masks = torch.from_numpy(rendered.masks)
        object_slots = self.region_budget - int(self.include_background_region)
        if len(scene.objects) > object_slots:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            chosen = sample_regions_by_area(object_masks, object_slots, generator).tolist()
        else:
            chosen = list(range(len(scene.objects)))
        regions = object_masks[chosen]
        if self.include_background_region:
            regions = torch.cat([regions, torch.from_numpy(rendered.labels == 0)[None]])
        masks, valid = pad_regions(regions, self.region_budget)

        shape = torch.full((self.region_budget,), -1, dtype=torch.long)
        colour, size = shape.clone(), shape.clone()
        position = torch.zeros(self.region_budget, 2)
        rotation = torch.zeros(self.region_budget)
        for slot, object_index in enumerate(chosen):
            obj = scene.objects[object_index]
            position[slot] = torch.tensor(obj.position)
            rotation[slot] = obj.rotation
            if valid[slot]:
                shape[slot] = SHAPES.index(obj.shape)
                colour[slot] = COLOURS.index(obj.colour)
                size[slot] = SIZES.index(obj.size)
        image = torch.from_numpy(rendered.image).permute(2, 0, 1).float() / 255.0
        views = {}
        if self.paired_views is not None:
            views = self.paired_views(
                image, masks, valid, generator=torch.Generator().manual_seed(int(rng.integers(2**62)))
            )
        return {
            **views,
            "image": image,
            "masks": masks,
            "region_valid": valid,
            "boxes": boxes_from_masks(masks),
            "attributes": {"shape": shape, "colour": colour, "size": size},
            "position": position,
            "rotation": rotation,
            "caption": rendered.caption,
            "scene_index": torch.tensor(index, dtype=torch.long),
        }


class ShapesDataModule(pl.LightningDataModule):
    """Procedural shapes scenes with exact masks, attributes and captions (the embedded default dataset).

    Args:
        resolution: image side in pixels.
        min_objects: fewest objects per scene.
        max_objects: most objects per scene.
        backgrounds: background kinds to draw from (``solid``, ``gradient``, ``noise``).
        region_budget: region slots K per image; None for ``max_objects`` (+1 with the background region).
        include_background_region: add the background as a region slot after the objects.
        train_scenes: training scenes; None for endless training (``scenes_per_epoch`` new scenes every epoch).
        scenes_per_epoch: scenes per epoch of endless training.
        val_scenes: validation scenes.
        test_scenes: test scenes.
        batch_size: scenes per batch on each rank.
        num_workers: DataLoader worker processes.
        seed: data seed; scene ``i`` of a split comes from ``SeedSequence([split_id, seed, i])``.
        paired_views: add a source and a target view of every scene (unpaired training of the region autoencoder).
        crop_scale: range of the random crop's area, as a fraction of the scene, for paired views.
        crop_ratio: range of the random crop's aspect ratio for paired views.
        flip_probability: probability of a horizontal flip in each view.
        rotation_degrees: views are rotated by up to this many degrees (0: no rotation, no resampling blur).
    """

    def __init__(
        self,
        resolution: int = 32,
        min_objects: int = 1,
        max_objects: int = 4,
        backgrounds: tuple[str, ...] = BACKGROUND_KINDS,
        region_budget: int | None = None,
        include_background_region: bool = False,
        train_scenes: int | None = 50_000,
        scenes_per_epoch: int = 10_000,
        val_scenes: int = 512,
        test_scenes: int = 512,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        paired_views: bool = False,
        crop_scale: tuple[float, float] = (0.6, 1.0),
        crop_ratio: tuple[float, float] = (0.9, 1.1),
        flip_probability: float = 0.5,
        rotation_degrees: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if resolution < 1:
            raise OptionError(f"ShapesDataModule.resolution: must be positive, got {resolution}")
        for name, value in (("scenes_per_epoch", scenes_per_epoch), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"ShapesDataModule.{name}: must be at least 1, got {value}")
        for name, value in (("train_scenes", train_scenes), ("val_scenes", val_scenes), ("test_scenes", test_scenes)):
            if value is not None and value < 0:
                raise ValueError(f"ShapesDataModule.{name}: must be >= 0, got {value}")
        if num_workers < 0:
            raise OptionError(f"ShapesDataModule.num_workers: must be >= 0, got {num_workers}")
        self.scene_config = SceneConfig(
            min_objects=min_objects, max_objects=max_objects, backgrounds=tuple(backgrounds)
        )
        self.resolution = resolution
        self.region_budget = region_budget
        self.include_background_region = include_background_region
        self.train_scenes = train_scenes
        self.scenes_per_epoch = scenes_per_epoch
        self.val_scenes = val_scenes
        self.test_scenes = test_scenes
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.paired_views = (
            PairedViews(
                resolution,
                scale=tuple(crop_scale),
                ratio=tuple(crop_ratio),
                flip_probability=flip_probability,
                degrees=rotation_degrees,
            )
            if paired_views
            else None
        )

    def dataset(self, split: str) -> ShapesDataset:
        """The dataset of ``split`` (``train``, ``val`` or ``test``)."""
        num_scenes = {"train": self.train_scenes, "val": self.val_scenes, "test": self.test_scenes}[split]
        return ShapesDataset(
            split=split,
            num_scenes=num_scenes,
            seed=self.seed,
            resolution=self.resolution,
            scene_config=self.scene_config,
            region_budget=self.region_budget,
            include_background_region=self.include_background_region,
            paired_views=self.paired_views,
        )

    def train_dataloader(self) -> DataLoader:
        endless = self.train_scenes is None
        sampler = self._sampler(
            self.scenes_per_epoch if endless else self.train_scenes, shuffle=True, endless=endless, equal_shards=True
        )
        return self._loader(self.dataset("train"), sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), self._evaluation_sampler(self.val_scenes))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"), self._evaluation_sampler(self.test_scenes))

    def _evaluation_sampler(self, num_scenes: int) -> SceneSampler:
        # Whole batches per rank: batches are the same in one process and in many (see SceneSampler.block_size).
        return self._sampler(num_scenes, shuffle=False, equal_shards=False, block_size=self.batch_size)

    def replica(self) -> tuple[int, int]:
        """``(rank, world_size)``: from the attached trainer, else from torch.distributed, else ``(0, 1)``."""
        return current_replica(self.trainer)

    def _sampler(
        self, num_scenes: int, *, shuffle: bool, equal_shards: bool, endless: bool = False, block_size: int = 1
    ) -> SceneSampler:
        rank, world_size = self.replica()
        return SceneSampler(
            num_scenes,
            num_replicas=world_size,
            rank=rank,
            shuffle=shuffle,
            seed=self.seed,
            endless=endless,
            equal_shards=equal_shards,
            block_size=block_size,
        )

    def _loader(self, dataset: ShapesDataset, sampler: SceneSampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``export`` writes a benchmark folder."""
    parser = argparse.ArgumentParser(prog="python -m datamodules.shapes", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write edits with exact ground truth in PIE-Bench's layout")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--num-scenes", type=int, required=True, help="number of edits (one scene each)")
    export.add_argument(
        "--seed", type=int, required=True, help="benchmark seed (scenes use SeedSequence([3, seed, i]))"
    )
    export.add_argument(
        "--resolution", type=int, default=32, choices=EXPORT_RESOLUTIONS, help="image side in pixels (default 32)"
    )
    export.add_argument(
        "--edits",
        default=",".join(EDIT_TYPES),
        help=f"comma-separated edit types, cycled over the scenes (default all: {','.join(EDIT_TYPES)})",
    )
    export.add_argument(
        "--backgrounds",
        default=",".join(BACKGROUND_KINDS),
        help=f"comma-separated background kinds to draw from (default all: {','.join(BACKGROUND_KINDS)})",
    )
    export.add_argument("--min-objects", type=int, default=2, help="fewest objects per scene (default 2)")
    export.add_argument("--max-objects", type=int, default=4, help="most objects per scene (default 4)")
    args = parser.parse_args(argv)

    edits = tuple(name.strip() for name in args.edits.split(",") if name.strip())
    backgrounds = tuple(name.strip() for name in args.backgrounds.split(",") if name.strip())
    try:
        validate_export_arguments(args.num_scenes, args.resolution, edits, backgrounds)
        config = SceneConfig(min_objects=args.min_objects, max_objects=args.max_objects, backgrounds=backgrounds)
    except ValueError as error:
        export.error(str(error))
    counts = export_benchmark(
        args.out,
        args.num_scenes,
        seed=args.seed,
        resolution=args.resolution,
        edits=edits,
        config=config,
        progress=print,
    )
    summary = ", ".join(f"{name} {count}" for name, count in counts.items())
    print(
        f"wrote {sum(counts.values())} edits ({summary}) at {args.resolution}px to {args.out}/mapping_file.json; "
        f"source images in {args.out}/annotation_images, targets in {args.out}/targets, "
        f"label maps in {args.out}/labels"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main))
