"""One clear message, not a traceback, for mistakes in the user's input.

The five script entry points, when run from the command line (``argv`` left as ``None``), turn
the errors below into a one-paragraph message on stderr and exit status 2 (as argparse's
usage errors, so every user error of every script and ``benco`` command exits 2). Called from Python
with an explicit ``argv`` (tests, ``benco demo``), they raise as usual. ``IMDLBENCO_DEBUG=1``
keeps the traceback everywhere.

Under torchrun every rank usually meets the same mistake (a missing weights file, a wrong
option): the message is printed by the first rank that reaches it, and the other ranks of the
same launch stay silent (:func:`first_to_report`), so it appears once, not once per process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: the exit status of every user error, in every script and ``benco`` command (argparse's own)
USER_ERROR_EXIT = 2

__all__ = ["USER_ERROR_EXIT", "user_error_types", "exit_cleanly_on_user_errors", "peer_failed", "first_to_report"]

_WORKER_PREFIX = "Original Traceback (most recent call last):"


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that describe a problem with the user's data, options, files or model output."""
    from ..errors import IMDLBenCoError

    return (IMDLBenCoError, FileNotFoundError, IsADirectoryError)


def _message(err: BaseException) -> str:
    text = str(err)
    # An error re-raised from a DataLoader worker carries the worker's traceback before the
    # message; the user needs only the message (its last line).
    if _WORKER_PREFIX in text:
        text = text.rstrip().splitlines()[-1]
        marker = f"{type(err).__name__}: "  # the worker writes the qualified class name first
        if marker in text:
            text = text.split(marker, 1)[1]
    return text


#: what gloo (and the TCP store) say when the process at the other end of a collective is gone
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "remote worker crashing",
              "Connection refused")


def peer_failed(err: BaseException) -> bool:
    """True when ``err`` is a collective that failed because another rank of the run stopped."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return False
    try:
        from torch.distributed import DistError
    except ImportError:  # pragma: no cover - torch without distributed
        DistError = ()  # type: ignore[assignment]
    text = str(err)
    return isinstance(err, DistError) or (isinstance(err, RuntimeError) and any(s in text for s in _PEER_GONE))


def _launch_id() -> str | None:
    """What the ranks of one torchrun launch on this machine share and the next launch does not:
    the run id, the restart count and the launching agent (parent process id and start time)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    parent = os.getppid()
    started = ""
    try:  # the agent's start time (Linux): a later process reusing its id is another launch
        started = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        pass
    return "|".join([os.environ.get("TORCHELASTIC_RUN_ID", ""), os.environ.get("TORCHELASTIC_RESTART_COUNT", ""),
                     os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", ""), str(parent), started])


#: marker files older than this are removed (a launch's ranks fail within seconds of each other)
_MARKER_AGE_S = 24 * 3600


def first_to_report(message: str, folder: Path | None = None) -> bool:
    """True for the first rank of this launch (on this machine) that reports ``message``; False
    for the others, which then say nothing. Always True outside torchrun or when the marker
    cannot be written (a message shown twice is better than none)."""
    launch = _launch_id()
    if launch is None:
        return True
    folder = folder or Path(tempfile.gettempdir()) / f"imdlbenco-errors-{os.getuid() if hasattr(os, 'getuid') else 0}"
    key = hashlib.sha256(f"{launch}\n{message}".encode("utf-8", "replace")).hexdigest()[:32]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True
    os.close(fd)
    _remove_old_markers(folder)
    return True


def _remove_old_markers(folder: Path) -> None:
    now = time.time()
    try:
        for marker in folder.iterdir():
            if now - marker.stat().st_mtime > _MARKER_AGE_S:
                marker.unlink()
    except OSError:
        pass


def exit_cleanly_on_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``*_main(argv=None, **kw)`` entry point (see the module docstring).

    Under torchrun, the first rank that meets an error prints it (the others that meet the same
    one print nothing); a rank whose collective fails because another rank left says so in one
    line (no second traceback) and exits too.
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None, **kwargs: Any) -> Any:
        if argv is not None or os.environ.get("IMDLBENCO_DEBUG"):
            return main(argv, **kwargs)
        rank = os.environ.get("RANK")
        where = f" (rank {rank})" if rank not in (None, "0") else ""
        try:
            return main(argv, **kwargs)
        except user_error_types() as err:
            message = _message(err)
            if first_to_report(message):
                print(f"\nerror{where}: {message}\n(set IMDLBENCO_DEBUG=1 to see the traceback)",
                      file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT) from None
        except Exception as err:
            if not peer_failed(err):
                raise
            print(f"[rank {rank}] stopped: another process of this run failed (its message is above)",
                  file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return wrapper
