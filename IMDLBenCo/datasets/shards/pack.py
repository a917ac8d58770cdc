"""``benco data pack``: write a dataset into WebDataset tar shards, resumably, checked.

Every sample is decoded by the source dataset's own loader (so the stored pixels are exactly
what training reads from the files) in worker processes, encoded as ``.npy`` (+ zstd/lz4), and
written by WebDataset's ``TarWriter`` into ``shard-NNNNNN.tar`` files of about ``shard_size_mb``.
Each shard is written under a temporary name, read back (every stored image and mask decoded and
compared with the worker's digest), synced and renamed; the state after each shard goes to
``.pack_progress.json``. The index ``shards.json`` is written last (atomically), so a folder
without it is never read as complete, and running the same command again continues after the
last finished shard.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import DatasetError, UsageError
from . import FORMAT, FORMAT_VERSION, INDEX_NAME, PROGRESS_NAME, shard_kind
from .index import SAMPLE_FIELDS
from .payload import DEFAULT_CODEC, DEFAULT_LEVEL, SUFFIX, check_codec, decode_array, encode_array

__all__ = ["PackOptions", "PackResult", "pack_dataset", "BALANCED_NAME"]

#: the BalancedDataset file written beside the packed members of a balanced source
BALANCED_NAME = "balanced_dataset.json"
_SHARD = "shard-{:06d}.tar"
_TAR_MTIME = 0  # fixed member times: the same source and options give the same shard bytes


@dataclass
class PackOptions:
    max_side: int | None = None  # shrink images whose longer side is larger (a different dataset identity)
    keep_original_bytes: bool = False  # also store the original image file (CAT-Net reads its JPEG coefficients)
    codec: str = DEFAULT_CODEC
    level: int = DEFAULT_LEVEL
    shard_size_mb: float = 256.0
    samples_per_shard: int | None = None
    include_authentic: bool = False  # ManiDataset folders: also Au/ (as Negative samples)
    workers: int | None = None
    force: bool = False

    def record(self) -> dict[str, Any]:
        """What must match for a rerun to continue a pack (worker count and --force do not matter)."""
        return {"max_side": self.max_side, "original_bytes": bool(self.keep_original_bytes), "codec": self.codec,
                "level": self.level if self.codec == "zstd" else None, "shard_size_mb": float(self.shard_size_mb),
                "samples_per_shard": self.samples_per_shard, "include_authentic": bool(self.include_authentic)}


@dataclass
class PackResult:
    out: str
    samples: int = 0
    shards: int = 0
    shard_bytes: int = 0
    source_bytes: int = 0
    content_hash: str = ""
    resumed_samples: int = 0  # samples found already packed by an earlier, interrupted run
    seconds: float = 0.0
    members: list[PackResult] = field(default_factory=list)  # a balanced source: one per member
    data_path: str = ""  # what to pass as --data_path


def _check_options(opts: PackOptions) -> None:
    check_codec(opts.codec)
    if opts.max_side is not None and int(opts.max_side) < 16:
        raise UsageError(f"--max_side {opts.max_side}: expected a side of at least 16 pixels (e.g. 1024)")
    if not opts.shard_size_mb > 0:
        raise UsageError(f"--shard_size_mb {opts.shard_size_mb}: expected a positive size in MB (e.g. 256)")
    if opts.samples_per_shard is not None and int(opts.samples_per_shard) < 1:
        raise UsageError(f"--samples_per_shard {opts.samples_per_shard}: expected a positive number")
    if opts.codec == "zstd" and not 1 <= int(opts.level) <= 22:
        raise UsageError(f"--level {opts.level}: zstd levels are 1 to 22 (3 is its default)")


# ------------------------------------------------------------------------------ workers
_WORKER: dict[str, Any] = {}


def _init_worker(dataset: Any, opts: PackOptions) -> None:
    _WORKER["dataset"], _WORKER["opts"] = dataset, opts


def _shrink(image: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """As ``benco data prepare --long-side``: image bicubic, mask by area then > 0.5."""
    from PIL import Image

    h, w = mask.shape
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(image, "RGB").resize(size, Image.Resampling.BICUBIC))
    area = np.asarray(Image.fromarray(mask * np.uint8(255), "L").resize(size, Image.Resampling.BOX))
    return small, (area > 127).view(np.uint8)


def _encode_sample(i: int) -> dict[str, Any]:
    """Sample ``i`` of the worker's dataset as tar members, its metadata and pixel digests."""
    from ..io import NEGATIVE

    ds, opts = _WORKER["dataset"], _WORKER["opts"]
    image, mask = ds._load_pair(i)  # the loader's own decoding: the pixels training would read
    image = np.ascontiguousarray(np.asarray(image))
    mask = np.ascontiguousarray(mask)
    image_path, mask_path = ds.image_paths[i], ds.mask_paths[i]
    if opts.max_side is not None and max(mask.shape) > opts.max_side:
        image, mask = _shrink(image, mask, int(opts.max_side))
    suffix = SUFFIX[opts.codec]
    members: dict[str, bytes] = {f"image.{suffix}": encode_array(image, opts.codec, opts.level)}
    digests = {"image": hashlib.sha256(image.tobytes()).hexdigest()}
    negative = mask_path == NEGATIVE
    if not negative:
        members[f"mask.{suffix}"] = encode_array(mask, opts.codec, opts.level)
        digests["mask"] = hashlib.sha256(mask.tobytes()).hexdigest()
    source_bytes = os.path.getsize(image_path) + (0 if negative else os.path.getsize(mask_path))
    if opts.keep_original_bytes:
        ext = os.path.splitext(image_path)[1].lower().lstrip(".") or "bin"
        with open(image_path, "rb") as f:
            members[f"original.{ext}"] = f.read()
    meta = {"name": ds.names[i], "image_path": image_path, "mask_path": mask_path,
            "height": int(mask.shape[0]), "width": int(mask.shape[1]), "codec": opts.codec}
    members["json"] = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    return {"i": i, "members": members, "meta": meta, "digests": digests, "source_bytes": source_bytes,
            "bytes": sum(len(v) for v in members.values())}


