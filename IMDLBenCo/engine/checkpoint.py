"""Checkpoint files: atomic writing, loading with ``weights_only=True``, finding them by epoch.

A training checkpoint is ``{"model", "optimizer", "scaler", "scheduler", "epoch", "args",
"model_kwargs", "best"}`` with only tensors and plain Python values, so that
``torch.load(path, weights_only=True)`` opens it. Published IMDL-BenCo weights (``{"model":
state_dict}``) and bare state dicts load for testing too.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from .. import runfolder
from ..errors import CheckpointError
from .fileio import atomic_write

logger = logging.getLogger("IMDLBenCo.engine")

PathLike = str | os.PathLike


def plain(value: Any) -> Any:
    """``value`` made of JSON-like types only (for ``args`` in checkpoints and config.json)."""
    if isinstance(value, argparse.Namespace):  # private attributes (``_from_base``) are not options
        value = {k: v for k, v in vars(value).items() if not k.startswith("_")}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def _state_bytes(state: Any) -> int:
    """Bytes of the tensors in ``state`` (about the size of its checkpoint file)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_state_bytes(v) for v in state)
    return 0


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, then rename).

    A failed write (disk full, ...) raises :class:`~IMDLBenCo.errors.OutputWriteError` saying how
    much space was needed and leaves the previous file, if any, untouched.
    """
    return atomic_write(path, lambda tmp: torch.save(state, tmp), needed=_state_bytes(state))


def model_checkpoint_state(model: torch.nn.Module) -> dict[str, Any]:
    """What a checkpoint stores of ``model``: ``model.checkpoint_state_dict()`` when the model
    defines it (e.g. only the trainable adapters of a frozen backbone, which is loaded from its own
    file at construction), else its whole ``state_dict()``."""
    target = unwrap_model(model)
    custom = getattr(target, "checkpoint_state_dict", None)
    return custom() if callable(custom) else target.state_dict()


def optional_checkpoint_keys(model: torch.nn.Module) -> set:
    """State-dict keys a checkpoint may lack (``model.optional_checkpoint_keys()``: a frozen
    backbone restored from its own weight file, layers a published checkpoint does not have)."""
    fn = getattr(unwrap_model(model), "optional_checkpoint_keys", None)
    return set(fn()) if callable(fn) else set()


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP / DataParallel / compiled wrapper."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _model_state(checkpoint: Any, path: PathLike) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return checkpoint  # a bare state dict
    keys = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise CheckpointError(
        f"{path}: found no model weights (keys: {keys}); expected a dict with a 'model' state dict "
        "(as written by train.py and published for IMDL-BenCo's zoo) or a bare state dict"
    )


def _numpy_scalar() -> Any:
    import numpy as np

    return getattr(np, "_core", np.core).multiarray.scalar


def _numpy_dtype() -> Any:
    import numpy as np

    return np.dtype


#: globals a checkpoint may name that are plain data (allowed to the safe loader on a retry)
_KNOWN_SAFE = {
    "argparse.Namespace": lambda: argparse.Namespace,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "numpy.dtype": _numpy_dtype,
}


def _known_safe_objects() -> list[Any]:
    import numpy as np

    dtypes = [type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                          np.uint32, np.uint64, np.float16, np.float32, np.float64)]
    return [argparse.Namespace, _numpy_scalar(), np.dtype, *dtypes]


def _globals_in(err: Exception) -> list[str]:
    """The globals the safe loader refused, as named in its message."""
    text = str(err)
    names = set(re.findall(r"GLOBAL ([\w.]+)", text)) | set(re.findall(r"got <class '([\w.]+)'>", text))
    return sorted(n if not n.startswith("numpy.dtypes.") else "numpy.dtype" for n in names)


def _describe_unreadable(path: Path, err: Exception) -> str:
    """What is wrong with a file ``torch.load`` could not open, in the user's terms."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes): an interrupted save or copy. Use another checkpoint"
    with open(path, "rb") as f:
        head = f.read(64)
    text = str(err)
    if "Unsupported global" in text or "weights_only" in text and "GLOBAL" in text:
        found = [g for g in _globals_in(err) if g not in _KNOWN_SAFE] or _globals_in(err)
        what = ", ".join(found) or "an unknown callable"
        return (f"loading it would call {what}, which is code, not weights: the safe loader (weights_only=True) "
                f"refused it. A checkpoint of weights names no such thing; this file may be built to run code on "
                f"your machine. Do not open it with weights_only=False; ask its author for a file of tensors (a "
                f"state dict saved with torch.save)")
    if head.startswith(b"PK"):
        return (f"the file is a damaged PyTorch checkpoint ({text.splitlines()[0][:120]}): truncated or corrupted, "
                "e.g. by an interrupted copy. Use another checkpoint")
    if head[:1] != b"\x80" and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        shown = head.decode("ascii", "replace").splitlines()[0][:40] if head.strip() else ""
        return f"it is a text file, not a PyTorch checkpoint (it begins with {shown!r})"
    if head[:1] != b"\x80":
        return "it is not a PyTorch checkpoint (its first bytes are neither a zip archive, PyTorch's format, nor a pickle)"
    return f"it is not a readable PyTorch checkpoint ({type(err).__name__}: {text.splitlines()[0][:120] if text else '?'})"


