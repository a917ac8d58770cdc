"""Writing result files so that a failure never leaves half a file, and says what happened.

Every file of a run folder is written to a temporary name beside its target and renamed over it
only when complete (``os.replace`` is atomic on POSIX and Windows), so a reader (or a resumed run)
sees the old file or the new one, never a truncated one. A write that fails (disk full, no
permission, read-only file system) removes the temporary file and raises one
:class:`~IMDLBenCo.errors.OutputWriteError` naming the file, the reason and, when the disk is full,
how much space was needed and how much was free. Temporary files left by a killed process
(``.<name>.tmp-<pid>``) are removed by :func:`remove_stale_temporaries` when a run starts.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import OutputWriteError

logger = logging.getLogger("IMDLBenCo.engine")

PathLike = str | os.PathLike
_TMP_NAME = re.compile(r"^\..+\.tmp-(\d+)$")

__all__ = ["temporary_name", "atomic_write", "write_error", "remove_stale_temporaries", "link_or_copy"]


def temporary_name(path: PathLike) -> Path:
    """``.<name>.tmp-<pid>`` beside ``path``: hidden, and recognisably ours."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def write_error(path: PathLike, err: OSError, needed: int | None = None) -> OutputWriteError:
    """One :class:`OutputWriteError` for a failed write of ``path``."""
    path = Path(path)
    reason = err.strerror or str(err)
    detail = ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(path.parent).free
            detail = f" ({_size(needed)} needed, {_size(free)} free)" if needed else f" ({_size(free)} free)"
        except OSError:
            pass
        hint = "free some space (old checkpoints, --save_period 0) or choose another --output_dir"
    elif err.errno == errno.EFBIG:
        limit = _file_size_limit()
        detail = f" (this process may write files of at most {_size(limit)}: `ulimit -f`)" if limit else ""
        hint = "raise the file-size limit (ulimit -f unlimited) or write smaller files"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose an --output_dir you can write to"
    else:
        hint = "check the disk and the --output_dir folder"
    return OutputWriteError(err.errno, f"cannot write {path}: {reason}{detail}; nothing was left half-written. {hint}")


def atomic_write(path: PathLike, write: Callable[[Path], None], needed: int | None = None) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path``.

    ``needed``: the expected size in bytes, quoted when the disk is full. Any ``OSError`` becomes
    an :class:`OutputWriteError`; the temporary file is removed whatever happens.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OutputWriteError:
        raise
    except OSError as err:
        raise write_error(path, err, needed) from err
    except RuntimeError as err:  # torch.save reports a failed write as RuntimeError
        cause = _os_error_in(err, path, needed)
        if cause is None:
            raise
        raise write_error(path, cause, needed) from None
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass
    return path


def _file_size_limit() -> int | None:
    """The process's file-size limit in bytes (``ulimit -f``), or None when there is none."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - Windows
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


#: what torch's C++ writer says when a write fails; the errno itself is lost on the way
_WRITE_FAILED = ("No space left", "file write failed", "basic_ios::clear", "iostream error", "PytorchStreamWriter failed",
                 "unexpected pos", "File too large")


def _os_error_in(err: RuntimeError, path: Path | None = None, needed: int | None = None) -> OSError | None:
    """The OSError behind a RuntimeError from torch's file writer, if it is one. The C++ stream
    error does not say why: a file-size limit below the size needed or a full disk is found out
    here, else the write is reported as an I/O error."""
    text = str(err)
    if "Permission denied" in text:
        return OSError(errno.EACCES, os.strerror(errno.EACCES))
    if not any(w in text for w in _WRITE_FAILED):
        return None
    limit = _file_size_limit()
    if limit is not None and (needed is None or needed >= limit * 0.9):
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    if "No space left" in text:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    try:
        free = shutil.disk_usage((path or Path(".")).parent).free
    except OSError:
        free = None
    if free is not None and free < (needed or 0) + (1 << 20):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, f"{os.strerror(errno.EIO)} ({text.strip().splitlines()[0][:80]})")


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` files in ``folder`` whose process is gone (a killed write);
    returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TMP_NAME.match(entry.name)
        if not match or not entry.is_file():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _alive(pid):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted write: %s", len(removed),
                    ", ".join(p.name for p in removed[:5]))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def link_or_copy(source: PathLike, target: PathLike) -> Path:
    """Make ``target`` hold ``source``'s content: a hard link (no extra disk) where the file
    system allows, a copy otherwise; atomic either way."""
    source, target = Path(source), Path(target)

    def write(tmp: Path) -> None:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    return atomic_write(target, write, needed=source.stat().st_size)