# ------------------------------------------------------------------------------ files
def _write_json_atomic(path: str, payload: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _own_file(name: str) -> bool:
    return (name in (INDEX_NAME, PROGRESS_NAME) or (name.startswith("shard-") and ".tar" in name)
            or name.startswith(INDEX_NAME + ".tmp") or name.startswith(PROGRESS_NAME + ".tmp"))


def _prepare_out(out: str, identity: dict[str, Any], options: dict[str, Any], force: bool) -> dict[str, Any]:
    """The progress to continue from (empty for a fresh pack); refuses folders that are not ours."""
    os.makedirs(out, exist_ok=True)
    names = os.listdir(out)
    foreign = sorted(n for n in names if not _own_file(n))
    if foreign:
        raise UsageError(f"--out {out}: the folder holds other files ({', '.join(foreign[:5])}"
                         f"{', ...' if len(foreign) > 5 else ''}); give a new or empty folder, or a folder of an earlier "
                         f"`benco data pack`.")
    progress: dict[str, Any] = {}
    if INDEX_NAME in names:
        if not force:
            try:
                with open(os.path.join(out, INDEX_NAME), encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError):
                old = {}
            if (isinstance(old, dict) and old.get("source", {}).get("content_hash") == identity["content_hash"]
                    and old.get("options") == options):
                return {"complete": old}  # the same pack of the same files: nothing to do
            what = f" of {old.get('name')} ({old.get('num_samples')} samples, {str(old.get('content_hash'))[:19]}...)" \
                if isinstance(old, dict) and old else ""
            raise UsageError(f"--out {out}: it already holds a complete pack{what} of other files or with other "
                             f"options; pass --force to replace it.")
    elif PROGRESS_NAME in names:
        try:
            with open(os.path.join(out, PROGRESS_NAME), encoding="utf-8") as f:
                progress = json.load(f)
        except (OSError, ValueError):
            progress = {}
        same = (isinstance(progress, dict) and progress.get("source", {}).get("content_hash") == identity["content_hash"]
                and progress.get("options") == options)
        if not same and not force:
            raise UsageError(f"--out {out}: it holds an unfinished pack of another dataset or with other options; "
                             f"pass --force to start it again, or rerun the command that started it to finish it.")
        if not same:
            progress = {}
    if force or not progress:
        for n in names:
            os.remove(os.path.join(out, n))
        progress = {}
    else:  # continuing: leftovers of the interrupted shard go, finished shards must be intact
        for n in names:
            if ".tmp" in n:
                os.remove(os.path.join(out, n))
        for entry in progress.get("shardlist", []):
            path = os.path.join(out, entry["url"])
            if not os.path.isfile(path) or os.path.getsize(path) != entry["filesize"]:
                raise UsageError(f"--out {out}: {entry['url']} of the unfinished pack is missing or changed; pass "
                                 f"--force to start the pack again.")
    return progress


class _ShardWriter:
    """One shard being written under a temporary name."""

    def __init__(self, out: str, number: int) -> None:
        from webdataset import TarWriter

        self.number = number
        self.name = _SHARD.format(number)
        self.path = os.path.join(out, self.name)
        self.tmp = f"{self.path}.tmp-{os.getpid()}"
        self.file = open(self.tmp, "wb")
        self.tar = TarWriter(self.file, encoder=False, mtime=_TAR_MTIME)
        self.items: list[dict[str, Any]] = []
        self.bytes = 0

    def add(self, item: dict[str, Any]) -> None:
        key = f"{item['i']:08d}"
        self.tar.write({"__key__": key, **item["members"]})
        item["key"] = key
        del item["members"]  # the bytes are in the file now
        self.items.append(item)
        self.bytes += item["bytes"] + 512 * (len(item["digests"]) + 3)

    def finish(self, codec: str) -> tuple[dict[str, Any], list[list[Any]]]:
        """Close, read back and check, sync, rename; the shard's entry and sample rows."""
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        where: dict[str, tuple[int, int]] = {}
        with tarfile.open(self.tmp, "r:") as tf:
            for info in tf:
                where[info.name] = (info.offset_data, info.size)
        rows = []
        with open(self.tmp, "rb") as f:
            for item in self.items:
                key, suffix = item["key"], SUFFIX[codec]
                image = where.get(f"{key}.image.{suffix}")
                mask = where.get(f"{key}.mask.{suffix}", (0, 0))
                original = next((v for n, v in where.items() if n.startswith(f"{key}.original.")), (0, 0))
                if image is None or ("mask" in item["digests"] and not mask[1]):
                    raise DatasetError(f"{self.tmp}: sample {key} is incomplete after writing (disk full?); run the "
                                       f"pack again.")
                for role, (offset, size) in (("image", image), ("mask", mask)):
                    if role not in item["digests"]:
                        continue
                    f.seek(offset)
                    arr = decode_array(f.read(size), codec, f"{self.tmp} {key}.{role}")
                    if hashlib.sha256(arr.tobytes()).hexdigest() != item["digests"][role]:
                        raise DatasetError(f"{self.tmp}: {key}.{role} reads back different from what was written "
                                           f"(disk or memory fault?); run the pack again.")
                meta = item["meta"]
                rows.append([self.number, key, meta["name"], meta["image_path"], meta["mask_path"], meta["height"],
                             meta["width"], image[0], image[1], mask[0] if mask[1] else 0, mask[1],
                             original[0] if original[1] else 0, original[1]])
        entry = {"url": self.name, "nsamples": len(self.items), "filesize": os.path.getsize(self.tmp),
                 "sha256": _sha256_file(self.tmp)}
        os.replace(self.tmp, self.path)
        return entry, rows

    def abandon(self) -> None:
        for close in (self.tar.close, self.file.close):  # the tar first: it flushes into the file
            try:
                close()
            except (OSError, ValueError):
                pass
        try:
            os.remove(self.tmp)
        except OSError:
            pass


def _pool(dataset: Any, opts: PackOptions, workers: int):
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ctx.Pool(workers, initializer=_init_worker, initargs=(dataset, opts))


def _pack_one(dataset: Any, source: str, out: str, opts: PackOptions,
              progress_cb: Callable[[str], None]) -> PackResult:
    from ..identity import HASH_PREFIX, dataset_content_hash

    start = time.perf_counter()
    progress_cb(f"{source}: {len(dataset)} samples; hashing the source files (cached) ...")
    source_identity = dataset_content_hash(dataset)
    identity = dict(source_identity, path=os.path.abspath(source), **{"class": type(dataset).__name__})
    content_hash = source_identity["content_hash"]
    if opts.max_side is not None:  # other pixels: another dataset, derived from the source
        content_hash = HASH_PREFIX + hashlib.sha256(f"{content_hash}\nmax_side={int(opts.max_side)}\n".encode()).hexdigest()
    options = opts.record()
    progress = _prepare_out(out, source_identity, options, opts.force)
    done = progress.get("complete")
    if done is not None:
        progress_cb(f"{out}: already a complete pack of these files with these options; nothing to do")
        return PackResult(out=out, samples=done["num_samples"], shards=len(done["shardlist"]),
                          shard_bytes=done["shard_bytes"], source_bytes=done["source_bytes"],
                          content_hash=done["content_hash"], resumed_samples=done["num_samples"],
                          seconds=time.perf_counter() - start, data_path=out)
    shardlist: list[dict[str, Any]] = list(progress.get("shardlist", []))
    rows: list[list[Any]] = list(progress.get("samples", []))
    totals = {"source_bytes": int(progress.get("source_bytes", 0))}
    result = PackResult(out=out, resumed_samples=len(rows), content_hash=content_hash, data_path=out)
    if rows:
        progress_cb(f"{out}: continuing an unfinished pack after {len(rows)} samples in {len(shardlist)} shards")

    def save_progress() -> None:
        _write_json_atomic(os.path.join(out, PROGRESS_NAME), {
            "status": "incomplete", "source": source_identity, "options": options, "shardlist": shardlist,
            "samples": rows, "source_bytes": totals["source_bytes"]})

    if not rows:
        save_progress()  # from now on the folder is recognisably an unfinished pack
    limit = int(opts.shard_size_mb * 2**20)
    todo = list(range(len(rows), len(dataset)))
    workers = opts.workers if opts.workers is not None else min(4, os.cpu_count() or 1)
    writer: _ShardWriter | None = None
    pool = _pool(dataset, opts, workers) if workers > 0 and len(todo) > 1 else None
    if pool is None:
        _init_worker(dataset, opts)
    try:
        items = pool.imap(_encode_sample, todo, chunksize=1) if pool is not None else map(_encode_sample, todo)
        for item in items:
            if writer is None:
                writer = _ShardWriter(out, len(shardlist))
            totals["source_bytes"] += item["source_bytes"]
            writer.add(item)
            full = writer.bytes >= limit or (opts.samples_per_shard and len(writer.items) >= opts.samples_per_shard)
            if full or item["i"] == len(dataset) - 1:
                entry, new_rows = writer.finish(opts.codec)
                writer = None
                shardlist.append(entry)
                rows.extend(new_rows)
                save_progress()
                progress_cb(f"  {entry['url']}: {entry['nsamples']} samples, {entry['filesize'] / 2**20:.1f} MB "
                            f"({len(rows)}/{len(dataset)})")
    except BaseException:
        if writer is not None:
            writer.abandon()
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    from ...version import __version__

    index = {
        "__kind__": "wids-shard-index-v1", "wids_version": 1, "format": FORMAT, "format_version": FORMAT_VERSION,
        "name": os.path.basename(os.path.normpath(source)), "content_hash": content_hash,
        "files": source_identity["files"], "num_samples": len(rows), "source": identity, "options": options,
        "payload": {"codec": opts.codec, "level": options["level"], "max_side": opts.max_side,
                    "original_bytes": bool(opts.keep_original_bytes),
                    "image": "<key>.image.npy[.zst|.lz4]: H x W x 3 uint8 RGB, as the source's loader decodes it",
                    "mask": "<key>.mask.npy[.zst|.lz4]: H x W uint8 in {0, 1} (absent for a Negative sample)",
                    "original": "<key>.original.<ext>: the source image file's bytes (with --keep_original_bytes)",
                    "json": "<key>.json: name, image_path, mask_path, height, width, codec"},
        "shardlist": shardlist, "sample_fields": list(SAMPLE_FIELDS), "samples": rows,
        "source_bytes": totals["source_bytes"], "shard_bytes": sum(s["filesize"] for s in shardlist),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "imdlbenco_version": __version__,
    }
    _write_json_atomic(os.path.join(out, INDEX_NAME), index)  # last: from here on the pack is complete
    try:
        os.remove(os.path.join(out, PROGRESS_NAME))
    except OSError:
        pass
    result.samples, result.shards = len(rows), len(shardlist)
    result.shard_bytes, result.source_bytes = index["shard_bytes"], totals["source_bytes"]
    result.seconds = time.perf_counter() - start
    return result


def _member_dir(i: int, path: str) -> str:
    base = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "dataset"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)
    return f"{i:02d}_{safe}"


