"""The model output contract, for the engine: defined once in :mod:`IMDLBenCo.outputs`."""

from __future__ import annotations

from ..errors import ModelOutputError
from ..outputs import OUTPUT_KEYS, check_model_output

__all__ = ["OUTPUT_KEYS", "ModelOutputError", "check_model_output"]
