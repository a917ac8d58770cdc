"""``--val_split F``: a seeded fraction of the training data held out as the validation set.

The split is made once, by rank 0, and written to ``val_split.json`` in the run folder together
with two JsonDataset files (``val_split/validation.json`` and the training part; for a
BalancedDataset, one training file per member and a balanced file over them, so Protocol-CAT's
per-member sampling stays as it was). A resumed run reads ``val_split.json`` back, so the
held-out files never change within a run, and no held-out file is ever trained on.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import runfolder
from ..errors import UsageError
from .writers import write_json

logger = logging.getLogger("IMDLBenCo.engine")

__all__ = ["split_training_data", "hold_out"]

SPLIT_DIR = "val_split"


def hold_out(pairs: Sequence[tuple[str, str]], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(training indices, validation indices)`` of ``pairs``: ``round(fraction × n)`` (at least 1,
    at most n − 1) drawn by ``random.Random(seed)`` over the pairs sorted by image path, so the
    split depends on the files, not on their listing order."""
    n = len(pairs)
    if n < 2:
        raise UsageError(f"--val_split {fraction}: the training data has {n} pair(s); at least 2 are needed to hold "
                         f"one out (give --val_data_path instead)")
    order = sorted(range(n), key=lambda i: (pairs[i][0], pairs[i][1]))
    k = min(max(1, round(fraction * n)), n - 1)
    chosen = set(random.Random(int(seed)).sample(order, k))
    return [i for i in order if i not in chosen], [i for i in order if i in chosen]


def _members(dataset: Any) -> list[Any]:
    subs = getattr(dataset, "datasets", None)
    return list(subs) if subs is not None else [dataset]


def _pairs(dataset: Any, data_path: str) -> list[tuple[str, str]]:
    images, masks = getattr(dataset, "image_paths", None), getattr(dataset, "mask_paths", None)
    if images is None or masks is None:
        raise UsageError(f"--val_split: {data_path} is not a dataset of image files (e.g. packed shards); hold out "
                         f"validation data when packing, and give it with --val_data_path")
    return [(os.path.abspath(i), m if m == "Negative" else os.path.abspath(m)) for i, m in zip(images, masks)]


def split_training_data(data_path: str, fraction: float, seed: int, out_dir: Path, reuse: bool = False) -> dict[str, Any]:
    """Split ``data_path`` (rank 0); returns ``{"training": path, "validation": path, "count": n}``.

    ``reuse``: a resumed run; an existing ``val_split.json`` of the same fraction and seed is
    used as it is (a different one is an error: the held-out files would change mid-run)."""
    record_path = out_dir / runfolder.VAL_SPLIT
    if reuse and record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("fraction") != fraction or record.get("seed") != seed:
            raise UsageError(f"--val_split {fraction} --seed {seed}: the run in {out_dir} held out its validation data "
                             f"with --val_split {record.get('fraction')} --seed {record.get('seed')} "
                             f"({runfolder.VAL_SPLIT}); resume with those values, or start a new run")
        logger.info("validation: the %d held-out file(s) of %s", record["count"], record_path)
        return {"training": record["training"], "validation": record["validation"], "count": record["count"]}
    from ..datasets import dataset_from_path

    dataset = dataset_from_path(data_path, is_resizing=True, output_size=(8, 8))
    folder = out_dir / SPLIT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    validation: list[list[str]] = []
    training_files: list[tuple[str, str]] = []
    for i, member in enumerate(_members(dataset)):
        pairs = _pairs(member, data_path)
        keep, held = hold_out(pairs, fraction, seed + i)
        validation += [list(pairs[j]) for j in held]
        part = folder / f"training-{i}.json"
        write_json(part, [list(pairs[j]) for j in keep])
        training_files.append((type(member).__name__, str(part)))
    write_json(folder / "validation.json", validation)
    if len(training_files) > 1 or getattr(dataset, "datasets", None) is not None:
        training = folder / "training.json"
        write_json(training, [["JsonDataset", path] for _, path in training_files])
    else:
        training = Path(training_files[0][1])
    record = {"fraction": fraction, "seed": seed, "source": os.path.abspath(data_path), "count": len(validation),
              "training": str(training), "validation": str(folder / "validation.json"),
              "held_out": [p[0] for p in validation]}
    write_json(record_path, record)
    logger.info("validation: %d of the training pairs held out (--val_split %g, seed %d), listed in %s", len(validation),
                fraction, seed, record_path)
    return {"training": record["training"], "validation": record["validation"], "count": record["count"]}
