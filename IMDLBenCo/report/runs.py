"""Reading run folders (the files of docs/ARCHITECTURE.md "Run folders") into plain data.

Standard library only: the report reads JSON and JSON-lines files; pictures and plots are made
elsewhere. Every reader tolerates a missing file (a test folder has no ``train_steps.jsonl``)
and fails with a message naming the file and line when a file exists but cannot be read.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runfolder
from ..errors import RunFolderError
from ..runfolder import split_test_key

__all__ = ["RunFolder", "RunFolderError", "load_run", "split_metric_key", "KNOWN_FILES"]

#: files a run folder may hold; a folder with none of them is not a run folder
KNOWN_FILES = runfolder.KNOWN_FILES


@dataclass
class RunFolder:
    """Everything the report uses from one ``--output_dir``."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    #: one dict per line of log.txt (training epochs, or test checkpoints)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    #: one dict per line of train_steps.jsonl
    steps: list[dict[str, Any]] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)
    #: test summary rows: {"epoch", "set", metric: value}
    summary_rows: list[dict[str, Any]] = field(default_factory=list)
    robustness: dict[str, Any] | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    complexity: dict[str, Any] | None = None
    #: cam.json without its records: {"target_layer", "target_layer_auto", "method", "target", ...}
    cam: dict[str, Any] | None = None
    #: cam.json records by sample name: {"cam_path", "overlay_path", ...}
    cam_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    #: {dataset path: test set name} known from the runs shown together (see report.build)
    set_names: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def script(self) -> str:
        """The script that wrote the folder (``train``, ``test`` ...), from config.json or guessed."""
        script = self.config.get("script")
        if script:
            return str(script)
        if self.steps or any(k.startswith("train_") for row in self.epochs for k in row):
            return "train"
        if self.robustness is not None:
            return "test_robust"
        if self.summary_rows:
            return "test"
        if self.predictions:
            return "test_save_images"
        if self.complexity is not None:
            return "test_complexity"
        if self.cam is not None:
            return "test_cam"
        return "unknown"

    @property
    def args(self) -> dict[str, Any]:
        args = self.config.get("args")
        return args if isinstance(args, dict) else {}

    @property
    def model(self) -> str:
        for source in (self.args, self.complexity or {}):
            if source.get("model"):
                return str(source["model"])
        return "?"

    def metrics_over_epochs(self) -> dict[str, dict[str, list[tuple[float, float]]]]:
        """``{set: {metric: [(epoch, value), ...]}}`` from log.txt test keys or the test summary."""
        table: dict[str, dict[str, list[tuple[float, float]]]] = {}
        if self.summary_rows:
            for row in self.summary_rows:
                set_name = str(row.get("set", "test"))
                epoch = row.get("epoch", 0)
                for key, value in row.items():
                    if key in ("epoch", "set") or not _is_metric_value(value):
                        continue
                    table.setdefault(set_name, {}).setdefault(key, []).append((float(epoch), float(value)))
        else:
            per_set_seen = any((split_test_key(k) or (None, ""))[0] is not None for row in self.epochs for k in row)
            for row in self.epochs:
                epoch = row.get("epoch")
                if not _is_number(epoch):
                    continue
                for key, value in row.items():
                    parsed = split_metric_key(key)
                    if parsed is None or not _is_metric_value(value):
                        continue
                    set_name, metric = parsed
                    # the mean over sets ("test_<metric>") is shown only when no per-set key exists
                    if set_name is None:
                        if per_set_seen:
                            continue
                        set_name = "test"
                    table.setdefault(set_name, {}).setdefault(metric, []).append((float(epoch), float(value)))
        for metrics in table.values():
            for series in metrics.values():
                series.sort()
        return table

    def headline_metrics(self) -> dict[str, dict[str, tuple[float, float]]]:
        """``{set: {metric: (epoch, value)}}`` at the last evaluated epoch of each set."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for set_name, metrics in self.metrics_over_epochs().items():
            for metric, series in metrics.items():
                if series:
                    out.setdefault(set_name, {})[metric] = series[-1]
        if not out and self.robustness:
            # a robustness folder: its clean (strength 0 / None) results are its headline
            for result in self.robustness.get("results", []):
                if result.get("param") in (None, 0):
                    dataset = str(self.robustness.get("dataset") or "test")
                    name = self.set_names.get(os.path.normcase(os.path.abspath(dataset))) or Path(dataset).name
                    for metric, value in (result.get("metrics") or {}).items():
                        if _is_metric_value(value):
                            out.setdefault(name, {})[metric] = (0.0, float(value))
                    break
        return out

    def loss_keys(self) -> list[str]:
        keys: list[str] = []
        for row in self.steps:
            for key, value in row.items():
                if key not in ("step", "epoch", "lr") and _is_number(value) and key not in keys:
                    keys.append(key)
        return keys


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _is_metric_value(value: Any) -> bool:
    """A number, NaN included: an undefined metric (e.g. AUC on one class) is shown, not dropped."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isinf(float(value))


