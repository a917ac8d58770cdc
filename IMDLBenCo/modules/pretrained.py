"""Loading pretrained weights from a local file into (part of) a model, with a clear report.

No download ever happens: ``path`` is a local ``.pth``/``.pt``/``.bin``/``.safetensors`` file.
Without a path the model keeps its random initialisation and one warning says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["LoadReport", "read_state_dict", "load_pretrained", "warn_random_init"]

_WRAPPER_KEYS = ("model", "state_dict", "model_state", "module")


@dataclass
class LoadReport:
    """What a pretrained load did: counts and the keys that did not fit."""

    path: str
    loaded: int = 0
    adapted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")

        parts = [f"loaded {self.loaded} tensors from {self.path}"]
        if self.adapted:
            parts.append(f"input channels widened for {few(self.adapted)}")
        if self.missing:
            parts.append(f"missing (kept random): {few(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected (ignored): {few(self.unexpected)}")
        if self.mismatched:
            parts.append(f"shape mismatch (kept random): {few(self.mismatched)}")
        return "; ".join(parts)


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and unwrap ``{"model": ...}`` / ``{"state_dict": ...}``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained weights file {path!r} does not exist; pass a local file path "
            f"(nothing is downloaded) or leave the option empty to start from random weights"
        )
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file  # optional dependency, only for this format

        sd = load_file(path)
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in _WRAPPER_KEYS:
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict (or {{'model': state_dict}}), got {type(sd).__name__}")
    # DataParallel / DDP checkpoints
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_pretrained(
    module: nn.Module,
    path: str | dict[str, torch.Tensor],
    key_map: Callable[[str], str | None] | None = None,
    adapt_in_channels: bool = True,
) -> LoadReport:
    """Copy matching tensors of the file at ``path`` (or of a state dict) into ``module``
    (non-strict) and log a report.

    ``key_map`` renames file keys to module keys (return None to drop one). With
    ``adapt_in_channels``, a file tensor that differs from the model's only in dimension 1
    (a first conv widened for an extractor) fills the first channels; the others keep their init.
    """
    sd = read_state_dict(path) if isinstance(path, str) else dict(path)
    report = LoadReport(path=path if isinstance(path, str) else "<state dict>")
    if key_map is not None:
        mapped = {}
        for k, v in sd.items():
            nk = key_map(k)
            if nk is None:
                report.unexpected.append(k)
            else:
                mapped[nk] = v
        sd = mapped
    own = module.state_dict()
    to_load = {}
    for k, v in sd.items():
        if k not in own:
            report.unexpected.append(k)
            continue
        target = own[k]
        if tuple(v.shape) == tuple(target.shape):
            to_load[k] = v
        elif (adapt_in_channels and v.ndim == target.ndim and v.ndim >= 2 and v.shape[0] == target.shape[0]
              and v.shape[2:] == target.shape[2:] and v.shape[1] < target.shape[1]):
            widened = target.clone()
            widened[:, : v.shape[1]] = v
            to_load[k] = widened
            report.adapted.append(k)
        else:
            report.mismatched.append(f"{k} file {list(v.shape)} vs model {list(target.shape)}")
    report.missing = [k for k in own if k not in to_load]
    module.load_state_dict(to_load, strict=False)
    report.loaded = len(to_load)
    logger.info("%s: %s", type(module).__name__, report.summary())
    return report


def warn_random_init(model_name: str, option: str) -> None:
    """The one warning a model gives when it is built without pretrained weights."""
    logger.warning(
        "%s: no pretrained weights given (%s); starting from random initialisation", model_name, option
    )
