"""Extracting the archives a user downloaded (.zip and .tar*) into a temporary folder."""

from __future__ import annotations

import os
import tarfile
import zipfile

from ..io import DatasetError
from .base import inside

__all__ = ["ARCHIVES", "UNREADABLE_ARCHIVES", "archive_ext", "extract"]

ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz")
UNREADABLE_ARCHIVES = (".rar", ".7z")


def archive_ext(path: str) -> str:
    """The archive extension of ``path`` (``.tar.gz``, ``.zip``, ``.rar``...), or ``""``."""
    low = path.lower()
    for ext in sorted(ARCHIVES + UNREADABLE_ARCHIVES, key=len, reverse=True):
        if low.endswith(ext):
            return ext
    return ""


def extract(archive: str, dest: str) -> str:
    """Extract ``archive`` into ``dest/<archive stem>``; refuses members that leave that folder."""
    ext = archive_ext(archive)
    if ext in UNREADABLE_ARCHIVES:
        raise DatasetError(
            f"{archive}: {ext} archives cannot be read with Python's standard library; extract it first "
            f"(e.g. `unrar x` or `7z x`) and pass the extracted folder."
        )
    target = os.path.join(dest, os.path.basename(archive)[: -len(ext)] or "archive")
    os.makedirs(target, exist_ok=True)
    try:
        if ext == ".zip":
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if not inside(os.path.join(target, member), target):
                        raise DatasetError(f"{archive}: member {member!r} would be written outside the extraction "
                                           f"folder; refusing to extract this archive.")
                zf.extractall(target)
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(target, filter="data")
                else:  # pragma: no cover - Python without PEP 706 filters
                    for member in tf.getmembers():
                        if not inside(os.path.join(target, member.name), target) or member.issym() or member.islnk():
                            raise DatasetError(f"{archive}: member {member.name!r} is a link or leaves the "
                                               f"extraction folder; refusing to extract this archive.")
                    tf.extractall(target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DatasetError(f"{archive}: cannot be extracted ({type(err).__name__}: {err}); the download may be "
                           f"incomplete. Download it again or extract it yourself and pass the folder.") from None
    return target
