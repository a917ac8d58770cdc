"""One clear message, not a traceback, for mistakes in the user's input.

The five script entry points, when run from the command line (``argv`` left as ``None``), turn
the errors below into a one-paragraph message on stderr and exit status 1. Called from Python
with an explicit ``argv`` (tests, ``benco demo``), they raise as usual. ``IMDLBENCO_DEBUG=1``
keeps the traceback everywhere.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Optional, Sequence, Tuple, Type

__all__ = ["user_error_types", "exit_cleanly_on_user_errors", "peer_failed"]

_WORKER_PREFIX = "Original Traceback (most recent call last):"


def user_error_types() -> Tuple[Type[BaseException], ...]:
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


def exit_cleanly_on_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``*_main(argv=None, **kw)`` entry point (see the module docstring).

    Under torchrun, the rank that meets an error prints it; a rank whose collective fails because
    that rank left says so in one line (no second traceback) and exits too.
    """

    @functools.wraps(main)
    def wrapper(argv: Optional[Sequence[str]] = None, **kwargs: Any) -> Any:
        if argv is not None or os.environ.get("IMDLBENCO_DEBUG"):
            return main(argv, **kwargs)
        rank = os.environ.get("RANK")
        where = f" (rank {rank})" if rank not in (None, "0") else ""
        try:
            return main(argv, **kwargs)
        except user_error_types() as err:
            print(f"\nerror{where}: {_message(err)}\n(set IMDLBENCO_DEBUG=1 to see the traceback)",
                  file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        except Exception as err:
            if not peer_failed(err):
                raise
            print(f"[rank {rank}] stopped: another process of this run failed (its message is above)",
                  file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return wrapper
