"""Training order for shards: each rank a disjoint, contiguous run of the epoch's shard order,
mixed by a shuffle buffer (WebDataset's), so a rank (and a node) reads only its own part.

Per epoch ``e``: the shards are permuted (seeded by ``(seed, e)``, the same on every rank) and
their samples concatenated; the sequence is padded by repeating its start to ``R * ceil(N / R)``
(as ``DistributedSampler`` pads) and rank ``r`` takes the ``r``-th contiguous slice. The slice is
streamed through a shuffle buffer seeded by ``(seed, e, r)``. Every rank therefore yields the same
number of indices (DDP needs equal batch counts), every sample appears once per epoch over all
ranks apart from the padding, and two ranks share at most the one shard at their boundary, from
which they read different samples. Deterministic for ``(seed, epoch)``, so ``--resume`` is exact.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ShardTrainSampler", "shard_train_sampler"]


class ShardTrainSampler(Sampler[int]):
    """See the module docstring. ``shard_sizes``: samples per shard, in index order."""

    def __init__(self, shard_sizes: list[int], num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle_buffer: int = 4096) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} of {num_replicas} processes")
        self.shard_sizes = [int(n) for n in shard_sizes]
        self.starts = np.concatenate([[0], np.cumsum(self.shard_sizes)[:-1]]).astype(np.int64)
        self.total = int(sum(self.shard_sizes))
        self.num_replicas, self.rank, self.seed = int(num_replicas), int(rank), int(seed)
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        self.per_rank = -(-self.total // self.num_replicas)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_rank

    def rank_slice(self, rank: int | None = None) -> np.ndarray:
        """This epoch's contiguous run of rank ``rank`` (default this one), before the buffer."""
        rank = self.rank if rank is None else int(rank)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shard_sizes))
        seq = np.concatenate([np.arange(self.starts[k], self.starts[k] + self.shard_sizes[k]) for k in order])
        padded = self.per_rank * self.num_replicas
        if padded > seq.shape[0]:
            seq = np.concatenate([seq, np.resize(seq, padded - seq.shape[0])])
        return seq[rank * self.per_rank:(rank + 1) * self.per_rank]

    def __iter__(self) -> Iterator[int]:
        from webdataset.filters import shuffle

        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}")  # a str seed: the same in every process
        stream = shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(iter(self.rank_slice().tolist()))
        return iter(list(stream))


def shard_train_sampler(dataset: Any, num_replicas: int, rank: int, seed: int) -> ShardTrainSampler | None:
    """The training sampler for ``dataset`` when it reads shards (a ``ShardDataset``), else None
    (the caller keeps its ``DistributedSampler``; a BalancedDataset of shards draws per epoch
    across all its members and keeps it too)."""
    sizes = getattr(dataset, "shard_sizes", None)
    if sizes is None or not getattr(dataset, "packed", False):
        return None
    return ShardTrainSampler(sizes, num_replicas=num_replicas, rank=rank, seed=seed,
                             shuffle_buffer=getattr(dataset, "shuffle_buffer", 4096))
