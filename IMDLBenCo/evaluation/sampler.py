"""``EvalSampler``: every sample evaluated exactly once under any number of processes."""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import Sampler

__all__ = ["EvalSampler", "shard_bounds"]


def shard_bounds(length: int, num_replicas: int, rank: int) -> tuple:
    """``(start, stop)`` of ``rank``'s contiguous shard of ``range(length)``.

    The first ``length % num_replicas`` ranks get one sample more; shards concatenated in rank
    order are exactly ``range(length)`` (no padding, nothing dropped; a rank may get none).
    """
    base, extra = divmod(length, num_replicas)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class EvalSampler(Sampler[int]):
    """Contiguous, unpadded shard of a dataset for evaluation.

    Unlike ``DistributedSampler`` it never repeats samples to even out shard sizes and never drops
    any, so sums and concatenations over all processes see each sample once.

    Args:
        dataset: anything with ``len()``.
        num_replicas: number of processes; default: the initialised process group's size, else 1.
        rank: this process's rank; default: the process group's rank, else 0.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None) -> None:
        if num_replicas is None or rank is None:
            import torch.distributed as dist

            ready = dist.is_available() and dist.is_initialized()
            if num_replicas is None:
                num_replicas = dist.get_world_size() if ready else 1
            if rank is None:
                rank = dist.get_rank() if ready else 0
        if num_replicas < 1:
            raise ValueError(f"EvalSampler: num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"EvalSampler: rank must be in [0, {num_replicas}), got {rank}")
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.total = len(dataset)
        self.start, self.stop = shard_bounds(self.total, self.num_replicas, self.rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start

    def set_epoch(self, epoch: int) -> None:
        """No-op (the order is fixed); present so loops may call it on any sampler."""
