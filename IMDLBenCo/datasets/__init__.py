"""Datasets: ``ManiDataset``, ``JsonDataset``, ``BalancedDataset`` and their helpers.

Names are imported on first use (PEP 562), so ``benco data check`` and the JSON helpers do not
pay for importing torch. The dataset classes register themselves in
``IMDLBenCo.registry.DATASETS`` when their modules load; importing this package tells the
registry to load them on the first look-up. See docs/ARCHITECTURE.md for the sample dict.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..registry import DATASETS

DATASETS.add_lazy_package(f"{__name__}.dataset")
DATASETS.add_lazy_package(f"{__name__}.balanced")
DATASETS.add_lazy_package(f"{__name__}.shards.dataset")

_HOME = {
    "AbstractDataset": "dataset",
    "ManiDataset": "dataset",
    "JsonDataset": "dataset",
    "BalancedDataset": "balanced",
    "ShardDataset": "shards",
    "dataset_content_hash": "identity",
    "path_content_hash": "identity",
    "file_sha256": "identity",
    "DatasetError": "io",
    "IMAGE_EXTENSIONS": "io",
    "MASK_THRESHOLD": "io",
    "NEGATIVE": "io",
    "IMAGENET_MEAN": "utils",
    "IMAGENET_STD": "utils",
    "dataset_from_path": "utils",
    "detect_format": "utils",
    "load_test_datasets": "utils",
    "normalize_batch": "utils",
    "denormalize": "utils",
    "read_json_pairs": "utils",
    "make_synthetic_dataset": "synth",
    "check_dataset": "check",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOME))
