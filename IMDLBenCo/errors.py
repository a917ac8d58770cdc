"""The error types of IMDLBenCo, in one place at the bottom of the package (no imports).

Each describes a problem with the user's input, found where it is met, with a message that names
the file, argument or key, what was found and what to do. The script entry points turn every
:class:`IMDLBenCoError` into one message and exit status 2 (``IMDLBenCo.engine.errors``); called
from Python they raise as usual. All derive from ``ValueError`` (or ``FloatingPointError``) so
existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "IMDLBenCoError",
    "DatasetError",
    "ModelOutputError",
    "NonFiniteLossError",
    "EvaluatorInputError",
    "CheckpointError",
    "UsageError",
    "OutputWriteError",
    "ModelOptionError",
    "RunFolderError",
]


class IMDLBenCoError(Exception):
    """Base of the errors below: a problem with the user's data, options, files or model."""


class DatasetError(IMDLBenCoError, ValueError):
    """A dataset problem: the message names the file, the problem and what to do."""


class ModelOutputError(IMDLBenCoError, ValueError):
    """The dictionary a model's forward() returned breaks the output contract."""


class NonFiniteLossError(IMDLBenCoError, FloatingPointError):
    """A loss became NaN or infinite during training."""


class EvaluatorInputError(IMDLBenCoError, ValueError):
    """An evaluator got inputs of the wrong kind; the message says what to do."""


class CheckpointError(IMDLBenCoError, ValueError):
    """A checkpoint file cannot be read, or does not fit the model."""


class UsageError(IMDLBenCoError, ValueError):
    """A command-line option (or a combination of them) cannot work; found after parsing."""


class OutputWriteError(IMDLBenCoError, OSError):
    """A result file could not be written (disk full, no permission); nothing half-written is left."""


class ModelOptionError(IMDLBenCoError, ValueError):
    """A model's constructor cannot be turned into options, or an option value is wrong."""


class RunFolderError(IMDLBenCoError, ValueError):
    """A run folder is missing or one of its files cannot be read."""
