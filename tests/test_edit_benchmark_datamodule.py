"""EditBenchmarkDataModule: batches, filters, and DDP shards that cover every sample exactly once."""

import json
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.edit_benchmark import EditBenchmarkDataModule
from datamodules.shapes import SceneSampler
from interpedit.benchmarks import BenchmarkError
from interpedit.data.distributed_index_sampler import DistributedIndexSampler, current_replica
from interpedit.shapes import Background, Scene, ShapeObject, export_benchmark
from tests.test_benchmarks import write_learnable_regions, write_pie_bench

BATCH_KEYS = {
    "image_id", "index", "source_image", "source_prompt", "target_prompt", "source_prompt_bracketed",
    "target_prompt_bracketed", "instruction", "blended_word", "edit_type_id", "edit_type", "edit_mask", "has_mask",
    "target_image", "has_target", "source_object_mask", "source_object_footprint", "target_object_mask",
    "target_object_footprint", "has_source_object", "has_target_object", "requested_colour", "requested_shape",
    "target_object", "target_scene", "target_object_index", "supersample", "source_labels", "target_labels",
    "source_scene", "edit",
}  # fmt: skip


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_benchmark")
    export_benchmark(root, num_scenes=8, seed=5, resolution=32)
    return root


def shard_ids(module_args: dict, world: int, loader: str = "test_dataloader") -> list[list[str]]:
    """The image ids each simulated rank sees, one datamodule per rank as under DDP."""
    shards = []
    for rank in range(world):
        module = EditBenchmarkDataModule(**module_args)
        module.trainer = SimpleNamespace(global_rank=rank, world_size=world)
        shards.append([image_id for batch in getattr(module, loader)() for image_id in batch["image_id"]])
    return shards


@pytest.mark.parametrize("limit, world, batch_size", [(7, 2, 1), (7, 2, 2), (5, 3, 2), (None, 2, 3), (1, 2, 1)])
def test_ranks_partition_the_benchmark_without_repeats_or_drops(shapes_root, limit, world, batch_size):
    args = dict(root=str(shapes_root), batch_size=batch_size, limit=limit)
    expected = [f"{i:012d}" for i in range(limit or 8)]
    for loader in ("test_dataloader", "predict_dataloader"):
        shards = shard_ids(args, world, loader)
        together = [image_id for shard in shards for image_id in shard]
        assert len(together) == len(set(together)) == len(expected)
        assert sorted(together) == expected
    # Rank 0 of a single process sees everything, in order.
    assert shard_ids(args, 1) == [expected]


