"""Seeds of the noise that starts each sample: the "dataset" of methods that study a generator's own samples
(h-space direction discovery). Every rank predicts its own share; batches hold ``seed`` (B,) long."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from interpedit.data.distributed_index_sampler import DistributedIndexSampler, current_replica


class _Seeds(Dataset):
    def __init__(self, first: int, count: int) -> None:
        self.first, self.count = first, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"seed": torch.tensor(self.first + index, dtype=torch.long)}


class NoiseSeedsDataModule(LightningDataModule):
    """``num_samples`` seeds ``first_seed, first_seed + 1, ...`` for ``trainer.test`` (``eval.py``) or ``predict``.

    Args:
        num_samples: how many samples to draw.
        first_seed: the first seed.
        batch_size: samples per batch on each rank.
    """

    def __init__(self, num_samples: int = 512, first_seed: int = 0, batch_size: int = 32) -> None:
        super().__init__()
        if num_samples < 1 or batch_size < 1:
            raise ValueError("NoiseSeedsDataModule: num_samples and batch_size must be >= 1")
        self.num_samples, self.first_seed, self.batch_size = num_samples, first_seed, batch_size

    def test_dataloader(self) -> DataLoader:
        return self.predict_dataloader()

    def predict_dataloader(self) -> DataLoader:
        rank, world_size = current_replica(self.trainer)
        sampler = DistributedIndexSampler(self.num_samples, num_replicas=world_size, rank=rank, shuffle=False,
                                          equal_shards=False, block_size=self.batch_size)
        return DataLoader(_Seeds(self.first_seed, self.num_samples), batch_size=self.batch_size, sampler=sampler)