#: ``"test_<set>/<metric>"`` → ``(set, metric)``; the format is defined in IMDLBenCo.runfolder
split_metric_key = split_test_key


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path}: not valid JSON ({err}); the engine writes this file, was it cut short?") from err


def _read_json_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RunFolderError(f"{path}, line {number}: expected one JSON object per line, got {line[:80]!r} ({err})") from err
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _expect(path: Path, value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise RunFolderError(f"{path}: expected {what}, found a {type(value).__name__}")
    return value


def load_run(path: str | Path) -> RunFolder:
    """Read the run folder at ``path`` (the ``--output_dir`` of a train/test/... script)."""
    root = Path(path)
    if not root.is_dir():
        raise RunFolderError(f"run folder {root} does not exist or is not a folder; pass the --output_dir of a train, test, test_robust, test_save_images or test_complexity run")
    present = [name for name in KNOWN_FILES if (root / name).is_file()]
    checkpoints = sorted(p.name for p in root.glob("*.pth"))
    if not present and not checkpoints:
        raise RunFolderError(
            f"{root} holds none of the files a run writes ({', '.join(KNOWN_FILES)}); "
            "pass the --output_dir of a train, test, test_robust, test_save_images or test_complexity run"
        )
    run = RunFolder(path=root, checkpoints=checkpoints)
    if (root / runfolder.CONFIG).is_file():
        run.config = _expect(root / runfolder.CONFIG, _read_json(root / runfolder.CONFIG), dict, 'an object {"script", "args", ...}')
    if (root / runfolder.LOG).is_file():
        run.epochs = _read_json_lines(root / runfolder.LOG)
    if (root / runfolder.TRAIN_STEPS).is_file():
        run.steps = _read_json_lines(root / runfolder.TRAIN_STEPS)
    if (root / runfolder.METRIC_DEFINITIONS).is_file():
        defs = _expect(root / runfolder.METRIC_DEFINITIONS, _read_json(root / runfolder.METRIC_DEFINITIONS), dict, "an object {metric: definition}")
        run.definitions = {str(k): str(v) for k, v in defs.items()}
    if (root / runfolder.SUMMARY_JSON).is_file():
        summary = _expect(root / runfolder.SUMMARY_JSON, _read_json(root / runfolder.SUMMARY_JSON), dict, 'an object {"rows": [...]}')
        run.summary_rows = [r for r in _expect(root / runfolder.SUMMARY_JSON, summary.get("rows", []), list, 'a list under "rows"') if isinstance(r, dict)]
    if (root / runfolder.ROBUSTNESS).is_file():
        run.robustness = _expect(root / runfolder.ROBUSTNESS, _read_json(root / runfolder.ROBUSTNESS), dict, 'an object {"checkpoint", "dataset", "results"}')
    if (root / runfolder.PREDICTIONS).is_file():
        preds = _expect(root / runfolder.PREDICTIONS, _read_json(root / runfolder.PREDICTIONS), list, "a list of {name, image_path, mask_path, pred_path, label, pred_label}")
        run.predictions = [p for p in preds if isinstance(p, dict)]
    elif (root / runfolder.PRED_LABELS).is_file():
        labels = _expect(root / runfolder.PRED_LABELS, _read_json(root / runfolder.PRED_LABELS), dict, "an object {name: probability}")
        run.predictions = [{"name": k, "pred_label": v} for k, v in labels.items()]
    if (root / runfolder.CAM_JSON).is_file():
        _read_cam(run, root / runfolder.CAM_JSON)
    if (root / runfolder.COMPLEXITY).is_file():
        run.complexity = _expect(root / runfolder.COMPLEXITY, _read_json(root / runfolder.COMPLEXITY), dict, 'an object {"model", "params", "flops", ...}')
    return run


def _read_cam(run: RunFolder, path: Path) -> None:
    """cam.json (``{..., "records": [...]}``, or a bare list of records) into ``run.cam`` and
    ``run.cam_records``; a folder with CAMs but no saved predictions gets its samples from it."""
    data = _read_json(path)
    if isinstance(data, list):
        data = {"records": data}
    data = _expect(path, data, dict, 'an object {"target_layer", "method", "target", "records": [...]}')
    records = [r for r in _expect(path, data.get("records", []), list, 'a list under "records"') if isinstance(r, dict)]
    header = {k: v for k, v in data.items() if k not in ("records", "args")}
    if records and "target_layer" not in header:  # a bare list: the settings are in every record
        header.update({k: records[0][k] for k in ("target_layer", "method", "target") if k in records[0]})
    run.cam = header
    run.cam_records = {str(r.get("name")): r for r in records if r.get("name") is not None}
    if not run.predictions:
        run.predictions = [{"name": r.get("name"), "image_path": r.get("image_path"), "mask_path": r.get("mask_path"),
                            "pred_path": None, "label": r.get("label"), "pred_label": None} for r in records]
