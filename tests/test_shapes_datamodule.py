"""ShapesDataModule: batch contents, seeding, splits, sharding, workers, and Lightning's handling of the sampler."""

import ast
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from datamodules.shapes import SceneSampler, ShapesDataModule, ShapesDataset
from interpedit.data.regions import boxes_from_masks
from interpedit.shapes import COLOURS, SHAPES, SIZES, SceneConfig, render, sample_scene
from lightning_modules.strategies import ReleasingDDPStrategy


def small_module(**overrides):
    settings = dict(train_scenes=24, val_scenes=10, test_scenes=10, batch_size=4, max_objects=4)
    settings.update(overrides)
    return ShapesDataModule(**settings)


def test_batch_has_the_documented_keys_shapes_and_dtypes():
    batch = next(iter(small_module(resolution=32).train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["masks"].shape == (4, 4, 32, 32) and batch["masks"].dtype == torch.bool
    assert batch["region_valid"].shape == (4, 4) and batch["region_valid"].dtype == torch.bool
    assert batch["boxes"].shape == (4, 4, 4) and batch["boxes"].dtype == torch.float32
    assert set(batch["attributes"]) == {"shape", "colour", "size"}
    assert all(v.shape == (4, 4) and v.dtype == torch.long for v in batch["attributes"].values())
    assert batch["position"].shape == (4, 4, 2) and batch["rotation"].shape == (4, 4)
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 4
    assert batch["scene_index"].shape == (4,) and batch["scene_index"].dtype == torch.long


def test_items_match_an_independent_render_of_their_seed():
    dataset = ShapesDataset("val", num_scenes=20, seed=5, resolution=32)
    for index in range(20):
        item = dataset[index]
        scene = sample_scene(np.random.default_rng(np.random.SeedSequence([1, 5, index])), SceneConfig())
        rendered = render(scene, 32)
        np.testing.assert_array_equal((item["image"] * 255).round().byte().permute(1, 2, 0).numpy(), rendered.image)
        count = len(scene.objects)
        np.testing.assert_array_equal(item["masks"][:count].numpy(), rendered.masks)
        assert not item["masks"][count:].any() and not item["region_valid"][count:].any()
        np.testing.assert_array_equal(item["region_valid"], item["masks"].flatten(1).any(1))
        torch.testing.assert_close(item["boxes"], boxes_from_masks(item["masks"]))
        for slot, obj in enumerate(scene.objects):
            if item["region_valid"][slot]:
                assert SHAPES[item["attributes"]["shape"][slot]] == obj.shape
                assert COLOURS[item["attributes"]["colour"][slot]] == obj.colour
                assert SIZES[item["attributes"]["size"][slot]] == obj.size
            assert tuple(item["position"][slot].tolist()) == pytest.approx(obj.position)
        assert (item["attributes"]["shape"][~item["region_valid"]] == -1).all()
        assert item["caption"] == rendered.caption and int(item["scene_index"]) == index


def test_background_region_completes_the_partition_and_small_budgets_choose_objects():
    config = SceneConfig(max_objects=4)
    dataset = ShapesDataset("train", num_scenes=30, include_background_region=True, scene_config=config)
    assert dataset.region_budget == 5
    for index in range(30):
        item = dataset[index]
        count = len(sample_scene(np.random.default_rng(np.random.SeedSequence([0, 0, index]))).objects)
        assert (item["masks"].sum(0) == 1).all()  # objects then background tile the image exactly once
        assert torch.equal(item["masks"][count], ~item["masks"][:count].any(0))
        assert item["attributes"]["shape"][count] == -1 and item["region_valid"][count]
        assert not item["region_valid"][count + 1 :].any()
    crowded = SceneConfig(min_objects=3, max_objects=4)
    small = ShapesDataset("train", num_scenes=30, region_budget=2, scene_config=crowded)
    for index in range(30):
        item = small[index]
        assert item["masks"].shape[0] == 2 and item["region_valid"].all()
        assert (item["masks"].sum(0) <= 1).all()


def test_splits_and_seeds_give_different_scenes():
    images = {}
    for split in ("train", "val", "test"):
        for seed in (0, 1):
            images[split, seed] = ShapesDataset(split, num_scenes=4, seed=seed)[3]["image"]
    keys = list(images)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not torch.equal(images[a], images[b]), (a, b)


def test_training_epochs_are_reproducible_permutations():
    module = small_module()
    epochs = []
    for epoch in (0, 1, 0):
        loader = module.train_dataloader()
        loader.sampler.set_epoch(epoch)
        epochs.append(torch.cat([batch["scene_index"] for batch in loader]).tolist())
    assert sorted(epochs[0]) == list(range(24)) and sorted(epochs[1]) == list(range(24))
    assert epochs[0] != epochs[1] and epochs[0] == epochs[2]
    val = torch.cat([b["scene_index"] for b in small_module().val_dataloader()]).tolist()
    assert val == list(range(10))


def test_endless_training_draws_new_scenes_every_epoch():
    sampler = SceneSampler(10, shuffle=True, endless=True, seed=3)
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert sorted(indices) == list(range(10 * epoch, 10 * epoch + 10))
        seen += indices
    assert len(set(seen)) == 30
    module = small_module(train_scenes=None, scenes_per_epoch=8)
    loader = module.train_dataloader()
    loader.sampler.set_epoch(5)
    indices = torch.cat([b["scene_index"] for b in loader]).tolist()
    assert sorted(indices) == list(range(40, 48))


@pytest.mark.parametrize("num_scenes, world", [(24, 3), (25, 3), (7, 4)])
def test_ranks_see_distinct_scenes(num_scenes, world):
    train = [SceneSampler(num_scenes, num_replicas=world, rank=r, shuffle=True, seed=1) for r in range(world)]
    shards = [list(s) for s in train]
    assert len({len(s) for s in shards}) == 1 and all(len(s) == len(train[0]) for s in shards)
    assert set().union(*shards) == set(range(num_scenes))
    assert sum(map(len, shards)) - num_scenes < world  # only the padding repeats
    evaluation = [list(SceneSampler(num_scenes, num_replicas=world, rank=r, equal_shards=False)) for r in range(world)]
    assert sorted(sum(evaluation, [])) == list(range(num_scenes))
    assert max(map(len, evaluation)) - min(map(len, evaluation)) <= 1
    lengths = [len(SceneSampler(num_scenes, num_replicas=world, rank=r, equal_shards=False)) for r in range(world)]
    assert [len(s) for s in evaluation] == lengths


def test_evaluation_batches_are_the_same_whatever_the_world_size():
    # Rank r takes whole blocks of batch_size scenes, so each batch's scenes do not depend on the process count.
    def batches(world: int) -> list[tuple[int, ...]]:
        found = []
        for rank in range(world):
            order = list(SceneSampler(37, num_replicas=world, rank=rank, equal_shards=False, block_size=8))
            assert len(order) == len(SceneSampler(37, num_replicas=world, rank=rank, equal_shards=False, block_size=8))
            found += [tuple(order[i : i + 8]) for i in range(0, len(order), 8)]
        return sorted(found)

    assert batches(1) == batches(2) == batches(3)
    assert sorted(sum(map(list, batches(3)), [])) == list(range(37))


def test_rank_and_world_size_come_from_the_trainer():
    module = small_module()
    assert module.replica() == (0, 1)
    module.trainer = SimpleNamespace(global_rank=1, world_size=2)
    sampler = module.train_dataloader().sampler
    assert isinstance(sampler, DistributedSampler) and (sampler.rank, sampler.num_replicas) == (1, 2)
    module.trainer = SimpleNamespace(global_rank=0, world_size=2)
    other = module.train_dataloader().sampler
    assert not set(sampler) & set(other)


def test_worker_processes_give_the_same_batches():
    module = small_module(num_workers=0)
    serial = list(module.train_dataloader())
    sampler = module.train_dataloader().sampler
    parallel = list(DataLoader(module.dataset("train"), batch_size=4, sampler=sampler, num_workers=2))
    assert len(serial) == len(parallel) == 6
    for a, b in zip(serial, parallel):
        for key in ("image", "masks", "boxes", "scene_index", "position"):
            assert torch.equal(a[key], b[key])
        assert a["caption"] == b["caption"]


class _RecordScenes(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).extend(batch["scene_index"].tolist())
        return ((self.weight - batch["image"].mean()) ** 2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no `validation_step`")
def test_lightning_keeps_the_sampler_and_sets_its_epoch():
    module = small_module(train_scenes=12, batch_size=4)
    model = _RecordScenes()
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=module)
    assert isinstance(trainer.train_dataloader.sampler, SceneSampler)
    for epoch in (0, 1):
        sampler = SceneSampler(12, shuffle=True, seed=0)
        sampler.set_epoch(epoch)
        assert model.seen[epoch] == list(sampler)
    assert model.seen[0] != model.seen[1]


class _WriteScenes(_RecordScenes):
    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def on_train_end(self):
        (self.folder / f"rank{self.global_rank}.txt").write_text(repr(self.seen))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no `validation_step`")
def test_ddp_ranks_see_distinct_scenes_that_cover_each_epoch(tmp_path):
    module = small_module(train_scenes=16, batch_size=4)
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", devices=2, strategy=ReleasingDDPStrategy(start_method="spawn"), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(_WriteScenes(tmp_path), datamodule=module)
    seen = [ast.literal_eval((tmp_path / f"rank{rank}.txt").read_text()) for rank in (0, 1)]
    for epoch in (0, 1):
        assert len(seen[0][epoch]) == len(seen[1][epoch]) == 8
        assert sorted(seen[0][epoch] + seen[1][epoch]) == list(range(16))
    assert seen[0][0] != seen[0][1]


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="ShapesDataModule.batch_size"):
        ShapesDataModule(batch_size=0)
    with pytest.raises(ValueError, match="scene config.backgrounds"):
        ShapesDataModule(backgrounds=("solid", "plaid"))
    with pytest.raises(ValueError, match="ShapesDataset.split"):
        ShapesDataset("dev")
    with pytest.raises(IndexError):
        ShapesDataset("val", num_scenes=3)[3]


def test_paired_views_are_reproducible_aligned_and_flip_positions():
    module = small_module(paired_views=True, flip_probability=1.0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    dataset = module.dataset("train")
    item, again = dataset[3], dataset[3]
    for key in ("source_image", "target_image", "source_masks", "target_masks"):
        assert torch.equal(item[key], again[key]), key
    # A full-frame crop with a certain flip: both views are the mirrored scene, masks mirrored with the pixels.
    assert torch.equal(item["target_image"], item["image"].flip(-1))
    assert torch.equal(item["target_masks"], item["masks"].flip(-1))
    assert torch.equal(item["target_region_valid"], item["region_valid"])
    batch = next(iter(module.train_dataloader()))
    assert batch["source_image"].shape == batch["image"].shape and batch["target_masks"].shape == batch["masks"].shape
