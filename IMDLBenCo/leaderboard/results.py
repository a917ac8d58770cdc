"""Find and read ``results.json`` files (schema ``imdlbenco.results/1``, docs/results.md).

Standard library only. Every problem with a file is one :class:`RunFolderError` naming the file,
what was wrong and what to do.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runfolder
from ..errors import RunFolderError

#: the schemas this reader understands
KNOWN_SCHEMAS = (runfolder.RESULTS_SCHEMA,)
RESULTS_NAME = runfolder.RESULTS
#: the label of a checkpoint chosen on the test sets themselves (docs/results.md)
OPTIMISTIC_RULE = "test_sets"
SELECTION_LABELS = runfolder.SELECTION_LABELS


@dataclass
class ResultsFile:
    """One ``results.json``: its path, its parsed content and a short label for pages."""

    path: Path
    data: dict[str, Any]
    label: str

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def protocol(self) -> dict[str, Any] | None:
        proto = self.data.get("protocol")
        return proto if isinstance(proto, dict) and proto.get("name") else None

    @property
    def entry(self) -> str:
        """The model entry: a protocol's model id (its cell without the set), else the cell, else the folder."""
        proto = self.protocol or {}
        for key in ("model_id", "cell"):
            value = proto.get(key)
            if isinstance(value, dict):
                value = value.get("name") or json.dumps(value, sort_keys=True)
            if value not in (None, ""):
                return str(value)
        return self.label

    @property
    def bootstrap(self) -> dict[str, Any] | None:
        boot = self.data.get("bootstrap")
        return boot if isinstance(boot, dict) else None


@dataclass
class Record:
    """One record of a results file (a checkpoint × test set × attack and strength)."""

    file: ResultsFile
    index: int
    raw: dict[str, Any]
    model: str
    model_options: dict[str, Any]
    dataset_name: str
    dataset_hash: str
    attack: str | None
    param: Any
    rule: str
    selection: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def optimistic(self) -> bool:
        return self.rule == OPTIMISTIC_RULE

    @property
    def checkpoint(self) -> dict[str, Any]:
        ckpt = self.raw.get("checkpoint")
        return ckpt if isinstance(ckpt, dict) else {}

    @property
    def dataset(self) -> dict[str, Any]:
        return self.raw.get("dataset") or {}

    @property
    def created(self) -> str:
        return str(self.file.data.get("created") or "")

    def value(self, metric: str) -> tuple[float | None, float | None, float | None]:
        """(value, ci_low, ci_high) of ``metric``; None where absent or not a finite number."""
        entry = self.metrics.get(metric)
        if not isinstance(entry, dict):
            return None, None, None
        return _finite(entry.get("value")), _finite(entry.get("ci_low")), _finite(entry.get("ci_high"))

    def per_image_path(self) -> Path | None:
        info = self.raw.get("per_image")
        if not isinstance(info, dict) or not info.get("file"):
            return None
        path = self.file.folder / str(info["file"])
        return path if path.is_file() else None

    def per_image_selector(self) -> dict[str, str]:
        info = self.raw.get("per_image")
        rows = info.get("rows") if isinstance(info, dict) else None
        return {k: csv_text(v) for k, v in rows.items()} if isinstance(rows, dict) else {}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def csv_text(value: Any) -> str:
    """How a value of a record's ``per_image.rows`` appears in per_image.csv (null: empty; 7.0: 7)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def discover(paths: Sequence[os.PathLike], exclude: os.PathLike | None = None) -> list[Path]:
    """Every ``results.json`` under ``paths`` (a results file, a run folder, or a folder of run
    folders such as a ``benco bench --out`` folder), sorted, without duplicates; nothing under
    ``exclude`` (the site being written)."""
    skip = Path(exclude).resolve() if exclude else None
    found: list[Path] = []
    seen = set()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise RunFolderError(f"{path}: no such file or folder; give run folders (a test script's --output_dir) "
                                 "or a folder holding them (such as a `benco bench --out` folder).")
        if path.is_file():
            if path.name != RESULTS_NAME:
                raise RunFolderError(f"{path}: not a {RESULTS_NAME}; give the run folder (or the {RESULTS_NAME} "
                                     "file a test run wrote into it).")
            candidates = [path]
        else:
            candidates = sorted(p for p in path.rglob(RESULTS_NAME) if p.is_file())
            if skip is not None:
                candidates = [p for p in candidates if skip not in p.resolve().parents]
            if not candidates:
                raise RunFolderError(f"{path}: no {RESULTS_NAME} in this folder or below it; test runs write one into "
                                     "their --output_dir (test.py, test_robust.py, train.py with a validation rule, "
                                     "benco bench cells).")
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found


def _labels(paths: Sequence[Path]) -> list[str]:
    """Short names for result folders: their path relative to the deepest common folder."""
    folders = [p.resolve().parent for p in paths]
    if len(folders) == 1:
        return [folders[0].name or str(folders[0])]
    common = Path(os.path.commonpath([str(f) for f in folders]))
    labels = []
    for folder in folders:
        rel = folder.relative_to(common).as_posix()
        labels.append(rel if rel != "." else folder.name)
    return labels


def read_results(path: Path, label: str = "") -> ResultsFile:
    """Parse and check one results file; unknown schemas are refused."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunFolderError(f"{path}: cannot be read ({err.strerror or err}).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path}: not valid JSON ({err}); the run that wrote it may have been interrupted — "
                             "run the test again or remove the file.") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: expected a JSON object with a 'schema' key, found {type(data).__name__}.")
    schema = data.get("schema")
    if schema not in KNOWN_SCHEMAS:
        raise RunFolderError(f"{path}: schema {schema!r} is not one this IMDLBenCo reads "
                             f"({', '.join(KNOWN_SCHEMAS)}); " + (
                                 "install the IMDLBenCo version that wrote it, or a newer one."
                                 if isinstance(schema, str) and schema.startswith("imdlbenco.results/")
                                 else "this file was not written by an IMDLBenCo test run."))
    records = data.get("records")
    if not isinstance(records, list):
        raise RunFolderError(f"{path}: 'records' must be a list of records (docs/results.md), "
                             f"found {type(records).__name__}.")
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"]:
        raise RunFolderError(f"{path}: 'model.name' is missing; every results.json names its model (docs/results.md).")
    return ResultsFile(path=path, data=data, label=label or path.parent.name)


