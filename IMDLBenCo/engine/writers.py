"""Files of a run folder (docs/ARCHITECTURE.md "Run folders"), written by rank 0 only.

``config.json``, ``log.txt`` (JSON lines), ``train_steps.jsonl``, ``metric_definitions.json``
and TensorBoard scalars and images.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import runfolder
from ..version import __version__
from .checkpoint import plain
from .fileio import atomic_write, write_error
from .runtime import Runtime

logger = logging.getLogger("IMDLBenCo.engine")

#: images per TensorBoard picture grid
MAX_IMAGES = 4


def write_json(path: os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (:func:`~IMDLBenCo.engine.fileio.atomic_write`)."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text(path: os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; a failure raises one OutputWriteError naming the file."""
    data = text.encode("utf-8")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), needed=len(data))


def _scale01(tensor: torch.Tensor) -> torch.Tensor:
    """Min-max scale each image to [0,1] for display (visual_image may hold logits or features)."""
    flat = tensor.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (tensor - lo) / (hi - lo).clamp_min(1e-8)


def _displayable(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().float()[:MAX_IMAGES]
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    if tensor.shape[1] not in (1, 3):
        tensor = tensor[:, :1]  # a feature map: show its first channel
    return tensor.cpu()


class RunWriter:
    """Writes the files of one run folder; every method is a no-op on ranks other than 0."""

    def __init__(self, runtime: Runtime, output_dir: str, log_dir: str | None = None,
                 tensorboard: bool = True) -> None:
        self.active = runtime.is_main
        self.output_dir = Path(output_dir)
        self.log_dir = Path(log_dir or output_dir)
        self._tb = None
        self._want_tb = tensorboard
        self._handles: dict[str, Any] = {}
        if self.active:
            from .runlock import make_folder

            make_folder(self.output_dir, "--output_dir")
            make_folder(self.log_dir, "--log_dir")

    # ------------------------------------------------------------------ files
    def write_config(self, script: str, args: argparse.Namespace, model_kwargs: Mapping[str, Any],
                     runtime: Runtime, extra: dict[str, Any] | None = None) -> None:
        if not self.active:
            return
        env = {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "device": str(runtime.device),
            "world_size": runtime.world_size,
            "backend": runtime.backend,
            "IMDLBenCo": __version__,
        }
        config = {"script": script, "args": plain(args), "model_kwargs": plain(dict(model_kwargs)),
                  "env": env, "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        if extra:
            config.update(plain(extra))
        write_json(self.output_dir / runfolder.CONFIG, config)

    def append_jsonl(self, name: str, record: Mapping[str, Any]) -> None:
        """Append one JSON line to ``name`` (kept open between calls; flushed every line)."""
        if not self.active:
            return
        line = json.dumps(plain(dict(record)), ensure_ascii=False) + "\n"
        try:
            handle = self._handles.get(name)
            if handle is None:
                handle = self._handles[name] = open(self.output_dir / name, "a", encoding="utf-8")
            handle.write(line)
            handle.flush()
        except OSError as err:  # a line cut short is skipped by readers (and dropped on --resume)
            raise write_error(self.output_dir / name, err, len(line)) from err

    def drop_records_from(self, name: str, epoch: int) -> None:
        """Remove the lines of JSON-lines file ``name`` whose ``epoch`` is ``epoch`` or later.

        A resumed run repeats those epochs; without this a run killed between writing its log
        line and its checkpoint would list an epoch twice.
        """
        path = self.output_dir / name
        if not (self.active and path.is_file()):
            return
        if name in self._handles:
            self._handles.pop(name).close()
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
            if int(record.get("epoch", -1)) < epoch:
                kept.append(line)
        write_text(path, "".join(k + "\n" for k in kept))

    def truncate(self, name: str) -> None:
        """Empty the JSON-lines file ``name`` (a rerun of the same command replaces its records)."""
        if not self.active:
            return
        if name in self._handles:
            self._handles.pop(name).close()
        if (self.output_dir / name).is_file():
            write_text(self.output_dir / name, "")

    def write_json(self, name: str, data: Any) -> None:
        if self.active:
            write_json(self.output_dir / name, plain(data))

    # ------------------------------------------------------------------ TensorBoard
    @property
    def tb(self):
        if not (self.active and self._want_tb):
            return None
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.log_dir))
        return self._tb

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(tag, float(value), step)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        for key, value in values.items():
            self.scalar(f"{prefix}{key}", value, step)

    def images(self, prefix: str, batch: Mapping[str, Any], out: Mapping[str, Any], step: int,
               threshold: float = 0.5) -> None:
        """Input (denormalised), mask, prediction, thresholded prediction and ``visual_image``."""
        if self.tb is None:
            return
        from ..datasets import denormalize

        image = batch.get("image")
        if isinstance(image, torch.Tensor):
            shown = denormalize(image[:MAX_IMAGES].detach().float().cpu()).clamp(0, 1)
            self.tb.add_images(f"{prefix}/image", shown, step)
        mask = batch.get("mask")
        if isinstance(mask, torch.Tensor):
            self.tb.add_images(f"{prefix}/mask", _displayable(mask).clamp(0, 1), step)
        pred = out.get("pred_mask")
        if isinstance(pred, torch.Tensor):
            pred = _displayable(pred)
            self.tb.add_images(f"{prefix}/pred_mask", pred.clamp(0, 1), step)
            self.tb.add_images(f"{prefix}/pred_mask_thresh_{threshold}", (pred > threshold).float(), step)
        for key, value in (out.get("visual_image") or {}).items():
            if isinstance(value, torch.Tensor):
                self.tb.add_images(f"{prefix}/{key}", _scale01(_displayable(value)), step)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
