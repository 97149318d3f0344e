"""LightningDataModule over a folder of real images with region masks (e.g. SAM-segmented, unpaired)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from interpedit.data.paired_views import PairedViews
from interpedit.data.segmented_folder import EpochIndexSampler, SegmentedImageFolder
from interpedit.masks.filtering import MaskFilter


class SegmentedFolderDataModule(LightningDataModule):
    """Batches of images, region masks and boxes (``interpedit.data`` convention) from a segmented folder.

    The folder is indexed once in ``setup``; every cheap check runs then, so a bad file stops the run
    before the first step (or is left out with ``on_error: skip``). ``python -m datamodules.check ROOT``
    checks a folder more thoroughly ahead of a long run.

    Args:
        root: dataset folder holding ``images/`` and the masks.
        mask_format: how masks are stored: sa1b, coco, coco_panoptic, png, or auto to detect it.
        images_dir: images folder, relative to root.
        masks_dir: folder of per-image SA-1B JSON or PNG label maps, relative to root.
        coco_annotations: COCO instances JSON, relative to root.
        panoptic_json: COCO panoptic JSON, relative to root.
        panoptic_dir: folder of COCO panoptic PNGs, relative to root.
        include_crowd: keep COCO crowd annotations (one mask over many objects) as regions.
        resolution: training resolution in pixels (square samples; shorter side before cropping).
        region_budget: region slots K per sample; regions are drawn by area when there are more.
        min_mask_area: masks smaller than this many pixels (at the training resolution) are dropped.
        min_mask_fraction: masks smaller than this fraction of the image are dropped.
        max_mask_coverage: masks covering more than this fraction of the image are dropped.
        hole_area: holes smaller than this many pixels are filled (0 turns it off).
        island_area: islands smaller than this many pixels are removed (0 turns it off).
        max_regions: keep at most this many of the largest masks before sampling (None keeps all).
        paired_views: add independently augmented source_* and target_* views of each image.
        crop_scale: range of a view's crop area as a fraction of the image.
        crop_ratio: range of a view's crop aspect ratio (width / height).
        flip_probability: probability of a horizontal flip in each view.
        rotation_degrees: views are rotated by up to this many degrees either way (0 turns it off).
        min_region_pixels: a region with fewer visible pixels in a view is marked absent there.
        min_region_fraction: a region with less than this fraction of itself visible in a view is absent there.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        val_fraction: fraction of root's images held out for validation (ignored when val_root is set).
        val_root: separate validation folder with the same layout (None splits root instead).
        on_error: raise stops at the first bad file; skip leaves bad images out and logs them.
        seed: seed of the split, the shuffling, the region choice and the view augmentations.
    """

    def __init__(
        self,
        root: str = "data/segmented",
        mask_format: Literal["auto", "sa1b", "coco", "coco_panoptic", "png"] = "auto",
        images_dir: str = "images",
        masks_dir: str = "masks",
        coco_annotations: str = "annotations.json",
        panoptic_json: str = "panoptic.json",
        panoptic_dir: str = "panoptic",
        include_crowd: bool = False,
        resolution: int = 256,
        region_budget: int = 16,
        min_mask_area: int = 16,
        min_mask_fraction: float = 0.0,
        max_mask_coverage: float = 0.9,
        hole_area: int = 0,
        island_area: int = 0,
        max_regions: int | None = None,
        paired_views: bool = False,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (0.75, 4.0 / 3.0),
        flip_probability: float = 0.5,
        rotation_degrees: float = 0.0,
        min_region_pixels: int = 1,
        min_region_fraction: float = 0.0,
        batch_size: int = 8,
        num_workers: int = 2,
        val_fraction: float = 0.05,
        val_root: str | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.save_hyperparameters()
        self.train_set: SegmentedImageFolder | None = None
        self.val_set: SegmentedImageFolder | None = None

    def _dataset(self, root: str) -> SegmentedImageFolder:
        h = self.hparams
        mask_filter = MaskFilter(
            min_area=h.min_mask_area,
            min_area_fraction=h.min_mask_fraction,
            max_coverage=h.max_mask_coverage,
            hole_area=h.hole_area,
            island_area=h.island_area,
            top_k=h.max_regions,
        )
        views = None
        if h.paired_views:
            views = PairedViews(
                h.resolution,
                scale=tuple(h.crop_scale),
                ratio=tuple(h.crop_ratio),
                flip_probability=h.flip_probability,
                degrees=h.rotation_degrees,
                min_region_pixels=h.min_region_pixels,
                min_region_fraction=h.min_region_fraction,
            )
        return SegmentedImageFolder(
            root,
            mask_format=h.mask_format,
            images_dir=h.images_dir,
            masks_dir=h.masks_dir,
            coco_annotations=h.coco_annotations,
            panoptic_json=h.panoptic_json,
            panoptic_dir=h.panoptic_dir,
            include_crowd=h.include_crowd,
            resolution=h.resolution,
            region_budget=h.region_budget,
            mask_filter=mask_filter,
            paired_views=views,
            on_error=h.on_error,
            seed=h.seed,
        )

    def setup(self, stage: str | None = None) -> None:
        """Index the folder(s) and split train/val (a seeded permutation of the sorted index)."""
        if self.train_set is not None:
            return
        h = self.hparams
        full = self._dataset(h.root)
        if h.val_root is not None:
            self.train_set, self.val_set = full, self._dataset(h.val_root)
            return
        n_val = round(len(full) * h.val_fraction)
        if h.val_fraction > 0 and n_val == 0:
            n_val = 1
        if n_val >= len(full):
            raise ValueError(
                f"{h.root}: {len(full)} usable images are too few for val_fraction {h.val_fraction}; "
                "lower it or set val_root"
            )
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(h.seed)).tolist()
        self.val_set = full.select(sorted(order[:n_val])) if n_val else None
        self.train_set = full.select(sorted(order[n_val:]))

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError("SegmentedFolderDataModule.setup() must run before train_dataloader()")
        distributed = dist.is_available() and dist.is_initialized()
        sampler = EpochIndexSampler(
            self.train_set,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=True,
            seed=self.hparams.seed,
        )
        return DataLoader(
            self.train_set,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        # Plain indices: validation keeps epoch 0's regions and views, so its numbers compare across epochs.
        return DataLoader(
            self.val_set, batch_size=self.hparams.batch_size, shuffle=False, num_workers=self.hparams.num_workers
        )
