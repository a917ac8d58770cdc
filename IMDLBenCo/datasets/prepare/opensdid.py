"""OpenSDID (Wang et al., OpenSDI, CVPR 2025): diffusion-generated and diffusion-edited images, per generator.

Published layout: two Hugging Face dataset repositories, ``nebula/OpenSDI_train`` (SD1.5 only) and
``nebula/OpenSDI_test`` (SD1.5, SD2.1, SDXL, SD3, Flux.1), each with parquet shards
``data/<generator>-NNNNN-of-NNNNN.parquet`` (generator: sd15, sd2, sdxl, sd3, flux) whose rows hold
``key`` (``partial/...`` for a local edit, ``entire/...`` for a fully generated image), ``image`` and
``mask`` (Hugging Face Image structs: encoded bytes) and ``label`` (0 real, 1 generated).

Written: local edits as Tp/Gt pairs (their masks), real images as Au, and fully generated images
with an all-white mask (every pixel generated; ``--opensdid-entire leave-out`` drops them), each
named ``<generator>_<train|test>_<key>``; ``splits/<generator>_<train|test>.json`` lists each split.
Reading parquet needs the ``pyarrow`` package (``pip install pyarrow``, the ``opensdid`` extra).
Assumed, not verified on the real shards: the column names and key prefixes (from loaders of the
Hugging Face repositories), train/test read from the shard's path (``OpenSDI_train``/``_test``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..io import DatasetError
from .archive import format_bytes
from .base import SIZE_RULE, Correction, DatasetSpec, Pair, Plan, PrepareOptions, decode_standard, not_found
from .sources import SourceTree

GENERATORS = ("sd15", "sd2", "sdxl", "sd3", "flux")
#: largest parquet row group read into memory at once (the published shards' are far smaller)
MAX_ROW_GROUP_BYTES = 2 << 30
ENTIRE = "fully generated image: all-white mask"
UNPACKED = "unpacked from the parquet shards"


def full_decoder() -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        return np.ones((img.height, img.width), dtype=bool)

    return decode


def _split_of(shown: str) -> str:
    low = shown.lower()
    for word in ("train", "test", "val"):
        if re.search(rf"(^|[^a-z]){word}", low):
            return word
    return "all"


def _payload(cell: object) -> bytes | None:
    """The encoded bytes of a Hugging Face Image cell (a struct with ``bytes``) or of a binary cell."""
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    return bytes(cell) if isinstance(cell, (bytes, bytearray, memoryview)) else None


def _ext(data: bytes, key: str) -> str:
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    ext = os.path.splitext(key)[1].lower()
    return ext if ext in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp") else ".png"


def _unpack(tree: SourceTree, folder: str, name: str, data: bytes, where: str) -> str:
    """Write one cell's bytes as ``folder/name`` within the run's extraction budget (rule 2)."""
    if len(data) > tree.budget.left:
        raise DatasetError(f"{where}: refused: unpacking it would exceed the {format_bytes(tree.budget.max_bytes)} "
                           f"one run may extract; pass a larger --max-extract-bytes.")
    tree.budget.used += len(data)
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _read_shard(tree: SourceTree, shard: str, plan: Plan, opts: PrepareOptions, counts: dict[str, int]) -> None:
    import pyarrow.parquet as pq

    shown = tree.display(shard)
    generator = os.path.basename(shard).split("-")[0].lower()
    split = _split_of(shown)
    group = f"{generator}_{split}"
    try:
        pf = pq.ParquetFile(shard)
    except Exception as err:  # ArrowInvalid and friends: not a parquet file, or cut short
        raise DatasetError(f"{shown}: not a readable parquet file ({type(err).__name__}: {err}); the download may be "
                           f"incomplete. Download it again.") from None
    columns = pf.schema_arrow.names
    missing = [c for c in ("key", "image", "label") if c not in columns]
    if missing:
        raise DatasetError(f"{shown}: columns {', '.join(missing)} missing (found: {', '.join(columns)}); expected "
                           f"OpenSDID's key, image, mask and label.")
    folder = os.path.join(tree.scratch_dir(), os.path.basename(shard))
    os.makedirs(folder)
    tree.add_root(folder, shown)
    entire = opts.opensdid_entire or "full-mask"
    wanted = [c for c in ("key", "image", "mask", "label") if c in columns]
    for rg in range(pf.num_row_groups):
        size = pf.metadata.row_group(rg).total_byte_size
        if size > MAX_ROW_GROUP_BYTES:  # rule 2: the declared size before the bytes are read
            raise DatasetError(f"{shown}: refused: row group {rg} declares {format_bytes(size)}, more than the "
                               f"{format_bytes(MAX_ROW_GROUP_BYTES)} read at once; not an OpenSDID shard as published.")
        for i, row in enumerate(pf.read_row_group(rg, columns=wanted).to_pylist()):
            key = str(row.get("key") or f"row{rg}_{i}")
            where = f"{shown} row {rg}:{i} ({key})"
            label = row.get("label")
            image = _payload(row.get("image"))
            if image is None:
                plan.leave_out(where, "no image bytes in the row", error=True)
                continue
            flat = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(key)[0]).strip("._") or f"row{rg}_{i}"
            name = f"{group}_{flat}"
            path = _unpack(tree, folder, name + _ext(image, key), image, where)
            counts[generator] = counts.get(generator, 0) + 1
            plan.groups[name] = group
            if label == 0:
                plan.authentic.append((path, name))
                continue
            if label != 1:
                plan.leave_out(where, f"label {label!r} is neither 0 (real) nor 1 (generated)", error=True)
                continue
            mask = _payload(row.get("mask"))
            if mask is not None:
                mask_path = _unpack(tree, folder, name + "_mask" + _ext(mask, key), mask, where)
                plan.pairs.append(Pair(path, mask_path, name, decode_standard))
            elif key.lower().startswith("partial/"):
                plan.leave_out(where, "a local edit (partial/) without a mask")
            elif entire == "full-mask":
                plan.pairs.append(Pair(path, path, name, full_decoder(), mask_rule=ENTIRE, synthetic_mask=True,
                                       notes=[(ENTIRE, name)]))
            else:
                plan.leave_out(where, "fully generated image (--opensdid-entire leave-out)", documented=True)


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    shards = tree.find_files(r"\.parquet$")
    if not shards:
        raise not_found(SPEC, "parquet shards data/<generator>-NNNNN-of-NNNNN.parquet of nebula/OpenSDI_train or "
                        "nebula/OpenSDI_test", tree)
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DatasetError("OpenSDID is published as parquet shards, which need the pyarrow package: "
                           "pip install pyarrow (or pip install 'imdlbenco[opensdid]'), then run the command again.") \
            from None
    counts: dict[str, int] = {}
    unknown = set()
    for shard in shards:
        why = tree.admit(shard)
        if why:
            plan.leave_out(tree.display(shard), f"parquet shard {why}", error=True)
            continue
        generator = os.path.basename(shard).split("-")[0].lower()
        if generator not in GENERATORS:
            unknown.add(generator)
        _read_shard(tree, shard, plan, opts, counts)
    plan.found = {f"{g} images": n for g, n in sorted(counts.items())}
    plan.found["shards"] = len(shards)
    if unknown:
        plan.notes.append(f"Shards of generators not in the documentation ({', '.join(sorted(unknown))}) were read "
                          f"the same way.")
    plan.corrections.append(Correction(ENTIRE, "a fully generated image (key entire/, no mask) is generated in every "
                                       "pixel (--opensdid-entire leave-out to drop them)", routine=True))
    plan.notes.append("Images and masks are unpacked from the parquet shards; the manifest names each by shard and "
                      "row key.")
    return plan


LAYOUT = """\
  OpenSDID (Hugging Face nebula/OpenSDI_train and nebula/OpenSDI_test; needs pyarrow):
    OpenSDI_test/data/{sd15,sd2,sdxl,sd3,flux}-NNNNN-of-NNNNN.parquet, OpenSDI_train/data/sd15-*.parquet
    (columns key, image, mask, label; pass the folders, or only the shards you want)
  e.g. benco data prepare opensdid OpenSDI_test --out data/OpenSDID_test [--opensdid-entire leave-out]"""

SPEC = DatasetSpec(
    "opensdid", "OpenSDID", ("opensdi", "open-sdi", "open-sdid"), LAYOUT,
    ("rows with label 0 -> Au; local edits (partial/) -> Tp/Gt with their masks; fully generated images "
     "(entire/) -> Tp with an all-white mask, or left out with --opensdid-entire leave-out",
     "one split per generator and train/test: splits/<generator>_<train|test>.json", SIZE_RULE),
    ("the column names (key, image, mask, label) and key prefixes (partial/, entire/) come from loaders of the "
     "Hugging Face repositories, not from a copy of the shards",
     "train/test is read from the shard's path (OpenSDI_train, OpenSDI_test)"),
    {}, "OpenSDID", ("opensdid_entire",), collect)
