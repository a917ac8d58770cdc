"""Extracting the archives a user downloaded (.zip and .tar*) into a temporary folder, within limits.

Before anything is written, the members' declared sizes are checked (rule 2 of :mod:`.base`):

* the total uncompressed size of everything one run extracts is at most ``max_bytes``
  (``--max-extract-bytes``, default :data:`DEFAULT_MAX_EXTRACT_BYTES`) and fits the free disk space;
* a member (zip) or a whole compressed archive (.tar.gz, .tar.bz2, .tar.xz) that would grow more than
  :data:`MAX_RATIO` times when decompressed, and to more than :data:`RATIO_FLOOR` bytes, is refused:
  images and masks do not compress like that, archive bombs do;
* at most :data:`MAX_MEMBERS` members; no two members with the same path (the second would silently
  replace the first); no member leaving the extraction folder, no absolute path, no link pointing out.

While extracting, the bytes actually written are counted, so a member whose header understates its
size is stopped at the declared size instead of filling the disk. Every refusal is one
:class:`~IMDLBenCo.errors.DatasetError` naming the archive, the member and the reason.
"""

from __future__ import annotations

import lzma
import os
import posixpath
import re
import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass

from ...errors import DatasetError

__all__ = ["ARCHIVES", "UNREADABLE_ARCHIVES", "DEFAULT_MAX_EXTRACT_BYTES", "MAX_RATIO", "RATIO_FLOOR", "MAX_MEMBERS",
           "ExtractBudget", "archive_ext", "extract", "format_bytes", "parse_bytes"]

ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz")
UNREADABLE_ARCHIVES = (".rar", ".7z")

#: default of ``--max-extract-bytes``: everything one run extracts, uncompressed (the largest archive
#: the preparers expect, IMD2020.zip or an AI-edit dataset's, is a few tens of GB)
DEFAULT_MAX_EXTRACT_BYTES = 64 << 30
#: largest uncompressed/compressed ratio accepted for a member (zip) or a compressed tar ...
MAX_RATIO = 200
#: ... once the uncompressed size exceeds this (small files, e.g. an all-black mask, may compress more)
RATIO_FLOOR = 1 << 20
#: most members one archive may hold
MAX_MEMBERS = 5_000_000

