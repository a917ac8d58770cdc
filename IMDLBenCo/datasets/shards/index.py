"""The shard index (``shards.json``): reading, checking, and reading sample bytes from shards.

Index format (JSON object, version 1)::

    {
      "__kind__": "wids-shard-index-v1", "wids_version": 1,    # also a valid webdataset `wids` index
      "format": "imdlbenco-shards", "format_version": 1,
      "name": "<source folder or file name>",
      "content_hash": "sha256:<hex>",        # identity of the pixels read (the source's, unless --max_side)
      "files": n, "num_samples": n,        # files hashed, samples
      "source": {"path", "class", "content_hash", "files", "samples"},
      "payload": {"codec": "zstd"|"lz4"|"none", "level", "max_side", "original_bytes", ...},
      "shardlist": [{"url": "shard-000000.tar", "nsamples": n, "filesize": bytes, "sha256": hex}, ...],
      "sample_fields": ["shard", "key", "name", "image_path", "mask_path", "height", "width",
                        "image_offset", "image_size", "mask_offset", "mask_size",
                        "original_offset", "original_size"],
      "samples": [[...one row per sample, in dataset order...], ...],
      "created": "...", "imdlbenco_version": "..."
    }

Offsets are byte offsets of a member's data inside its shard file (a plain tar), so one sample is
one or two reads. ``mask_size`` 0 is an authentic (``Negative``) sample, ``original_size`` 0 a
sample without its original file. A shard ``url`` is relative to the index's folder or URL.

Locations: a local folder or index file; ``file://``; any URL WebDataset's ``gopen`` opens
(``https://host/data/shards``: the index is ``.../shards.json``); or ``pipe:COMMAND`` with
``{name}`` where the file name goes (``pipe:aws s3 cp s3://bucket/casia2/{name} -``). Remote shards
are fetched whole, once per machine, into ``$IMDLBENCO_CACHE_DIR/shards`` (checked by sha256),
and read from there.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from ...errors import DatasetError
from . import FORMAT, FORMAT_VERSION, INDEX_NAME, PROGRESS_NAME, is_url

__all__ = ["SAMPLE_FIELDS", "ShardIndex", "ShardReader", "load_index", "locate"]

SAMPLE_FIELDS = ("shard", "key", "name", "image_path", "mask_path", "height", "width",
                 "image_offset", "image_size", "mask_offset", "mask_size", "original_offset", "original_size")
F = {name: i for i, name in enumerate(SAMPLE_FIELDS)}
_OPEN_FILES = 64  # shard files kept open per process (least recently used closed first)


def _local(path: str) -> str:
    if path.startswith("file://"):
        return unquote(urlparse(path).path)
    return path


def locate(path: str) -> tuple[str, str, bool]:
    """``(index location, base, remote)`` for a shard folder, index file or URL."""
    path = str(path)
    if path.startswith("pipe:"):
        if "{name}" not in path:
            raise DatasetError(f"{path}: a pipe: location needs {{name}} where the file name goes, e.g. "
                               f"'pipe:aws s3 cp s3://bucket/shards/{{name}} -' (the index is {INDEX_NAME})")
        return path.replace("{name}", INDEX_NAME), path, True
    if is_url(path):
        if path.lower().endswith(".json"):
            return path, path.rsplit("/", 1)[0], True
        base = path.rstrip("/")
        return f"{base}/{INDEX_NAME}", base, True
    local = _local(path)
    if os.path.isdir(local):
        return os.path.join(local, INDEX_NAME), local, False
    return local, os.path.dirname(os.path.abspath(local)), False


def _member_location(base: str, remote: bool, url: str) -> str:
    if is_url(url) or os.path.isabs(url):
        return url
    if not remote:
        return os.path.join(base, url)
    if base.startswith("pipe:"):
        return base.replace("{name}", url)
    return f"{base}/{url}"


def _read_remote(location: str) -> bytes:
    try:
        from webdataset.gopen import gopen

        with gopen(location, "rb") as f:
            return f.read()
    except Exception as err:  # noqa: BLE001 - curl/pipe failures surface as assorted errors
        raise DatasetError(f"{location}: cannot read it ({type(err).__name__}: {err}). Check the URL and the "
                           f"network (webdataset's gopen runs curl for http(s), the command for pipe:).") from err


@dataclass
class ShardIndex:
    """A checked shard index and where its shards are."""

    location: str  # what the user gave
    index_path: str  # the index file or URL read
    base: str  # the folder, URL prefix or pipe template that shard names are relative to
    remote: bool
    data: dict[str, Any]
    rows: list[list[Any]] = field(default_factory=list)

    @property
    def codec(self) -> str:
        return self.data["payload"]["codec"]

    @property
    def shardlist(self) -> list[dict[str, Any]]:
        return self.data["shardlist"]

    @property
    def has_originals(self) -> bool:
        return bool(self.data["payload"].get("original_bytes"))

    def shard_location(self, k: int) -> str:
        return _member_location(self.base, self.remote, self.shardlist[k]["url"])

    def identity(self) -> dict[str, Any]:
        """What :func:`IMDLBenCo.datasets.identity.dataset_content_hash` returns for these shards."""
        return {"content_hash": self.data["content_hash"], "files": int(self.data["files"]),
                "samples": len(self.rows)}


def _check(index_path: str, data: Any) -> None:
    def bad(what: str) -> DatasetError:
        return DatasetError(f"{index_path}: {what}. It is not a shard index written by `benco data pack`, or it was "
                            f"damaged; pack the dataset again.")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f"no \"format\": \"{FORMAT}\" field")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DatasetError(f"{index_path}: shard format version {version!r}; this IMDLBenCo reads version "
                           f"{FORMAT_VERSION} and older. Upgrade IMDLBenCo (pip install -U imdlbenco) or pack again.")
    payload = data.get("payload")
    if not isinstance(payload, dict) or payload.get("codec") not in ("zstd", "lz4", "none"):
        raise bad("its payload codec is missing or unknown")
    if not isinstance(data.get("content_hash"), str) or not data["content_hash"].startswith("sha256:"):
        raise bad("no content_hash")
    shards = data.get("shardlist")
    if not isinstance(shards, list) or not shards or not all(
            isinstance(s, dict) and isinstance(s.get("url"), str) and isinstance(s.get("nsamples"), int)
            for s in shards):
        raise bad("its shardlist is missing or malformed")
    if data.get("sample_fields") != list(SAMPLE_FIELDS):
        raise bad(f"its sample_fields are not {list(SAMPLE_FIELDS)}")
    rows = data.get("samples")
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(SAMPLE_FIELDS) for r in rows):
        raise bad("its samples are missing or malformed")
    if sum(s["nsamples"] for s in shards) != len(rows):
        raise bad(f"its shards hold {sum(s['nsamples'] for s in shards)} samples but it lists {len(rows)}")
    expected = [k for k, s in enumerate(shards) for _ in range(s["nsamples"])]
    if [r[F["shard"]] for r in rows] != expected:
        raise bad("its samples are not listed shard by shard")


def load_index(path: str) -> ShardIndex:
    """The checked index of the shards at ``path`` (folder, index file or URL); one
    :class:`DatasetError` naming the location for anything else (an unfinished pack included)."""
    index_path, base, remote = locate(path)
    if remote:
        raw = _read_remote(index_path)
    else:
        folder = base if os.path.isdir(_local(str(path))) else None
        if folder is not None and not os.path.isfile(index_path):
            if os.path.isfile(os.path.join(folder, PROGRESS_NAME)):
                raise DatasetError(f"{path}: an unfinished `benco data pack` (no {INDEX_NAME} yet). Run the same "
                                   f"`benco data pack ... --out {path}` again to finish it.")
            raise DatasetError(f"{path}: no {INDEX_NAME} in this folder; it is not a shard folder written by "
                               f"`benco data pack`.")
        try:
            with open(index_path, "rb") as f:
                raw = f.read()
        except OSError as err:
            raise DatasetError(f"{index_path}: cannot read the shard index ({err.strerror or err}).") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise DatasetError(f"{index_path}: the shard index is not valid JSON ({err}); pack the dataset again.") from None
    _check(index_path, data)
    return ShardIndex(location=str(path), index_path=index_path, base=base, remote=remote, data=data,
                      rows=data["samples"])


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Lock:
    """An exclusive lock file (fcntl where there is one; elsewhere none: concurrent fetches then
    both download, and the second rename wins, which is still correct)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.f = None

    def __enter__(self) -> _Lock:
        try:
            import fcntl
        except ImportError:
            return self
        self.f = open(self.path, "a")
        fcntl.flock(self.f.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.f is not None:
            self.f.close()  # closing releases the lock


class ShardReader:
    """Reads members of the shards of one index: local files directly, remote shards from the
    local cache (fetched on first use). One per dataset; file handles are per process, so it
    survives DataLoader workers being forked."""

    def __init__(self, index: ShardIndex) -> None:
        self.index = index
        self._pid = -1
        self._files: collections.OrderedDict[int, Any] = collections.OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"index": self.index}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["index"])

    def cache_folder(self) -> str:
        from ..identity import cache_dir

        key = hashlib.sha256(self.index.base.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return os.path.join(cache_dir(), "shards", key)

    def local_path(self, k: int) -> str:
        """A local file holding shard ``k`` (fetched into the cache first when remote)."""
        if not self.index.remote:
            return self.index.shard_location(k)
        entry = self.index.shardlist[k]
        sha = entry.get("sha256") or ""
        folder = self.cache_folder()
        # content-addressed name: a changed remote dataset never reuses a stale file
        dest = os.path.join(folder, f"{sha[:16]}-{os.path.basename(entry['url'])}")
        size = entry.get("filesize")
        if os.path.isfile(dest) and (size is None or os.path.getsize(dest) == size):
            return dest
        os.makedirs(folder, exist_ok=True)
        with _Lock(dest + ".lock"):
            if os.path.isfile(dest) and (size is None or os.path.getsize(dest) == size):
                return dest
            url = self.index.shard_location(k)
            tmp = f"{dest}.tmp-{os.getpid()}"
            try:
                from webdataset.gopen import gopen

                with gopen(url, "rb") as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except Exception as err:  # noqa: BLE001
                _remove(tmp)
                raise DatasetError(f"{url}: cannot fetch this shard ({type(err).__name__}: {err}).") from err
            got_size = os.path.getsize(tmp)
            if (size is not None and got_size != size) or (sha and _sha256_file(tmp) != sha):
                _remove(tmp)
                raise DatasetError(f"{url}: the fetched shard ({got_size} bytes) does not match its index "
                                   f"({size} bytes, sha256 {sha[:16]}...); the remote copy is incomplete or was "
                                   f"changed after packing.")
            os.replace(tmp, dest)
        return dest

    def _file(self, k: int) -> Any:
        if self._pid != os.getpid():  # a forked worker: its own handles
            self._files = collections.OrderedDict()
            self._pid = os.getpid()
        f = self._files.get(k)
        if f is not None:
            self._files.move_to_end(k)
            return f
        path = self.local_path(k)
        try:
            f = open(path, "rb", buffering=0)
        except OSError as err:
            raise DatasetError(f"{path}: cannot open this shard of {self.index.location} ({err.strerror or err}).") from None
        self._files[k] = f
        if len(self._files) > _OPEN_FILES:
            self._files.popitem(last=False)[1].close()
        return f

    def read(self, k: int, offset: int, size: int) -> bytes:
        f = self._file(k)
        if hasattr(os, "pread"):
            data = os.pread(f.fileno(), size, offset)
        else:  # pragma: no cover - Windows
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise DatasetError(f"{self.index.shard_location(k)}: shard is shorter than its index says "
                               f"({offset + len(data)} < {offset + size} bytes); it is truncated. Pack again.")
        return data

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass

