"""Edit benchmarks (PIE-Bench, Learnable Regions, shapes exports) as a LightningDataModule for test and predict.

Every sample is seen exactly once per run: under DDP the samples are sharded in blocks of ``batch_size`` with no
padding and no repeats (ranks may differ by one batch), so per-sample outputs can be written by ``image_id`` or
``index`` and gathered without deduplication.

Batch keys (B = batch size; H x W the images' size, or ``resolution`` x ``resolution``):

- ``image_id``: list[str] entry keys; ``index``: (B,) long positions in the benchmark after ``edit_types`` and
  ``limit``, for writing outputs in order.
- ``source_image``: (B, 3, H, W) float32 in [0, 1].
- ``source_prompt``, ``target_prompt`` (brackets stripped), ``source_prompt_bracketed``,
  ``target_prompt_bracketed``, ``instruction``, ``blended_word``: list[str] (``""`` when the format lacks them).
- ``edit_type_id``, ``edit_type``: list[str], e.g. ``"6"``, ``"change attribute color"``
  (``interpedit.benchmarks.edit_types``; Learnable Regions entries are ``"lr"``).
- ``edit_mask``: (B, H, W) bool region to edit (all False when absent); ``has_mask``: (B,) bool.
- ``target_image``: (B, 3, H, W) float32 exact edit (zeros when absent); ``has_target``: (B,) bool.
- Shapes ground truth of the primary edited object (False/zeros/-1 unless ``has_target``):
  ``source_object_mask``, ``target_object_mask`` (label maps), ``source_object_footprint``,
  ``target_object_footprint``: (B, H, W) bool; ``has_source_object`` (False for add), ``has_target_object``
  (False for remove): (B,) bool; ``requested_colour``, ``requested_shape``: (B,) long class ids of the object
  after the edit, -1 when there is none; ``target_object``: dict of ``position`` (B, 2), ``radius`` (B,),
  ``rotation`` (B,) float32 and ``shape``, ``colour``, ``size`` (B,) long; ``target_scene``: list[str], the whole
  true target scene as JSON (``Scene.to_dict``; ``""`` without ground truth); ``target_object_index``: (B,) long,
  the edited object's index in it (-1 when none); ``supersample``: (B,) long, the export's render setting (0
  without ground truth). Shape accuracy re-renders the target scene at the batch's image side, which must be one
  of the exported sides (32, 64, 128, 256).

Details in ``interpedit.benchmarks.edit_benchmark_dataset``; formats and auto-detection in
``interpedit.benchmarks.benchmark_format``.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from interpedit.benchmarks.benchmark_format import read_edit_benchmark
from interpedit.benchmarks.edit_benchmark_dataset import EditBenchmarkDataset, collate_edit_samples
from interpedit.benchmarks.edit_sample import BenchmarkError, EditSample
from interpedit.benchmarks.edit_types import EDIT_TYPE_NAMES, resolve_edit_type
from interpedit.data.distributed_index_sampler import DistributedIndexSampler, current_replica
from interpedit.user_errors import OptionError

BenchmarkFormat = Literal["auto", "pie_bench", "learnable_regions", "shapes"]


class EditBenchmarkDataModule(LightningDataModule):
    """An edit benchmark for ``trainer.test`` and ``trainer.predict`` (batch keys in the module docstring).

    Args:
        root: benchmark folder (holding mapping_file.json or images.json).
        format: auto (detected from the root's index file), pie_bench, learnable_regions or shapes.
        resolution: square side images and masks are resized and centre-cropped to; None keeps native sizes.
        batch_size: samples per batch on each rank (above 1 needs equal image sizes, or a resolution).
        num_workers: DataLoader worker processes.
        edit_types: keep only these edit types, by id ("6") or name ("change attribute color", "recolour").
        limit: keep only the first this many samples (after the edit type filter).
    """

    def __init__(
        self,
        root: str,
        format: BenchmarkFormat = "auto",
        resolution: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        edit_types: list[str] | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if format not in ("auto", "pie_bench", "learnable_regions", "shapes"):
            raise ValueError(
                f"EditBenchmarkDataModule.format: unknown format {format!r}; "
                "choose auto, pie_bench, learnable_regions or shapes"
            )
        if resolution is not None and resolution < 1:
            raise OptionError(f"EditBenchmarkDataModule.resolution: must be positive or None, got {resolution}")
        if batch_size < 1:
            raise OptionError(f"EditBenchmarkDataModule.batch_size: must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise OptionError(f"EditBenchmarkDataModule.num_workers: must be >= 0, got {num_workers}")
        if limit is not None and limit < 1:
            raise OptionError(f"EditBenchmarkDataModule.limit: must be at least 1 or None, got {limit}")
        try:
            self.edit_type_ids = None if edit_types is None else [resolve_edit_type(t) for t in edit_types]
        except ValueError as exc:
            raise OptionError(f"EditBenchmarkDataModule.edit_types: {exc}") from exc
        if self.edit_type_ids is not None and not self.edit_type_ids:
            raise ValueError("EditBenchmarkDataModule.edit_types: empty list; use null to keep every edit type")
        self.root = root
        self.format = format
        self.resolution = resolution
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.limit = limit
        self.dataset: EditBenchmarkDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Index the benchmark (every entry is checked now), filter by edit type and apply the limit."""
        if self.dataset is not None:
            return
        samples = self._select(read_edit_benchmark(self.root, self.format))
        self.dataset = EditBenchmarkDataset(samples, resolution=self.resolution)

    def _select(self, samples: list[EditSample]) -> list[EditSample]:
        if self.edit_type_ids is not None:
            kept = [sample for sample in samples if sample.edit_type_id in self.edit_type_ids]
            if not kept:
                present = Counter(sample.edit_type_id for sample in samples)
                found = ", ".join(f"{t} ({EDIT_TYPE_NAMES[t]}) x{n}" for t, n in present.items())
                wanted = ", ".join(f"{t} ({EDIT_TYPE_NAMES[t]})" for t in self.edit_type_ids)
                raise BenchmarkError(self.root, f"no samples of the edit types {wanted}; the benchmark has {found}")
            samples = kept
        return samples if self.limit is None else samples[: self.limit]

    def train_dataloader(self) -> DataLoader:
        """The benchmark's edit requests in a fresh shuffled order each epoch, equal shares per rank: for methods
        that learn from unlabelled edit requests (Learnable Regions' JSON mode trains one shared AnchorNet). The
        training step must not read the ground-truth fields."""
        self.setup()
        rank, world_size = self.replica()
        sampler = DistributedIndexSampler(len(self.dataset), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=0, equal_shards=True)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate_edit_samples, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        """The whole benchmark, so a training run can measure edits on it while it trains (``EditMetrics``)."""
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()

    def replica(self) -> tuple[int, int]:
        """``(rank, world_size)``: from the attached trainer, else from torch.distributed, else ``(0, 1)``."""
        return current_replica(self.trainer)

    def sampler(self) -> DistributedIndexSampler:
        """This rank's share of the benchmark: whole blocks of ``batch_size`` samples, none repeated or dropped."""
        self.setup()
        rank, world_size = self.replica()
        return DistributedIndexSampler(
            len(self.dataset),
            num_replicas=world_size,
            rank=rank,
            shuffle=False,
            equal_shards=False,
            block_size=self.batch_size,
        )

    def _loader(self) -> DataLoader:
        sampler = self.sampler()
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_edit_samples,
        )
