"""``BalancedDataset`` (Protocol-CAT): a fixed number of samples from every sub-dataset per epoch."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..registry import DATASETS
from .utils import read_balanced_entries

__all__ = ["BalancedDataset", "balanced_draw"]

def balanced_draw(length: int, sample_number: int, seed: int, epoch: int, index: int) -> np.ndarray:
    """Indices drawn from a sub-dataset of ``length`` items for one epoch.

    Without replacement while ``length >= sample_number``; otherwise whole shuffled passes are
    concatenated, so every item appears ``sample_number // length`` or one more times.
    Depends only on ``(seed, epoch, index)``, so every process and worker draws the same.
    """
    rng = np.random.default_rng([int(seed), int(epoch), int(index)])
    passes = -(-sample_number // length)
    order = np.concatenate([rng.permutation(length) for _ in range(passes)])
    return order[:sample_number]


@DATASETS.register_module()
class BalancedDataset(Dataset):
    """``sample_number`` samples from each sub-dataset of a ``[[class_name, path], ...]`` JSON per epoch.

    Every sub-dataset is built with the same ``*args, **kwargs`` (padding, transforms, ...).
    The draw is seeded by ``seed`` and the epoch: call ``set_epoch(e)`` before each epoch (in the
    main process, before the DataLoader iterator, hence its workers, is created) for a different,
    reproducible draw.
    """

    def __init__(self, path: str, *args: Any, sample_number: int = 1840, seed: int = 0, **kwargs: Any) -> None:
        if int(sample_number) < 1:
            raise ValueError(f"sample_number must be a positive int, got {sample_number!r}")
        self.entry_path = str(path)
        self.sample_number = int(sample_number)
        self.seed = int(seed)
        self.entries = read_balanced_entries(str(path))
        self.datasets = [DATASETS.get(name)(sub, *args, **kwargs) for name, sub in self.entries]
        self.epoch = 0
        self._draws: list[np.ndarray] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's samples (deterministic for ``(seed, epoch)``)."""
        self.epoch = int(epoch)
        self._draws = [
            balanced_draw(len(ds), self.sample_number, self.seed, self.epoch, i) for i, ds in enumerate(self.datasets)
        ]

    def __len__(self) -> int:
        return self.sample_number * len(self.datasets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        d, j = divmod(int(index), self.sample_number)
        return self.datasets[d][int(self._draws[d][j])]

    def __str__(self) -> str:
        lines = [f"[{type(self).__name__}] at {self.entry_path}"]
        lines += [f"  {ds}" for ds in self.datasets]
        lines.append(f"  Sample number per dataset: {self.sample_number:,}")
        lines.append(f"  Samples per epoch: {len(self):,}")
        lines.append(f"  Total images in whole dataset: {sum(len(ds) for ds in self.datasets):,}")
        return "\n".join(lines)

    __repr__ = __str__
