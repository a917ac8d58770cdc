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
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

logger = logging.getLogger("IMDLBenCo.engine")

PathLike = Union[str, os.PathLike]
_EPOCH_NAME = re.compile(r"^checkpoint-(\d+)\.pth$")


def plain(value: Any) -> Any:
    """``value`` made of JSON-like types only (for ``args`` in checkpoints and config.json)."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP / DataParallel / compiled wrapper."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _model_state(checkpoint: Any, path: PathLike) -> Dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return checkpoint  # a bare state dict
    keys = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise ValueError(
        f"{path}: found no model weights (keys: {keys}); expected a dict with a 'model' state dict "
        "(as written by train.py and published for IMDL-BenCo's zoo) or a bare state dict"
    )


def load_checkpoint(
    path: PathLike,
    model: Optional[torch.nn.Module] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler: Any = None,
    scheduler: Any = None,
    map_location: Union[str, torch.device] = "cpu",
    strict: bool = True,
) -> Dict[str, Any]:
    """Load ``path`` with ``weights_only=True`` into the given objects; returns the checkpoint dict.

    Accepts a full training checkpoint, ``{"model": state_dict}`` or a bare state dict. A
    ``module.`` prefix (weights saved from a DDP wrapper) is removed. With ``strict`` a key
    mismatch raises an error listing missing and unexpected keys.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder; this script takes one checkpoint file "
                                "(e.g. checkpoint-best.pth inside it)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (give the path of a .pth file)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle errors name classes; say what to do
        raise RuntimeError(
            f"cannot open {path} with torch.load(weights_only=True): {err}. Checkpoints holding pickled "
            "Python objects (such as IMDL-BenCo's argparse.Namespace 'args') must be re-saved as "
            "{'model': state_dict} with a trusted torch.load(weights_only=False)"
        ) from err
    if model is not None:
        state = _model_state(checkpoint, path)
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
        target = unwrap_model(model)
        result = target.load_state_dict(state, strict=False)
        if strict and (result.missing_keys or result.unexpected_keys):
            raise RuntimeError(
                f"{path} does not fit {type(target).__name__}: missing keys {result.missing_keys[:10]}"
                f"{' ...' if len(result.missing_keys) > 10 else ''}, unexpected keys "
                f"{result.unexpected_keys[:10]}{' ...' if len(result.unexpected_keys) > 10 else ''}. "
                "Check --model and its options (they must match the training run)"
            )
    if not isinstance(checkpoint, dict):
        checkpoint = {"model": checkpoint}
    if optimizer is not None and "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    if scheduler is not None and checkpoint.get("scheduler"):
        scheduler.load_state_dict(checkpoint["scheduler"])
    return checkpoint


def checkpoint_epoch(path: PathLike) -> Optional[int]:
    """The epoch in a ``checkpoint-<epoch>.pth`` name, else None."""
    match = _EPOCH_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def find_checkpoints(folder: PathLike) -> Tuple[List[Tuple[int, Path]], List[Path]]:
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


def latest_checkpoint(folder: PathLike) -> Optional[Path]:
    """The ``checkpoint-<epoch>.pth`` with the highest epoch in ``folder`` (None if none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    numbered, _ = find_checkpoints(folder)
    return numbered[-1][1] if numbered else None
