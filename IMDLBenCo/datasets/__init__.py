"""Datasets: ``ManiDataset``, ``JsonDataset``, ``BalancedDataset`` and their helpers.

Importing this package registers the three classes in ``IMDLBenCo.registry.DATASETS`` (the
registry imports it lazily on the first look-up). See docs/ARCHITECTURE.md for the sample dict.
"""

from .io import IMAGE_EXTENSIONS, MASK_THRESHOLD, NEGATIVE, DatasetError
from .dataset import AbstractDataset, JsonDataset, ManiDataset
from .balanced import BalancedDataset
from .utils import IMAGENET_MEAN, IMAGENET_STD, dataset_from_path, denormalize, detect_format, load_test_datasets, normalize_batch

__all__ = [
    "AbstractDataset",
    "ManiDataset",
    "JsonDataset",
    "BalancedDataset",
    "DatasetError",
    "IMAGE_EXTENSIONS",
    "MASK_THRESHOLD",
    "NEGATIVE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "dataset_from_path",
    "detect_format",
    "load_test_datasets",
    "normalize_batch",
    "denormalize",
]
