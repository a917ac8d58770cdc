"""Content identity of files and datasets: sha256 of bytes, cached, and one hash per dataset.

``file_sha256(path)`` is the hex sha256 of a file (what ``sha256sum`` prints), remembered in a
cache keyed by the file's real path, size and modification time (ns), so hashing an unchanged
dataset again reads nothing. The cache lives in ``$IMDLBENCO_CACHE_DIR`` (default
``~/.cache/imdlbenco``) under ``file_sha256/``: one small JSON file per source folder, so a
dataset's folder loads only its own entries. It is written atomically (temporary file, then
rename) and a corrupt, unreadable or unwritable cache is ignored: the hash is then computed.

``dataset_content_hash(dataset)`` names a dataset by its content, wherever it lies on disk:
the sha256 over the sorted lines ``"<role>\\t<sample name>\\t<size>\\t<sha256>"`` (role
``image`` or ``mask``; an authentic sample's mask line reads ``mask\\t<name>\\t0\\tNegative``),
joined with ``"\\n"`` and ending with one, UTF-8. A BalancedDataset is named by its members: the
sha256 over its lines ``"dataset\\t<member index>\\t<samples>\\t<member content hash>"``. A shard
folder (``benco data pack``) carries the hash of the dataset it was packed from.

Standard library only: importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = [
    "cache_dir",
    "file_sha256",
    "files_sha256",
    "dataset_content_hash",
    "path_content_hash",
    "content_lines",
    "HASH_PREFIX",
]

#: prefix of a dataset content hash (``"sha256:<hex>"``): says which digest it is
HASH_PREFIX = "sha256:"
NEGATIVE = "Negative"  # as IMDLBenCo.datasets.io.NEGATIVE (not imported: that module loads numpy)
_CHUNK = 1 << 20  # bytes read at a time: constant memory for any file size
_CACHE_VERSION = 1


def cache_dir() -> str:
    """``$IMDLBENCO_CACHE_DIR``, or ``~/.cache/imdlbenco``."""
    return os.environ.get("IMDLBENCO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "imdlbenco")


def _hash_file(path: str) -> str:
    """sha256 of the bytes of ``path`` (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


class _FolderCache:
    """The cached hashes of the files of one folder: ``{file name: [size, mtime_ns, sha256]}``."""

    def __init__(self, root: str, folder: str) -> None:
        key = hashlib.sha256(os.fsencode(folder)).hexdigest()[:32]
        self.path = os.path.join(root, "file_sha256", f"{key}.json")
        self.folder = folder
        self.entries: dict[str, list[Any]] = {}
        self.dirty: dict[str, list[Any]] = {}
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return  # absent or corrupt: start empty (never an error)
        if isinstance(data, dict) and data.get("version") == _CACHE_VERSION and data.get("folder") == self.folder:
            entries = data.get("files")
            if isinstance(entries, dict):
                self.entries = entries

    def get(self, name: str, size: int, mtime_ns: int) -> str | None:
        entry = self.entries.get(name)
        if (isinstance(entry, list) and len(entry) == 3 and entry[0] == size and entry[1] == mtime_ns
                and isinstance(entry[2], str) and len(entry[2]) == 64):
            return entry[2]
        return None

    def put(self, name: str, size: int, mtime_ns: int, sha: str) -> None:
        self.entries[name] = self.dirty[name] = [size, mtime_ns, sha]

    def flush(self) -> None:
        """Merge the new entries into the file on disk (another process may have added its own)."""
        if not self.dirty:
            return
        fresh = _FolderCache.__new__(_FolderCache)
        fresh.path, fresh.folder, fresh.entries = self.path, self.folder, {}
        fresh._load()
        merged = dict(fresh.entries)
        merged.update(self.dirty)
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=os.path.dirname(self.path))
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"version": _CACHE_VERSION, "folder": self.folder, "files": merged}, f,
                              separators=(",", ":"))
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.remove(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            return  # unwritable cache: the hashes are still right, only not remembered
        self.entries = merged
        self.dirty = {}


class _Cache:
    """Per-folder caches under one cache root, loaded on first use."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.folders: dict[str, _FolderCache] = {}
        self.lock = threading.Lock()

    def folder(self, folder: str) -> _FolderCache:
        with self.lock:
            fc = self.folders.get(folder)
            if fc is None:
                fc = self.folders[folder] = _FolderCache(self.root, folder)
            return fc

    def flush(self) -> None:
        for fc in self.folders.values():
            fc.flush()


def _stat_key(path: str) -> tuple[str, int, int]:
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_size, st.st_mtime_ns


def _cached_sha256(path: str, cache: _Cache) -> tuple[str, int]:
    """``(sha256, size)`` of ``path`` through ``cache`` (the file is read only on a miss)."""
    real, size, mtime_ns = _stat_key(path)
    fc = cache.folder(os.path.dirname(real))
    name = os.path.basename(real)
    sha = fc.get(name, size, mtime_ns)
    if sha is None:
        sha = _hash_file(real)
        # the file changed while it was read: do not remember a hash of bytes that may be gone
        if _stat_key(real)[1:] == (size, mtime_ns):
            with cache.lock:
                fc.put(name, size, mtime_ns, sha)
    return sha, size


def file_sha256(path: str) -> str:
    """The hex sha256 of the file at ``path`` (equals ``sha256sum``), cached by (real path, size,
    mtime_ns) in :func:`cache_dir`. Raises ``OSError`` (e.g. FileNotFoundError) for a missing file."""
    cache = _Cache(cache_dir())
    sha, _ = _cached_sha256(os.fspath(path), cache)
    cache.flush()
    return sha


def files_sha256(paths: Sequence[str], workers: int | None = None) -> dict[str, tuple[str, int]]:
    """``{path: (sha256, size)}`` for many files, read in parallel where not cached; the cache is
    written once at the end. Raises ``OSError`` naming the first file that cannot be read."""
    cache = _Cache(cache_dir())
    unique = list(dict.fromkeys(os.fspath(p) for p in paths))
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    out: dict[str, tuple[str, int]] = {}
    try:
        if workers <= 1 or len(unique) < 4:
            for p in unique:
                out[p] = _cached_sha256(p, cache)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:  # hashlib releases the GIL
                for p, result in zip(unique, pool.map(lambda q: _cached_sha256(q, cache), unique)):
                    out[p] = result
    finally:
        cache.flush()  # what was hashed before a failure is kept
    return out


# ------------------------------------------------------------------------------ datasets
def _leaves(dataset: Any) -> list[Any]:
    subs = getattr(dataset, "datasets", None)
    if subs is not None:
        return [leaf for sub in subs for leaf in _leaves(sub)]
    return [dataset]


def content_lines(names: Sequence[str], image_paths: Sequence[str], mask_paths: Sequence[str],
                  hashes: dict[str, tuple[str, int]]) -> list[str]:
    """The sorted identity lines of a file dataset (see the module docstring)."""
    lines = []
    for name, image, mask in zip(names, image_paths, mask_paths):
        sha, size = hashes[image]
        lines.append(f"image\t{name}\t{size}\t{sha}")
        if mask == NEGATIVE:
            lines.append(f"mask\t{name}\t0\t{NEGATIVE}")
        else:
            sha, size = hashes[mask]
            lines.append(f"mask\t{name}\t{size}\t{sha}")
    return sorted(lines)


def _digest(lines: Iterable[str]) -> str:
    text = "".join(line + "\n" for line in lines)
    return HASH_PREFIX + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _file_dataset_hash(dataset: Any, workers: int | None) -> dict[str, Any]:
    from ..errors import DatasetError

    names, images, masks = list(dataset.names), list(dataset.image_paths), list(dataset.mask_paths)
    files = [p for p in images + masks if p != NEGATIVE]
    try:
        hashes = files_sha256(files, workers=workers)
    except OSError as err:
        where = getattr(dataset, "entry_path", "the dataset")
        raise DatasetError(f"{err.filename or where}: cannot be read to compute the content hash of {where} "
                           f"({err.strerror or err}). Run `benco data check {where}`.") from err
    return {"content_hash": _digest(content_lines(names, images, masks, hashes)),
            "files": len(set(files)), "samples": len(names)}


def dataset_content_hash(dataset: Any, workers: int | None = None) -> dict[str, Any]:
    """``{"content_hash": "sha256:<hex>", "files": n, "samples": n}`` of a dataset object
    (ManiDataset, JsonDataset, BalancedDataset, ShardDataset): the same files give the same hash
    wherever they lie. A BalancedDataset's result adds ``"members"``: its members' results."""
    own = getattr(dataset, "content_identity", None)
    if callable(own):  # shards: the hash of the dataset they were packed from, read from their index
        return dict(own())
    subs = getattr(dataset, "datasets", None)
    if subs is not None:
        members = [dataset_content_hash(sub, workers=workers) for sub in subs]
        lines = sorted(f"dataset\t{i}\t{m['samples']}\t{m['content_hash']}" for i, m in enumerate(members))
        return {"content_hash": _digest(lines), "files": sum(m["files"] for m in members),
                "samples": sum(m["samples"] for m in members), "members": members}
    for attr in ("names", "image_paths", "mask_paths"):
        if not hasattr(dataset, attr):
            raise TypeError(f"dataset_content_hash: {type(dataset).__name__} has no {attr!r}; expected a "
                            f"ManiDataset, JsonDataset, BalancedDataset or ShardDataset")
    return _file_dataset_hash(dataset, workers)


def path_content_hash(path: str, workers: int | None = None) -> dict[str, Any]:
    """:func:`dataset_content_hash` of the dataset at ``path`` (folder, JSON file or shards),
    built without decoding any image."""
    from .utils import dataset_from_path

    return dataset_content_hash(dataset_from_path(str(path), keep_size=True), workers=workers)