def read_checkpoint(path: PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with one :class:`~IMDLBenCo.errors.CheckpointError`
    saying what the file is when that fails. ``mmap=True`` maps the file instead of reading it
    (cheap when only the metadata is needed)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder; this script takes one checkpoint file "
                                "(e.g. checkpoint-best.pth inside it)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (give the path of a .pth file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:
        if mmap and "mmap" in str(err):  # an old (non-zip) file: read it the ordinary way
            return read_checkpoint(path, map_location)
        found = _globals_in(err)
        if found and all(g in _KNOWN_SAFE for g in found):
            # IMDL-BenCo's checkpoints keep their args as an argparse.Namespace (and some NumPy
            # scalars): plain data, read by the safe loader once those types are allowed
            with torch.serialization.safe_globals(_known_safe_objects()):
                try:
                    return torch.load(path, map_location=map_location, weights_only=True)
                except Exception as again:
                    err = again
        raise CheckpointError(f"cannot load checkpoint {path}: {_describe_unreadable(path, err)}") from None


def _mismatch_message(path: Path, target: torch.nn.Module, state: dict[str, Any], checkpoint: Any,
                      missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    name = type(target).__name__
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("with another shape", shapes)):
        if items:
            parts.append(f"{len(items)} key(s) {label} (e.g. {', '.join(items[:3])})")
    recorded = None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("args"), dict):
        recorded = checkpoint["args"].get("model")
    if recorded and recorded != name:
        cause = f"it was written by a run of --model {recorded}, this run builds {name}"
    elif shapes and not missing and not unexpected:
        cause = "the model options (sizes) differ from the training run's; pass the same options"
    else:
        cause = "check --model and its options: they must be those of the training run"
    return (f"checkpoint {path} does not fit {name}: " + "; ".join(parts) + f" ({len(state)} keys in the file, "
            f"{len(target.state_dict())} in the model). {cause}")


def load_checkpoint(
    path: PathLike,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    scheduler: Any = None,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> dict[str, Any]:
    """Load ``path`` with ``weights_only=True`` into the given objects; returns the checkpoint dict.

    Accepts a full training checkpoint, ``{"model": state_dict}`` or a bare state dict. A
    ``module.`` prefix (weights saved from a DDP wrapper) is removed. Every failure (unreadable
    file, weights that do not fit the model: missing, unexpected or differently shaped keys) is
    one :class:`~IMDLBenCo.errors.CheckpointError` saying what the file is and what was expected.

    A model may declare keys a checkpoint may lack (``optional_checkpoint_keys()``) and be told
    which of them were absent (``checkpoint_keys_absent(keys)``); see :func:`model_checkpoint_state`
    for the saving side.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, map_location)
    if model is not None:
        state = _model_state(checkpoint, path)
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
        target = unwrap_model(model)
        own = target.state_dict()
        shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(own[k].shape)]
        optional = optional_checkpoint_keys(target)
        missing = [k for k in own if k not in state and k not in optional]
        unexpected = [k for k in state if k not in own]
        if shapes or (strict and (missing or unexpected)):
            raise CheckpointError(_mismatch_message(path, target, state, checkpoint, missing, unexpected, shapes))
        target.load_state_dict(state, strict=False)
        absent = [k for k in own if k not in state and k in optional]
        if absent:
            report = getattr(target, "checkpoint_keys_absent", None)
            if callable(report):
                report(absent)  # the model says what that means (e.g. "these layers start untrained")
            else:
                logger.info("%s: %d optional entries of %s not in the file, kept as built (e.g. %s)", path,
                            len(absent), type(target).__name__, ", ".join(absent[:3]))
    if not isinstance(checkpoint, dict):
        checkpoint = {"model": checkpoint}
    try:
        if optimizer is not None and "optimizer" in checkpoint:
            optimizer.load_state_dict(checkpoint["optimizer"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        if scheduler is not None and checkpoint.get("scheduler"):
            scheduler.load_state_dict(checkpoint["scheduler"])
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path}: its optimizer/scaler/scheduler state does not fit this run "
                              f"({err}); the model or its trainable parameters differ from the run that wrote it") from err
    return checkpoint


def checkpoint_epoch(path: PathLike) -> int | None:
    """The epoch in a ``checkpoint-<epoch>.pth`` name, else None."""
    return runfolder.checkpoint_epoch(Path(path).name)


def find_checkpoints(folder: PathLike) -> tuple[list[tuple[int, Path]], list[Path]]:
    """``([(epoch, path)] sorted by epoch, [other .pth files])`` in ``folder``."""
    folder = Path(folder)
    numbered, others = [], []
    for entry in sorted(folder.iterdir()):
        if entry.suffix != ".pth" or not entry.is_file():
            continue
        epoch = checkpoint_epoch(entry)
        if epoch is None:
            others.append(entry)
        else:
            numbered.append((epoch, entry))
    numbered.sort(key=lambda item: item[0])
    return numbered, others


def latest_checkpoint(folder: PathLike) -> Path | None:
    """The ``checkpoint-<epoch>.pth`` with the highest epoch in ``folder`` (None if none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    numbered, _ = find_checkpoints(folder)
    return numbered[-1][1] if numbered else None
