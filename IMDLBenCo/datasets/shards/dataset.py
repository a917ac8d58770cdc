"""``ShardDataset``: a shard folder (``benco data pack``) read like the dataset it was packed from."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from ...errors import DatasetError
from ...registry import DATASETS
from ..dataset import AbstractDataset
from ..io import NEGATIVE
from .index import F, ShardReader, load_index
from .payload import decode_array

__all__ = ["ShardDataset"]

logger = logging.getLogger(__name__)
_warned_originals = False


@DATASETS.register_module()
class ShardDataset(AbstractDataset):
    """The samples of a shard folder, index file or URL (see :mod:`IMDLBenCo.datasets.shards.index`).

    Takes the constructor arguments of every dataset (padding/resizing, transforms, edge masks,
    post-functions, ...) and gives the items the source dataset gives, bit for bit: the pixels
    stored are what the source's loader decodes, and the rest of the pipeline is shared.
    ``image_path``/``mask_path`` are the source's paths as recorded when packing (for reports);
    nothing is read from them. When the original image files were kept (``--keep_original_bytes``),
    post-functions (CAT-Net's reads the JPEG's DCT coefficients) see ``image_path`` naming a
    temporary copy of the original file, restored afterwards.

    ``shuffle_buffer``: samples mixed by the training sampler (:func:`shard_train_sampler`).
    """

    packed = True  # checked when packed: the engine's file check skips it (its paths need not exist here)

    def __init__(self, path: str, *args: Any, shuffle_buffer: int = 4096, **kwargs: Any) -> None:
        self.shuffle_buffer = int(shuffle_buffer)
        super().__init__(path, *args, **kwargs)

    def _init_dataset_path(self, path: str) -> None:
        self.index = load_index(path)
        self.reader = ShardReader(self.index)
        rows = self.index.rows
        self.image_paths = [r[F["image_path"]] for r in rows]
        self.mask_paths = [r[F["mask_path"]] for r in rows]
        self.names = [r[F["name"]] for r in rows]
        self.codec = self.index.codec
        # made here, in the main process, so that DataLoader workers (which skip atexit) share it
        self._scratch = _scratch() if self.post_funcs and self.index.has_originals else None
        global _warned_originals
        if self.post_funcs and not self.index.has_originals and not _warned_originals:
            _warned_originals = True
            logger.warning("%s: packed without --keep_original_bytes, so post-functions see only the source paths "
                           "recorded at packing (CAT-Net reads its JPEG coefficients from there when the file exists, "
                           "else re-encodes the pixels). Pack with --keep_original_bytes to carry the files along.",
                           path)

    # -- identity and layout -------------------------------------------------------------
    def content_identity(self) -> dict[str, Any]:
        """``{"content_hash", "files", "samples"}`` of the source dataset, from the index."""
        return self.index.identity()

    @property
    def shard_sizes(self) -> list[int]:
        """Samples per shard, in order; shard k holds the next ``shard_sizes[k]`` indices."""
        return [int(s["nsamples"]) for s in self.index.shardlist]

    # -- loading -----------------------------------------------------------------------------
    def _where(self, index: int) -> str:
        return f"{self.index.location} sample {index} ({self.names[index]})"

    def _load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.index.rows[index]
        shard = row[F["shard"]]
        image = decode_array(self.reader.read(shard, row[F["image_offset"]], row[F["image_size"]]), self.codec,
                             self._where(index))
        h, w = int(row[F["height"]]), int(row[F["width"]])
        if image.shape != (h, w, 3) or image.dtype != np.uint8:
            raise DatasetError(f"{self._where(index)}: stored image is {image.shape} {image.dtype}, expected "
                               f"({h}, {w}, 3) uint8; the shard does not match its index. Pack again.")
        if row[F["mask_size"]] == 0:
            return image, np.zeros((h, w), np.uint8)
        mask = decode_array(self.reader.read(shard, row[F["mask_offset"]], row[F["mask_size"]]), self.codec,
                            self._where(index))
        if mask.shape != (h, w) or mask.dtype != np.uint8:
            raise DatasetError(f"{self._where(index)}: stored mask is {mask.shape} {mask.dtype}, expected ({h}, {w}) "
                               f"uint8; the shard does not match its index. Pack again.")
        return image, mask

    def original_bytes(self, index: int) -> bytes:
        """The original image file of sample ``index`` (packed with ``--keep_original_bytes``)."""
        row = self.index.rows[index]
        if not row[F["original_size"]]:
            raise DatasetError(f"{self._where(index)}: the original file was not kept (pack with "
                               f"--keep_original_bytes).")
        return self.reader.read(row[F["shard"]], row[F["original_offset"]], row[F["original_size"]])

    def _run_post_funcs(self, index: int, sample: dict[str, Any]) -> None:
        if not self.post_funcs:
            return
        if not self.index.has_originals or not self.index.rows[index][F["original_size"]]:
            super()._run_post_funcs(index, sample)
            return
        recorded = sample.get("image_path")
        ext = os.path.splitext(str(recorded))[1] if recorded and recorded != NEGATIVE else ""
        folder = self._scratch if self._scratch and os.path.isdir(self._scratch) else _scratch()
        fd, tmp = tempfile.mkstemp(prefix="original-", suffix=ext, dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.original_bytes(index))
            sample["image_path"] = tmp
            super()._run_post_funcs(index, sample)
        finally:
            if sample.get("image_path") == tmp:
                sample["image_path"] = recorded
            try:
                os.remove(tmp)
            except OSError:
                pass

    def __str__(self) -> str:
        return (f"[{type(self).__name__}] at {self.entry_path}, with length of {len(self):,} "
                f"({len(self.index.shardlist)} shards, {self.codec}, {self.index.data['content_hash'][:19]}...)")

    __repr__ = __str__


_SCRATCH: dict[int, str] = {}


def _scratch() -> str:
    """A private temporary folder per process (removed at exit) for original files handed to
    post-functions."""
    pid = os.getpid()
    folder = _SCRATCH.get(pid)
    if folder is None or not os.path.isdir(folder):
        folder = _SCRATCH[pid] = tempfile.mkdtemp(prefix="imdlbenco-originals-")
        atexit.register(shutil.rmtree, folder, True)
    return folder