_CHUNK = 1 << 20
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def format_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def parse_bytes(text: str) -> int:
    """``"64G"``, ``"500MB"``, ``"1.5GiB"``, ``"1000000"`` → bytes (binary units); ValueError otherwise."""
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([KMGT]?I?B?)", str(text).strip().upper().replace(" ", ""))
    if m is None or m.group(2) not in _UNITS:
        raise ValueError(f"{text!r}: expected a size such as 64G, 500M or 1000000 (bytes)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not value >= 1 or value != value:  # rejects 0, negatives and NaN
        raise ValueError(f"{text!r}: expected a size of at least 1 byte")
    return int(value)


@dataclass
class ExtractBudget:
    """What one run may still extract, in bytes (shared by every archive of the run)."""

    max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES
    used: int = 0

    @property
    def left(self) -> int:
        return self.max_bytes - self.used


class _Refused(Exception):
    """A member refused while extracting (turned into one DatasetError)."""


def archive_ext(path: str) -> str:
    """The archive extension of ``path`` (``.tar.gz``, ``.zip``, ``.rar``...), or ``""``."""
    low = path.lower()
    for ext in sorted(ARCHIVES + UNREADABLE_ARCHIVES, key=len, reverse=True):
        if low.endswith(ext):
            return ext
    return ""


def _unsafe_name(name: str) -> str:
    """Why a member name cannot be extracted as it is, or ``""``."""
    if not name or "\x00" in name:
        return "an empty name or a NUL character"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "a '..' component (it would be written outside the extraction folder)"
    return ""


def _check_totals(archive: str, declared: int, packed: int | None, budget: ExtractBudget, target: str,
                  what: str) -> None:
    if declared > budget.left:
        used = f" (after {format_bytes(budget.used)} already extracted from other archives)" if budget.used else ""
        raise DatasetError(
            f"{archive}: refused: {what} declare {format_bytes(declared)} uncompressed, more than the "
            f"{format_bytes(budget.max_bytes)} one run may extract{used}. If you expect the dataset to be that large, "
            f"pass a larger --max-extract-bytes (e.g. --max-extract-bytes {-(-(declared + budget.used) // (1 << 30))}G), "
            f"or extract it yourself and pass the folder.")
    if packed is not None and declared > RATIO_FLOOR and declared > MAX_RATIO * max(packed, 1):
        raise DatasetError(
            f"{archive}: refused: {what} would grow from {format_bytes(packed)} to {format_bytes(declared)} "
            f"(more than {MAX_RATIO} times), which images do not do; it looks like an archive bomb. If you trust "
            f"this archive, extract it yourself and pass the folder.")
    try:
        free = shutil.disk_usage(target).free
    except OSError:
        return
    if declared > free:
        raise DatasetError(
            f"{archive}: refused: extracting it needs {format_bytes(declared)} and only {format_bytes(free)} are free "
            f"on the disk of {target}. Free some space, or extract it elsewhere yourself and pass the folder.")


def _copy_counted(src, dst_path: str, limit: int, archive: str, member: str) -> int:
    """Copy a member's stream to ``dst_path``, stopping as soon as more than ``limit`` bytes come out."""
    written = 0
    with open(dst_path, "wb") as dst:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                return written
            written += len(chunk)
            if written > limit:
                raise _Refused(f"member {member!r} holds more bytes than its header declares "
                               f"(over {format_bytes(limit)}); the header lies, so the archive is not extracted")
            dst.write(chunk)


def _extract_zip(archive: str, target: str, budget: ExtractBudget) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise DatasetError(f"{archive}: refused: {len(infos):,} members, more than the {MAX_MEMBERS:,} accepted.")
        seen: dict[str, int] = {}
        declared = packed = 0
        for i, info in enumerate(infos):
            why = _unsafe_name(info.filename)
            if why:
                raise DatasetError(f"{archive}: refused: member {info.filename!r} has {why}; nothing was extracted.")
            key = posixpath.normpath(info.filename.replace("\\", "/")).rstrip("/")
            if key in seen and not info.is_dir():
                raise DatasetError(
                    f"{archive}: refused: member {info.filename!r} appears twice (entries {seen[key] + 1} and "
                    f"{i + 1}); extracting would silently replace the first copy with the second. "
                    f"Extract it yourself, choose which copy to keep, and pass the folder.")
            seen[key] = i
            if info.flag_bits & 0x1:
                raise DatasetError(f"{archive}: member {info.filename!r} is encrypted; extract the archive yourself "
                                   f"(with its password) and pass the folder.")
            declared += info.file_size
            packed += info.compress_size
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise DatasetError(
                    f"{archive}: refused: member {info.filename!r} would grow from {format_bytes(info.compress_size)} "
                    f"to {format_bytes(info.file_size)} (more than {MAX_RATIO} times), which images do not do; it "
                    f"looks like an archive bomb. If you trust this archive, extract it yourself and pass the folder.")
        _check_totals(archive, declared, packed, budget, target, f"its {len(infos)} members")
        total = 0
        for info in infos:
            dest = os.path.join(target, *[p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")])
            if info.is_dir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            limit = min(info.file_size, budget.left - total)
            try:
                with zf.open(info) as src:
                    total += _copy_counted(src, dest, limit, archive, info.filename)
            except (zipfile.BadZipFile, zlib.error, EOFError, lzma.LZMAError, NotImplementedError) as err:
                # zipfile stops at the declared size; the checksum then fails if more data follows
                raise DatasetError(
                    f"{archive}: member {info.filename!r} does not match its header ({type(err).__name__}: {err}): "
                    f"the archive is damaged, or its header lies about the member's size; nothing from it is used. "
                    f"Download it again, or extract it yourself and pass the folder.") from None
        return total


def _extract_tar(archive: str, target: str, budget: ExtractBudget, compressed: bool) -> int:
    with tarfile.open(archive) as tf:
        members: list[tarfile.TarInfo] = []
        for member in tf:  # headers only; stops early instead of listing millions of members
            members.append(member)
            if len(members) > MAX_MEMBERS:
                raise DatasetError(f"{archive}: refused: more than {MAX_MEMBERS:,} members.")
        seen: dict[str, int] = {}
        declared = 0
        for i, member in enumerate(members):
            why = _unsafe_name(member.name)
            if why:
                raise DatasetError(f"{archive}: refused: member {member.name!r} has {why}; nothing was extracted.")
            if member.isfile():
                key = posixpath.normpath(member.name)
                if key in seen:
                    raise DatasetError(
                        f"{archive}: refused: member {member.name!r} appears twice (members {seen[key] + 1} and "
                        f"{i + 1}); extracting would silently replace the first copy with the second. Extract it "
                        f"yourself, choose which copy to keep, and pass the folder.")
                seen[key] = i
                declared += member.size
        _check_totals(archive, declared, os.path.getsize(archive) if compressed else None, budget, target,
                      f"its {len(members)} members")
        total = [0]

        def accept(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
            # PEP 706's "data" filter: no absolute paths, nothing outside, no device files, no links out
            safe = tarfile.data_filter(member, path)
            if safe is not None and safe.isfile():
                total[0] += safe.size
                if total[0] > budget.left:
                    raise _Refused(f"the members extracted so far exceed {format_bytes(budget.left)}")
            return safe

        tf.extractall(target, members=members, filter=accept)
        return total[0]


def extract(archive: str, dest: str, budget: ExtractBudget | None = None) -> str:
    """Extract ``archive`` into ``dest/<archive stem>`` within ``budget``; refuses unsafe members."""
    budget = budget or ExtractBudget()
    ext = archive_ext(archive)
    if ext in UNREADABLE_ARCHIVES:
        raise DatasetError(
            f"{archive}: {ext} archives cannot be read with Python's standard library; extract it first "
            f"(e.g. `unrar x` or `7z x`) and pass the extracted folder."
        )
    if not hasattr(tarfile, "data_filter"):  # pragma: no cover - Python without PEP 706 (before 3.10.12/3.11.4)
        raise DatasetError(f"{archive}: this Python has no safe tar extraction (PEP 706); extract the archive "
                           f"yourself and pass the folder, or use Python 3.10.12+/3.11.4+.")
    target = os.path.join(dest, os.path.basename(archive)[: -len(ext)] or "archive")
    os.makedirs(target, exist_ok=True)
    try:
        if ext == ".zip":
            used = _extract_zip(archive, target, budget)
        else:
            used = _extract_tar(archive, target, budget, compressed=ext not in (".tar",))
    except _Refused as err:
        raise DatasetError(f"{archive}: refused: {err}. Extract it yourself if you trust it, and pass the folder.") \
            from None
    except tarfile.FilterError as err:
        raise DatasetError(f"{archive}: refused: {_filter_reason(err)}; the archive is not safe to extract, so "
                           f"nothing from it is used.") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, NotImplementedError, zlib.error,
            lzma.LZMAError) as err:
        raise DatasetError(f"{archive}: cannot be extracted ({type(err).__name__}: {err}); the download may be "
                           f"incomplete or damaged. Download it again or extract it yourself and pass the folder.") \
            from None
    except OSError as err:
        if err.errno is not None and err.filename:
            raise  # the disk (full, no permission): the caller names the file
        raise DatasetError(f"{archive}: cannot be extracted ({type(err).__name__}: {err}); the download may be "
                           f"incomplete or damaged. Download it again or extract it yourself and pass the "
                           f"folder.") from None
    budget.used += used
    return target


def _filter_reason(err: tarfile.FilterError) -> str:
    """A tar member refused by the data filter, in words."""
    member = getattr(err, "tarinfo", None)
    name = repr(member.name) if member is not None else "a member"
    reasons: tuple[tuple[type, str], ...] = (
        (tarfile.AbsolutePathError, "has an absolute path"),
        (tarfile.OutsideDestinationError, "would be written outside the extraction folder"),
        (tarfile.SpecialFileError, "is a device, pipe or other special file"),
        (tarfile.AbsoluteLinkError, "is a link to an absolute path"),
        (tarfile.LinkOutsideDestinationError, "is a link pointing outside the extraction folder"),
    )
    for cls, words in reasons:
        if isinstance(err, cls):
            return f"member {name} {words}"
    return f"member {name}: {err}"
