"""Dataset indices of one epoch, sharded over DDP ranks, and where a process finds its rank."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler
from interpedit.user_errors import OptionError


def current_replica(trainer: Any | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` of this process.

    Args:
        trainer: a Lightning trainer (anything with ``global_rank`` and ``world_size``), or None.

    Returns:
        From ``trainer`` when given, else from an initialised ``torch.distributed``, else ``(0, 1)``.
    """
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class DistributedIndexSampler(DistributedSampler):
    """Indices ``0..N-1`` of one epoch (or new ones every epoch), sharded over ranks.

    A ``DistributedSampler`` subclass, so Lightning keeps it instead of wrapping it; Lightning calls ``set_epoch``
    every epoch. The epoch's order is a permutation seeded by ``(seed, epoch)`` when ``shuffle``, else ``0..N-1``;
    with ``endless`` epoch ``e`` uses indices ``e * N + order`` (never-seen items every epoch, for datasets
    without an end). Rank ``r`` takes ``order[r::num_replicas]``.

    ``equal_shards`` (training): every rank gets the same number of indices, so DDP ranks step together; the order
    is padded by repeating its start (or truncated with ``drop_last``). Without it (evaluation) no index repeats,
    none is dropped, and ranks may differ by one block.

    ``block_size`` (evaluation): ranks take consecutive blocks of this many indices in turn instead of single
    indices. With the batch size as block, every batch holds the same items whatever the number of processes, so
    metrics computed within a batch (retrieval among the batch's captions) do not depend on the world size.

    Args:
        num_indices: indices per epoch, N.
        num_replicas: number of ranks.
        rank: this rank.
        shuffle: permute the order every epoch.
        seed: permutation seed.
        endless: shift every epoch to new indices.
        equal_shards: pad (or truncate) so all ranks get the same count.
        drop_last: truncate instead of pad, with ``equal_shards``.
        block_size: indices a rank takes at a time, without ``equal_shards``.
    """

    def __init__(
        self,
        num_indices: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = False,
        seed: int = 0,
        endless: bool = False,
        equal_shards: bool = True,
        drop_last: bool = False,
        block_size: int = 1,
    ) -> None:
        if block_size < 1:
            raise OptionError(f"DistributedIndexSampler.block_size: must be at least 1, got {block_size}")
        if num_indices < 0:
            raise OptionError(f"DistributedIndexSampler.num_indices: must be >= 0, got {num_indices}")
        super().__init__(
            range(num_indices), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.num_indices = num_indices
        self.endless = endless
        self.equal_shards = equal_shards
        self.block_size = block_size
        if equal_shards:
            shard = num_indices // num_replicas if drop_last else math.ceil(num_indices / num_replicas)
            self.num_samples = shard
            self.total_size = shard * num_replicas
        else:
            self.num_samples = len(self._block_shard(np.arange(num_indices)))
            self.total_size = num_indices

    def epoch_order(self) -> np.ndarray:
        """All ranks' indices of the current epoch, before sharding and padding. (N,) int64."""
        if self.shuffle:
            order = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch])).permutation(
                self.num_indices
            )
        else:
            order = np.arange(self.num_indices)
        if self.endless:
            order = order + self.epoch * self.num_indices
        return order.astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order()
        if self.equal_shards and self.total_size != len(order):
            if self.total_size < len(order):
                order = order[: self.total_size]
            elif len(order):
                order = np.resize(order, self.total_size)  # repeats the order from its start
            return iter(order[self.rank :: self.num_replicas].tolist())
        return iter(self._block_shard(order).tolist())

    def _block_shard(self, order: np.ndarray) -> np.ndarray:
        """This rank's blocks of ``block_size`` consecutive entries of ``order``, taken in turn."""
        blocks = [order[start : start + self.block_size] for start in range(0, len(order), self.block_size)]
        mine = blocks[self.rank :: self.num_replicas]
        return np.concatenate(mine) if mine else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.num_samples
