"""``results.json`` and ``per_image.csv``: every number with its evidence (docs/results.md).

:class:`ResultsWriter` collects one record per checkpoint × test set (× attack) and rewrites both
files after each record (atomically), so a run that stops keeps every finished record. Rank 0
writes; the other ranks' writers do nothing.
"""

from __future__ import annotations

import csv
import datetime
import io
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import runfolder
from ..evaluation.per_image import PER_IMAGE_COLUMNS
from ..version import __version__
from .checkpoint import plain
from .runtime import Runtime
from .writers import write_json, write_text

logger = logging.getLogger("IMDLBenCo.engine")

__all__ = ["SCHEMA", "SELECTION_LABELS", "ResultsWriter", "software_provenance", "checkpoint_provenance",
           "dataset_provenance", "read_results", "RECORD_COLUMNS"]

SCHEMA = runfolder.RESULTS_SCHEMA
#: how a checkpoint was chosen → the label printed next to its numbers
SELECTION_LABELS = runfolder.SELECTION_LABELS
#: the columns of per_image.csv that say which record a row belongs to
RECORD_COLUMNS = ("set", "epoch", "attack", "param")

_GIT_CACHE: dict[str, Any] = {}


def software_provenance() -> dict[str, Any]:
    """Versions, and the git commit of the IMDLBenCo checkout when the package runs from one."""
    import torch

    if "value" not in _GIT_CACHE:
        root = Path(__file__).resolve().parents[2]
        commit = dirty = None
        if (root / ".git").exists():
            try:
                commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                        timeout=10).stdout.strip() or None
                status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                        capture_output=True, text=True, timeout=10)
                dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
            except (OSError, subprocess.SubprocessError):
                commit = dirty = None
        _GIT_CACHE["value"] = (commit, dirty)
    commit, dirty = _GIT_CACHE["value"]
    return {"IMDLBenCo": __version__, "git_commit": commit, "git_dirty": dirty, "python": sys.version.split()[0],
            "torch": torch.__version__, "platform": platform.platform()}