def pack_dataset(source: str, out: str, options: PackOptions | None = None,
                 progress: Callable[[str], None] | None = None) -> PackResult:
    """Pack the dataset at ``source`` (ManiDataset folder, JsonDataset or BalancedDataset file)
    into shards in ``out``; see the module docstring. A BalancedDataset's members are packed into
    ``out/NN_<name>/`` and ``out/balanced_dataset.json`` names them (pass that as --data_path)."""
    from ..utils import dataset_from_path

    opts = options or PackOptions()
    _check_options(opts)
    say = progress or (lambda line: None)
    source = str(source)
    if shard_kind(source):
        raise UsageError(f"{source}: this is already a shard folder (benco data pack output); pack the dataset it "
                         f"was made from instead.")
    dataset = dataset_from_path(source, keep_size=True, include_authentic=opts.include_authentic)
    members = getattr(dataset, "datasets", None)
    if members is None:
        return _pack_one(dataset, source, out, opts, say)
    start = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    entries, results = [], []
    for i, ((cls, path), member) in enumerate(zip(dataset.entries, members)):
        sub = _member_dir(i, path)
        say(f"member {i}: {cls} {path} -> {os.path.join(out, sub)}")
        results.append(_pack_one(member, path, os.path.join(out, sub), opts, say))
        entries.append(["ShardDataset", sub])
    balanced = os.path.join(out, BALANCED_NAME)
    tmp = f"{balanced}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(" " + json.dumps(e) for e in entries) + "\n]\n")
    os.replace(tmp, balanced)
    return PackResult(out=out, samples=sum(r.samples for r in results), shards=sum(r.shards for r in results),
                      shard_bytes=sum(r.shard_bytes for r in results), source_bytes=sum(r.source_bytes for r in results),
                      resumed_samples=sum(r.resumed_samples for r in results), seconds=time.perf_counter() - start,
                      members=results, data_path=balanced)