def test_batches_hold_every_documented_key_with_its_shape(shapes_root):
    module = EditBenchmarkDataModule(str(shapes_root), batch_size=4, resolution=16)
    module.setup("test")
    batch = next(iter(module.test_dataloader()))
    assert set(batch) == BATCH_KEYS
    assert batch["source_image"].shape == batch["target_image"].shape == (4, 3, 16, 16)
    assert batch["source_image"].dtype == torch.float32
    for key in ("edit_mask", "source_object_mask", "target_object_mask", "target_object_footprint"):
        assert batch[key].shape == (4, 16, 16) and batch[key].dtype == torch.bool, key
    for key in ("has_mask", "has_target", "has_source_object", "has_target_object"):
        assert batch[key].shape == (4,) and batch[key].all(), key
    assert batch["requested_colour"].dtype == batch["index"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["target_object"]["position"].shape == (4, 2) and batch["target_object"]["radius"].shape == (4,)
    assert all(isinstance(batch[key], list) and len(batch[key]) == 4 for key in ("image_id", "target_prompt"))
    assert batch["target_object_index"].shape == batch["supersample"].shape == (4,)
    assert batch["target_object_index"].dtype == batch["supersample"].dtype == torch.long
    assert isinstance(batch["target_scene"], list) and all(isinstance(text, str) for text in batch["target_scene"])
    for key in ("source_labels", "target_labels"):
        assert batch[key].shape == (4, 16, 16) and batch[key].dtype == torch.int64, key


@pytest.mark.parametrize("resolution", [None, 16, 48])
def test_label_maps_are_read_and_resized_like_the_object_masks(shapes_root, resolution):
    batch = next(iter(EditBenchmarkDataModule(str(shapes_root), batch_size=8, resolution=resolution).test_dataloader()))
    mapping = json.loads((shapes_root / "mapping_file.json").read_text())
    for number, image_id in enumerate(batch["image_id"]):
        edit = mapping[image_id]["edit"]
        for scene, indices in (("source", edit["objects"]), ("target", edit["target_indices"])):
            labels = batch[f"{scene}_labels"][number]
            if resolution is None:  # the exported PNG itself
                exported = np.array(Image.open(shapes_root / mapping[image_id][f"{scene}_labels_path"]))
                assert torch.equal(labels, torch.from_numpy(exported.astype(np.int64))), (image_id, scene)
            assert int(labels.min()) >= 0 and int(labels.max()) <= len(mapping[image_id][f"{scene}_objects"])
            if indices:  # the object mask is the label map's mask of the edited object, same pixels
                mask = batch[f"{scene}_object_mask"][number]
                assert torch.equal(mask, labels == indices[0] + 1), (image_id, scene)


def test_target_scenes_round_trip_to_the_exported_scenes(shapes_root):
    mapping = json.loads((shapes_root / "mapping_file.json").read_text())
    batch = next(iter(EditBenchmarkDataModule(str(shapes_root), batch_size=8).test_dataloader()))
    for number, image_id in enumerate(batch["image_id"]):
        entry = mapping[image_id]
        exported = Scene(
            Background.from_dict(entry["background"]),
            tuple(ShapeObject.from_dict(obj) for obj in entry["target_objects"]),
        )
        assert Scene.from_dict(json.loads(batch["target_scene"][number])) == exported, image_id
        source = Scene(exported.background, tuple(ShapeObject.from_dict(obj) for obj in entry["source_objects"]))
        assert Scene.from_dict(json.loads(batch["source_scene"][number])) == source, image_id
        assert json.loads(batch["edit"][number]) == entry["edit"], image_id
        targets = entry["edit"]["target_indices"]
        assert int(batch["target_object_index"][number]) == (targets[0] if targets else -1), image_id
        assert int(batch["supersample"][number]) == entry["supersample"] == 4


def test_edit_types_filter_by_id_or_name_and_index_counts_the_kept_samples(shapes_root):
    module = EditBenchmarkDataModule(str(shapes_root), edit_types=["move", "6", "delete object"], batch_size=8)
    batch = next(iter(module.predict_dataloader()))
    assert sorted(batch["edit_type_id"]) == ["10", "3", "6"]
    assert batch["index"].tolist() == [0, 1, 2]
    limited = next(iter(EditBenchmarkDataModule(str(shapes_root), edit_types=["move", "6"], limit=1).test_dataloader()))
    assert limited["image_id"] == [batch["image_id"][0]]


def test_bad_arguments_fail_at_construction_or_setup(shapes_root, tmp_path):
    with pytest.raises(ValueError, match="EditBenchmarkDataModule.edit_types: unknown edit type 'teleport'"):
        EditBenchmarkDataModule(str(shapes_root), edit_types=["teleport"])
    with pytest.raises(ValueError, match="EditBenchmarkDataModule.limit: must be at least 1"):
        EditBenchmarkDataModule(str(shapes_root), limit=0)
    with pytest.raises(ValueError, match="EditBenchmarkDataModule.format: unknown format 'coco'"):
        EditBenchmarkDataModule(str(shapes_root), format="coco")
    with pytest.raises(BenchmarkError, match=r"no samples of the edit types 9 \(change style\); the benchmark has"):
        EditBenchmarkDataModule(str(shapes_root), edit_types=["change style"]).setup("test")
    with pytest.raises(BenchmarkError, match="benchmark folder does not exist"):
        EditBenchmarkDataModule(str(tmp_path / "nowhere")).setup("test")


def test_mixed_native_sizes_need_a_resolution_or_batch_size_one(tmp_path):
    write_learnable_regions(tmp_path, {"a.png": (8, 8), "b.png": (6, 10)})
    with pytest.raises(ValueError, match="mixes image sizes.*set resolution.*batch_size: 1"):
        next(iter(EditBenchmarkDataModule(str(tmp_path), batch_size=2).test_dataloader()))
    native = [b["source_image"].shape for b in EditBenchmarkDataModule(str(tmp_path)).test_dataloader()]
    assert native == [(1, 3, 8, 8), (1, 3, 6, 10)]
    batch = next(iter(EditBenchmarkDataModule(str(tmp_path), batch_size=2, resolution=4).test_dataloader()))
    assert batch["source_image"].shape == (2, 3, 4, 4) and batch["edit_type_id"] == ["lr", "lr"]
    assert not batch["has_mask"].any() and not batch["has_target"].any()
    for key in ("source_labels", "target_labels"):  # no ground truth: -1 everywhere, the images' size
        assert batch[key].shape == (2, 4, 4) and batch[key].dtype == torch.int64 and (batch[key] == -1).all(), key


def test_pie_bench_batches_carry_masks_and_prompts(tmp_path):
    truth = write_pie_bench(tmp_path, {"000000000000": (8, 8), "000000000001": (8, 8)})
    batch = next(iter(EditBenchmarkDataModule(str(tmp_path), format="pie_bench", batch_size=2).test_dataloader()))
    assert torch.equal(batch["edit_mask"], torch.stack([torch.from_numpy(t["mask"]) for t in truth.values()]))
    assert batch["target_prompt"] == ["a dog sitting on a mat"] * 2 and batch["blended_word"] == ["cat dog"] * 2
    assert batch["edit_type"] == ["random", "change object"]


def test_replica_comes_from_the_trainer_else_a_single_process():
    assert current_replica(None) == (0, 1)
    assert current_replica(SimpleNamespace(global_rank=3, world_size=4)) == (3, 4)
    assert SceneSampler is DistributedIndexSampler  # the shapes module's name still works


class _CollectIndices(pl.LightningModule):
    def predict_step(self, batch, batch_idx):
        return batch["index"]


def test_lightning_predict_keeps_the_sampler_and_sees_every_sample(shapes_root):
    module = EditBenchmarkDataModule(str(shapes_root), batch_size=3)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    predictions = trainer.predict(_CollectIndices(), datamodule=module)
    # Predicting, Lightning moves the sampler into an index-tracking batch sampler, but keeps it (no re-sharding).
    assert isinstance(trainer.predict_dataloaders.batch_sampler.sampler, DistributedIndexSampler)
    assert torch.cat(predictions).tolist() == list(range(8))
