"""Datasets packed into WebDataset tar shards (``benco data pack``) and read back transparently.

A shard folder holds ``shard-000000.tar`` ... (WebDataset's layout: one tar member per field,
``<key>.<field>``, a sample's members side by side) and ``shards.json``, the index, written last:
a folder without it is an unfinished pack, which no reader accepts. Pixels are stored decoded
(``.npy``, uint8, optionally zstd/lz4-compressed), so reading skips image decoding;
``--keep_original_bytes`` adds the original image file. The index records, per sample, where its
members lie in the shard (so one sample is one read), and the content hash of the source dataset
(:mod:`IMDLBenCo.datasets.identity`), so results name the same dataset either way it is read.

``ShardDataset`` gives items equal bit for bit to those of the source files (same decoding, then
the shared pad/resize/augmentation/post-function pipeline of ``AbstractDataset``). For training,
:func:`shard_train_sampler` gives each rank a disjoint, contiguous run of the epoch's shard order,
shuffled with a buffer; evaluation uses the usual exact ``EvalSampler``.

This module imports nothing heavy: the dataset, sampler, packer and readers are loaded on use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

#: the index file of a shard folder; written last, so its presence means a complete pack
INDEX_NAME = "shards.json"
#: ``format`` field of the index
FORMAT = "imdlbenco-shards"
FORMAT_VERSION = 1
#: the packer's state while a pack is unfinished (removed when the index is written)
PROGRESS_NAME = ".pack_progress.json"

_HOME = {
    "ShardDataset": "dataset",
    "ShardTrainSampler": "sampler",
    "shard_train_sampler": "sampler",
    "pack_dataset": "pack",
    "PackResult": "pack",
    "load_index": "index",
    "ShardIndex": "index",
    "encode_array": "payload",
    "decode_array": "payload",
    "CODECS": "payload",
}

__all__ = sorted(_HOME) + ["INDEX_NAME", "FORMAT", "FORMAT_VERSION", "PROGRESS_NAME", "is_url", "shard_kind"]


def is_url(path: str) -> bool:
    """True for a remote location WebDataset's ``gopen`` opens (``https://``, ``pipe:CMD``, ...);
    ``file://`` and plain paths are local."""
    path = str(path)
    if path.startswith("pipe:"):
        return True
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme.lower() != "file" and len(scheme) > 1


def shard_kind(path: str) -> str:
    """``"complete"`` for a shard folder/index/URL, ``"incomplete"`` for a folder holding an
    unfinished pack, ``""`` for anything else. Reads at most the first bytes of a JSON file."""
    path = str(path)
    if is_url(path):
        return "complete"
    if path.startswith("file://"):
        path = path[len("file://"):]
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, INDEX_NAME)):
            return "complete"
        return "incomplete" if os.path.isfile(os.path.join(path, PROGRESS_NAME)) else ""
    if os.path.isfile(path) and path.lower().endswith(".json"):
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            return ""
        return "complete" if f'"{FORMAT}"'.encode() in head and head.lstrip()[:1] == b"{" else ""
    return ""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
