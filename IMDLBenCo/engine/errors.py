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

__all__ = ["user_error_types", "exit_cleanly_on_user_errors"]

_WORKER_PREFIX = "Original Traceback (most recent call last):"


def user_error_types() -> Tuple[Type[BaseException], ...]:
    """Exceptions that describe a problem with the user's data, model output or paths."""
    from ..datasets.io import DatasetError
    from .outputs import ModelOutputError
    from .train import NonFiniteLossError

    return (DatasetError, ModelOutputError, NonFiniteLossError, FileNotFoundError, IsADirectoryError)


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


def exit_cleanly_on_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``*_main(argv=None, **kw)`` entry point (see the module docstring)."""

    @functools.wraps(main)
    def wrapper(argv: Optional[Sequence[str]] = None, **kwargs: Any) -> Any:
        if argv is not None or os.environ.get("IMDLBENCO_DEBUG"):
            return main(argv, **kwargs)
        try:
            return main(argv, **kwargs)
        except user_error_types() as err:
            rank = os.environ.get("RANK")
            where = f" (rank {rank})" if rank not in (None, "0") else ""
            print(f"\nerror{where}: {_message(err)}\n(set IMDLBENCO_DEBUG=1 to see the traceback)",
                  file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return wrapper