def _record(file: ResultsFile, index: int, raw: Any) -> Record:
    where = f"{file.path}: records[{index}]"
    if not isinstance(raw, dict):
        raise RunFolderError(f"{where}: expected an object, found {type(raw).__name__}.")
    dataset = raw.get("dataset")
    if not isinstance(dataset, dict) or not dataset.get("name"):
        raise RunFolderError(f"{where}: 'dataset.name' is missing (docs/results.md, 'A record').")
    metrics = raw.get("metrics")
    if not isinstance(metrics, dict):
        raise RunFolderError(f"{where}: 'metrics' must be an object of {{metric: {{value, ci_low, ci_high}}}}.")
    attack = raw.get("attack")
    if attack is not None and not (isinstance(attack, dict) and attack.get("name")):
        raise RunFolderError(f"{where}: 'attack' must be null or {{\"name\", \"param\"}}, found {attack!r}.")
    ckpt = raw.get("checkpoint") if isinstance(raw.get("checkpoint"), dict) else {}
    rule = str(ckpt.get("rule") or "")
    selection = str(raw.get("selection") or SELECTION_LABELS.get(rule, "not stated"))
    model = file.data["model"]
    options = model.get("options") if isinstance(model.get("options"), dict) else {}
    return Record(
        file=file, index=index, raw=raw, model=str(model["name"]), model_options=options,
        dataset_name=str(dataset["name"]), dataset_hash=str(dataset.get("content_hash") or ""),
        attack=str(attack["name"]) if attack else None, param=attack.get("param") if attack else None,
        rule=rule, selection=selection, metrics=metrics,
    )


def load_records(paths: Sequence[os.PathLike], exclude: os.PathLike | None = None
                 ) -> tuple[list[ResultsFile], list[Record]]:
    """Discover, read and flatten every results file under ``paths``.

    Files of an unknown schema are refused together, in one message."""
    found = discover(paths, exclude)
    labels = _labels(found)
    files: list[ResultsFile] = []
    refused: list[str] = []
    for path, label in zip(found, labels):
        try:
            files.append(read_results(path, label))
        except RunFolderError as err:
            refused.append(str(err))
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise RunFolderError(refused[0] + more)
    # a benco bench cell merges its stages' results (test/, robust/) into its own results.json and
    # lists them under "stages": read only the merged file, so no record counts twice
    parts = {(f.folder / str(stage.get("file"))).resolve() for f in files
             for stage in (f.data.get("stages") or {}).values() if isinstance(stage, dict) and stage.get("file")}
    files = [f for f in files if f.path.resolve() not in parts]
    records = [_record(f, i, raw) for f in files for i, raw in enumerate(f.data["records"])]
    if not records:
        raise RunFolderError("no records in " + ", ".join(str(f.path) for f in files) +
                             ": the test runs wrote no result (did they test any set?).")
    return files, records