def checkpoint_provenance(path: str, checkpoint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint part of a record: path, sha256 (equals ``sha256sum``), epoch and how the
    file was chosen, read from the metadata train.py writes into it (docs/results.md)."""
    from ..datasets.identity import file_sha256

    p = Path(path)
    meta = checkpoint if isinstance(checkpoint, Mapping) else {}
    rule_info = meta.get("selection_rule") if isinstance(meta.get("selection_rule"), Mapping) else {}
    epoch = meta.get("epoch")
    args = meta.get("args") if isinstance(meta.get("args"), Mapping) else {}
    if "model" not in meta or epoch is None or not args:
        rule = "given"
    elif p.name == runfolder.BEST_CHECKPOINT and rule_info.get("on") in ("validation", "test_sets"):
        rule = rule_info["on"]
    elif args.get("epochs") is not None and int(epoch) + 1 == int(args["epochs"]):
        rule = "last_epoch"
    else:
        rule = "fixed_epoch"
    out: dict[str, Any] = {"path": str(p.resolve()), "sha256": file_sha256(str(p)),
                           "epoch": None if epoch is None else int(epoch), "rule": rule,
                           "metric": rule_info.get("metric") if rule in ("validation", "test_sets") else None,
                           "mode": rule_info.get("mode") if rule in ("validation", "test_sets") else None,
                           "validation": rule_info.get("validation") if rule == "validation" else None,
                           "train_run": str(p.resolve().parent) if rule != "given" else None}
    return out


def dataset_provenance(name: str, path: str, dataset: Any, counts: Mapping[str, int]) -> dict[str, Any]:
    """The dataset part of a record: name, path, content hash (cached file hashes) and counts."""
    from ..datasets.identity import dataset_content_hash

    try:
        identity = dataset_content_hash(dataset)
    except Exception as err:  # a dataset type the hash does not know: say so, never fail the run
        logger.warning("dataset %s: no content hash (%s: %s)", path, type(err).__name__, err)
        identity = {"content_hash": None}
    return {"name": name, "path": str(Path(path).resolve()) if os.path.exists(path) else str(path),
            "content_hash": identity.get("content_hash"), "images": int(counts.get("images", 0)),
            "manipulated": int(counts.get("manipulated", 0)), "authentic": int(counts.get("authentic", 0))}


def _preprocessing(args: Any) -> dict[str, Any]:
    sliding = bool(getattr(args, "sliding_window", False))
    mode = "sliding_window" if sliding else ("padding" if args.if_padding else "resizing")
    return {"mode": mode, "image_size": args.image_size, "edge_mask_width": args.edge_mask_width,
            "window_overlap": getattr(args, "window_overlap", None) if sliding else None}


class ResultsWriter:
    """Collects the records of one run folder and writes ``results.json`` + ``per_image.csv``."""

    def __init__(self, runtime: Runtime, output_dir: str, script: str, args: Any, model_kwargs: Mapping[str, Any],
                 definitions: Mapping[str, str], call: Any = None, protocol: Mapping[str, Any] | None = None,
                 started: float | None = None) -> None:
        self.active = runtime.is_main
        self.output_dir = Path(output_dir)
        self.started = started if started is not None else time.time()
        self.records: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        bootstrap = int(getattr(args, "bootstrap", 0) or 0)
        amp = bool(call is not None and call.use_amp and runtime.is_cuda)
        self.head: dict[str, Any] = {
            "schema": SCHEMA,
            "created": None,
            "script": script,
            "wall_time_s": None,
            "software": software_provenance() if self.active else {},
            "model": {"name": args.model, "options": plain(dict(model_kwargs))},
            "args": plain(args),
            "preprocessing": _preprocessing(args),
            "precision": call.amp_dtype if amp else "float32",
            "device": str(runtime.device),
            "processes": runtime.world_size,
            "seed": args.seed,
            "bootstrap": ({"resamples": bootstrap, "confidence": 0.95, "method": "percentile", "unit": "image",
                           "seed": args.seed} if bootstrap > 0 else None),
            "metric_definitions": dict(definitions),
            "protocol": dict(protocol) if protocol else None,
        }

    def add(self, measurement: Any, *, checkpoint: Mapping[str, Any], dataset: Mapping[str, Any],
            attack: Mapping[str, Any] | None = None, epoch: int | None = None) -> dict[str, Any]:
        """Add one record (and its per-image rows) and rewrite both files; returns the record."""
        keys = {"set": dataset["name"], "epoch": "" if epoch is None else epoch,
                "attack": "" if not attack else attack["name"], "param": "" if not attack else attack["param"]}
        metrics = {}
        for key, value in measurement.metrics.items():
            lo, hi = measurement.intervals.get(key, (None, None))
            metrics[key] = {"value": value, "ci_low": lo, "ci_high": hi}
        record = {
            "checkpoint": dict(checkpoint),
            "selection": SELECTION_LABELS[checkpoint["rule"]],
            "dataset": dict(dataset),
            "attack": dict(attack) if attack else None,
            "metrics": metrics,
            "calibration": measurement.calibration or {"image": None, "pixel": None},
            "per_image": {"file": runfolder.PER_IMAGE, "rows": keys},
        }
        if measurement.warning:
            record["warning"] = measurement.warning
        self.records.append(record)
        self.rows += [{**keys, **row} for row in measurement.rows]
        self.write()
        return record

    def write(self) -> None:
        if not self.active:
            return
        head = dict(self.head)
        head["created"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        head["wall_time_s"] = round(time.time() - self.started, 3)
        write_text(self.output_dir / runfolder.PER_IMAGE, per_image_csv(self.rows))
        write_json(self.output_dir / runfolder.RESULTS, plain({**head, "records": self.records}))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    return str(value)


def per_image_csv(rows: list[Mapping[str, Any]]) -> str:
    columns = [*RECORD_COLUMNS, *PER_IMAGE_COLUMNS]
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(columns)
    for row in rows:
        out.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def read_results(run_dir: str) -> dict[str, Any]:
    """A run folder's ``results.json``, checked for its schema (RunFolderError naming the file)."""
    import json

    from ..errors import RunFolderError

    path = Path(run_dir) / runfolder.RESULTS if Path(run_dir).is_dir() else Path(run_dir)
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no {runfolder.RESULTS} here (it is written by test.py, test_robust.py, "
                             f"train.py with --val_split/--val_data_path, and benco bench)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise RunFolderError(f"{path}: schema {found!r} is not {SCHEMA!r} (written by another version; rerun the "
                             f"test with this one)")
    return data
