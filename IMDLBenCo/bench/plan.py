"""A protocol → its plan: trainings, cells (model × test set), their configurations and provenance.

Folder layout under ``--out`` (docs/bench.md)::

    bench.json                     the plan, each cell's status and folder
    <model id>/train/              train.py's run folder (checkpoints, val_split.json, log.txt)
    <model id>/train.json          written when the training finished: its provenance and checkpoint
    <model id>/train_config.json   the options train.py got (--config)
    <model id>/<test set>/         one cell: results.json, per_image.csv, cell.json, bench.log,
                                   test/ (test.py) and robust/ (test_robust.py)

A cell is done when its ``results.json`` carries the provenance the plan computes now: the hash
of everything its numbers depend on (the model and its options, the training data, the validation
choice, the test set's content hash, the metrics, the attacks, the checkpoint). Editing one model
of a protocol leaves the other models' cells done.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .protocol import Attack, ModelEntry, Protocol, ProtocolError

__all__ = ["Training", "Cell", "Plan", "make_plan", "ensure_synth_data", "cell_spec", "BEST_CHECKPOINT",
           "TRAIN_MARKER", "TRAIN_PLAN", "CELL_SPEC", "RESULTS", "digest", "read_json"]

BEST_CHECKPOINT = "checkpoint-best.pth"
TRAIN_MARKER = "train.json"
CELL_SPEC = "cell.json"
RESULTS = "results.json"
SYNTH_MARKER = "benco_synth.json"
#: recipe keys that name data or run folders: the protocol sets these
_RECIPE_PATHS = ("data_path", "test_data_path", "test_data_json", "checkpoint_path", "output_dir", "log_dir",
                 "resume", "val_data_path", "val_split")
_INPUT_KEYS = ("image_size", "if_padding", "if_resizing")


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_json(path: Path) -> Any | None:
    """The JSON content of ``path``, or None when it is absent or unreadable (an interrupted write)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@dataclass
class Training:
    """The training of one model entry (shared by the cells of that model)."""

    model_id: str
    folder: Path  # train.py's --output_dir
    marker: Path
    config: dict[str, Any]  # train.py's options (--config)
    provenance: str
    status: str = "pending"  # trained | pending | stale | blocked
    missing: list[str] = field(default_factory=list)
    checkpoint_sha256: str | None = None

    @property
    def checkpoint(self) -> Path:
        return self.folder / BEST_CHECKPOINT

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model_id, "folder": str(self.folder), "status": self.status,
                "provenance": self.provenance, "checkpoint": str(self.checkpoint),
                "checkpoint_sha256": self.checkpoint_sha256, "missing": self.missing}


@dataclass
class Cell:
    """One model × one test set: its run folder, what it runs and whether it is done."""

    model_id: str
    set_name: str
    set_path: str
    folder: Path
    entry: ModelEntry
    training: Training | None
    checkpoint: str
    test_config: dict[str, Any]
    robust_config: dict[str, Any] | None  # None: no attack on this set
    attacks: list[Attack]
    provenance: str
    status: str = "pending"  # done | pending | stale | blocked
    missing: list[str] = field(default_factory=list)
    images: int | None = None  # test images (for the estimate)

    @property
    def id(self) -> str:
        return f"{self.model_id}/{self.set_name}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model_id, "set": self.set_name, "folder": str(self.folder),
                "status": self.status, "provenance": self.provenance, "missing": self.missing,
                "trained": self.training is not None, "checkpoint": self.checkpoint}


@dataclass
class Plan:
    protocol: Protocol
    out: Path
    trainings: dict[str, Training]
    cells: list[Cell]
    test_sets: dict[str, str]
    data_info: dict[str, dict[str, Any]]  # dataset path → content hash info (or {"missing": why})
    nproc: int = 1
    nnodes: int = 1
    synth_pending: bool = False  # a synth: protocol whose data is generated when it runs

    @property
    def missing(self) -> list[str]:
        seen: list[str] = []
        for item in [m for t in self.trainings.values() for m in t.missing] + [m for c in self.cells
                                                                                 for m in c.missing]:
            if item not in seen:
                seen.append(item)
        return seen

    def to_json(self) -> dict[str, Any]:
        return {"schema": "imdlbenco.bench/1", "protocol": self.protocol.summary(), "out": str(self.out),
                "data_root": str(self.protocol.data_root), "nproc": self.nproc, "nnodes": self.nnodes,
                "trainings": [t.to_json() for t in self.trainings.values()],
                "cells": [c.to_json() for c in self.cells]}


# --------------------------------------------------------------------------------------------- data


def ensure_synth_data(protocol: Protocol) -> bool:
    """Generate a ``synth:`` protocol's data in its data root when absent; True when generated."""
    if protocol.synth is None:
        return False
    root = protocol.data_root
    marker = root / SYNTH_MARKER
    if read_json(marker) == protocol.synth:
        return False
    if root.is_dir() and any(root.iterdir()) and not marker.is_file():
        return False  # the user's own data at that place: used as it is
    from ..datasets.synth import make_synthetic_dataset

    make_synthetic_dataset(str(root), n=protocol.synth["n"], size=protocol.synth["size"], seed=protocol.synth["seed"])
    marker.write_text(json.dumps(protocol.synth) + "\n", encoding="utf-8")
    return True


def synth_pending(protocol: Protocol) -> bool:
    return protocol.synth is not None and read_json(protocol.data_root / SYNTH_MARKER) != protocol.synth and not (
        protocol.data_root.is_dir() and any(protocol.data_root.iterdir()))


def _dataset_info(path: str, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Content hash and sample count of the dataset at ``path`` (``{"missing": why}`` when it cannot be read)."""
    if path in cache:
        return cache[path]
    from ..datasets.identity import path_content_hash
    from ..errors import IMDLBenCoError

    if not os.path.exists(path):
        info: dict[str, Any] = {"missing": f"{path} (no such file or folder)"}
    else:
        try:
            info = path_content_hash(path)
        except (IMDLBenCoError, OSError, ValueError) as err:
            info = {"missing": f"{path}: {' '.join(str(err).split())}"}
    cache[path] = info
    return info


def _file_sha256(path: str) -> str | None:
    from ..datasets.identity import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def _module_sha256(name: str, source_dir: Path) -> str | None:
    """sha256 of the source file of module ``name`` (so an edited model file retrains), None if unknown."""
    import importlib.util

    if str(source_dir) not in sys.path:
        sys.path.insert(0, str(source_dir))
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec else None
    return _file_sha256(origin) if origin and os.path.isfile(origin) else None


# --------------------------------------------------------------------------------------------- models


def _recipes() -> dict[str, dict[str, Any]]:
    import contextlib as _c

    from ..cli.init import find_recipes

    out: dict[str, dict[str, Any]] = {}
    with _c.redirect_stderr(io.StringIO()):
        for kind in ("backbone", "model_zoo"):
            for _, recipe in find_recipes(kind):
                out[recipe["model"]] = recipe
    return out


def _import_models(protocol: Protocol, problems: list[str]) -> None:
    """Import each entry's ``import:`` modules and check its model is registered."""
    from ..engine.builders import import_modules
    from ..errors import IMDLBenCoError
    from ..registry import MODELS

    if str(protocol.source_dir) not in sys.path:
        sys.path.insert(0, str(protocol.source_dir))
    for entry in protocol.models:
        try:
            import_modules(entry.imports)
        except IMDLBenCoError as err:
            problems.append(f"{protocol.file}: {entry.key}.import: {err}")
            continue
        try:
            MODELS.get(entry.model)
        except KeyError as err:
            hint = "" if entry.imports else " (a model of your own needs `import: your_module`)"
            problems.append(f"{protocol.file}: {entry.key}.model: {err.args[0] if err.args else err}{hint}")


def _split(options: dict[str, Any], script: str) -> dict[str, Any]:
    """The options ``script`` takes: its own (option table) and the model's (everything else)."""
    from .. import runoptions

    table = runoptions.names()
    mine = runoptions.names((script,))
    return {k: v for k, v in options.items() if k not in table or k in mine}


def _stage_options(protocol: Protocol, entry: ModelEntry, recipe: dict[str, Any] | None, stage: str
                   ) -> tuple[dict[str, Any], list[str]]:
    """Layered options of ``stage`` (train or test): recipe < protocol input < protocol options <
    the entry's input < the entry's options; returns (options, problems)."""
    from .. import runoptions

    problems: list[str] = []
    merged: dict[str, Any] = {}
    if recipe:
        if stage == "train":
            base = dict(recipe.get("train") or {})
        else:
            base = dict(recipe.get("test") or {k: v for k, v in (recipe.get("train") or {}).items()
                                               if k not in runoptions.train_only()})
        merged.update({k: v for k, v in base.items() if k not in _RECIPE_PATHS})
    rule = entry.input or protocol.input
    if rule is not None:
        for key in _INPUT_KEYS:
            merged.pop(key, None)
        merged.update(rule.options())
    merged.update(protocol.options)
    if stage == "train":
        merged.update(protocol.train_options)
    merged.update(entry.options)
    merged.update(entry.train_options if stage == "train" else entry.test_options)
    if not any(merged.get(k) for k in ("if_padding", "if_resizing")) or "image_size" not in merged:
        problems.append(f"{protocol.file}: {entry.key}: no input size rule: give `input: {{image_size: S, rule: "
                        f"padding|resizing}}` (for the protocol or this entry){'' if recipe else '; ' + entry.model + ' has no zoo recipe'}")
    merged.pop("model", None)
    merged = {k: v for k, v in merged.items() if v is not None and not (v is False and k in ("if_padding", "if_resizing"))}
    return merged, problems


def _weights(protocol: Protocol, entry: ModelEntry, recipe: dict[str, Any] | None, options: dict[str, Any]
             ) -> list[str]:
    """Point the recipe's pretrained-weights option at ``weights_dir/<file>`` (unless the protocol set
    it); returns the missing files."""
    weights = (recipe or {}).get("weights") or {}
    option = str(weights.get("option") or "").lstrip("-")
    if not option or not weights.get("file"):
        return []
    given = {**entry.options, **entry.train_options, **protocol.options, **protocol.train_options}
    if option in given:
        path = options.get(option)
        if isinstance(path, str) and path and not os.path.isabs(path):
            options[option] = str((protocol.data_root / path).resolve())
    else:
        options[option] = str(protocol.weights_dir / str(weights["file"]))
    path = options.get(option)
    if isinstance(path, str) and path and not os.path.isfile(path):
        source = weights.get("source", "the model's README")
        return [f"{path} (pretrained weights of {entry.model}, --{option}; download from {source})"]
    return []


def _parse_check(script: str, model: str, options: dict[str, Any], key: str, tmp: Path) -> str | None:
    """Parse ``options`` as ``script`` would (with the model's own options); the message of the first
    problem, or None."""
    from ..engine.arguments import parse_script_args

    config = tmp / f"check_{script}.json"
    config.write_text(json.dumps({"model": model, **options}), encoding="utf-8")
    argv = ["--config", str(config), "--device", "cpu", "--output_dir", str(tmp / "never_written")]
    if script == "train":
        argv += ["--data_path", str(tmp)]
    else:
        argv += ["--checkpoint_path", str(tmp / "x.pth"), "--test_data_path", str(tmp)]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse_script_args(script, argv)
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        message = lines[-1] if lines else "the options were refused"
        message = message.split(": error: ", 1)[-1].replace(f"--config {config}: ", "")
        return f"{key} ({script}.py): {message}"
    except Exception as err2:  # a model whose options cannot be read: say which
        return f"{key} ({script}.py): {type(err2).__name__}: {err2}"
    return None


# --------------------------------------------------------------------------------------------- plan


def make_plan(protocol: Protocol, out: Path, only: Sequence[str] = (), nproc: int = 1, nnodes: int = 1,
              check_options: bool = True) -> Plan:
    """The plan of ``protocol`` in ``out``: every training and cell with its status.

    ``only``: ``MODEL`` or ``MODEL/SET`` selectors (others are left out of the plan).
    Raises :class:`ProtocolError` for what makes the protocol impossible to run (an unknown model,
    a refused option); missing data and weights are reported per cell (status ``blocked``).
    """
    import tempfile

    from ..datasets import load_test_datasets
    from ..errors import IMDLBenCoError

    out = Path(out).resolve()
    problems: list[str] = []
    _import_models(protocol, problems)
    if problems:
        raise ProtocolError("\n  ".join([f"{len(problems)} problem(s) with the protocol's models:"] + problems))
    recipes = _recipes()
    cache: dict[str, dict[str, Any]] = {}
    pending_synth = synth_pending(protocol)

    # test sets
    test_sets = dict(protocol.test_sets)
    set_missing: list[str] = []
    if protocol.test_file:
        try:
            test_sets = load_test_datasets(protocol.test_file)
        except (IMDLBenCoError, OSError) as err:
            set_missing.append(f"{protocol.test_file}: {' '.join(str(err).split())}")
    wanted_models = {s.split("/", 1)[0] for s in only}
    unknown = sorted(wanted_models - {e.id for e in protocol.models})
    if unknown:
        raise ProtocolError(f"--only {', '.join(unknown)}: no such model id in {protocol.file} (ids: "
                            f"{', '.join(e.id for e in protocol.models)})")
    unknown_sets = sorted({s.split("/", 1)[1] for s in only if "/" in s} - set(test_sets))
    if unknown_sets and test_sets:
        raise ProtocolError(f"--only: no test set {', '.join(unknown_sets)} in {protocol.file} (sets: "
                            f"{', '.join(test_sets)})")

    def selected(model_id: str, set_name: str) -> bool:
        if not only:
            return True
        return any(s == model_id or s == f"{model_id}/{set_name}" for s in only)

    attacked = None if protocol.robustness is None else protocol.robustness.sets
    attacks = _resolve_attacks(protocol)
    metrics = [{"name": m.name, "params": m.params} for m in protocol.metrics]
    trainings: dict[str, Training] = {}
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="benco_bench_") as tmp:
        for entry in protocol.models:
            use_recipe = entry.recipe if entry.recipe is not None else entry.model in recipes
            if entry.recipe and entry.model not in recipes:
                problems.append(f"{protocol.file}: {entry.key}.recipe: there is no zoo recipe for {entry.model}; "
                                f"remove `recipe: true` and give its options")
                continue
            recipe = recipes.get(entry.model) if use_recipe else None
            imports = {m: _module_sha256(m, protocol.source_dir) for m in entry.imports}
            test_options, bad = _stage_options(protocol, entry, recipe, "test")
            problems += bad
            if bad:
                continue
            training: Training | None = None
            missing_train: list[str] = []
            if entry.checkpoint is None:
                train_options, bad = _stage_options(protocol, entry, recipe, "train")
                problems += bad
                if bad:
                    continue
                missing_train += _weights(protocol, entry, recipe, train_options)
                train_config = {"model": entry.model, **_split(train_options, "train")}
                if check_options:
                    message = _parse_check("train", entry.model, _split(train_options, "train"), entry.key, Path(tmp))
                    if message:
                        problems.append(f"{protocol.file}: {message}")
                        continue
                data = _dataset_info(protocol.train_data, cache) if protocol.train_data else {"missing": "train.data"}
                val: dict[str, Any] = {"split": protocol.val_split}
                if protocol.val:
                    vinfo = _dataset_info(protocol.val, cache)
                    val = {"path_hash": vinfo.get("content_hash")}
                    if "missing" in vinfo and not pending_synth:
                        missing_train.append(f"{vinfo['missing']} (train.val)")
                if "missing" in data and not pending_synth:
                    missing_train.append(f"{data['missing']} (train.data)")
                # files named by options (pretrained weights): their content, not their path, counts
                weights = {k: _file_sha256(v) for k, v in train_options.items() if isinstance(v, str) and os.path.isfile(v)}
                provenance = digest({"kind": "train", "model": entry.model, "config": train_config,
                                     "data": data.get("content_hash"), "val": val,
                                     "augmentation": protocol.augmentation, "threads": protocol.threads, "metrics": metrics, "imports": imports,
                                     "weights": weights, "processes": nproc * nnodes})
                folder = out / entry.id
                training = Training(entry.id, folder / "train", folder / TRAIN_MARKER, train_config, provenance)
                training.missing = missing_train
                _training_status(training)
                trainings[entry.id] = training
                checkpoint = str(training.checkpoint)
                # the checkpoint's sha256 is known only once trained: _cell_status compares it with the records'
                source: dict[str, Any] = {"train": provenance}
            else:
                checkpoint = entry.checkpoint
                sha = _file_sha256(checkpoint) if os.path.isfile(checkpoint) else None
                if sha is None:
                    missing_train.append(f"{checkpoint} (checkpoint of {entry.key})")
                source = {"checkpoint_sha256": sha}
            if check_options:
                message = _parse_check("test", entry.model, _split(test_options, "test"), entry.key, Path(tmp))
                if message:
                    problems.append(f"{protocol.file}: {message}")
                    continue
            for set_name, set_path in test_sets.items():
                if not selected(entry.id, set_name):
                    continue
                info = _dataset_info(set_path, cache)
                missing = list(missing_train)
                if "missing" in info and not pending_synth:
                    missing.append(f"{info['missing']} (test set {set_name})")
                on_set = protocol.robustness is not None and (attacked is None or set_name in attacked)
                test_config = {"model": entry.model, **_split(test_options, "test")}
                robust_config = {"model": entry.model, **_split(test_options, "test_robust")} if on_set else None
                if protocol.bootstrap is not None:
                    test_config["bootstrap"] = protocol.bootstrap
                    if robust_config is not None:
                        robust_config["bootstrap"] = protocol.bootstrap
                cell_attacks = attacks if on_set else []
                provenance = digest({"kind": "cell", "protocol": protocol.name, "model": entry.model,
                                     "source": source, "set": {"name": set_name, "hash": info.get("content_hash")},
                                     "test": test_config, "robust": robust_config, "metrics": metrics,
                                     "attacks": [_attack_json(a) for a in cell_attacks], "imports": imports})
                cell = Cell(entry.id, set_name, set_path, out / entry.id / set_name, entry, training, checkpoint,
                            test_config, robust_config, cell_attacks, provenance, missing=missing,
                            images=info.get("samples"))
                _cell_status(cell)
                cells.append(cell)
    if problems:
        raise ProtocolError("\n  ".join([f"{len(problems)} problem(s) with the protocol's models:"] + problems))
    for item in set_missing:
        for cell in cells:
            cell.missing.append(item)
            cell.status = "blocked"
    plan = Plan(protocol, out, trainings, cells, test_sets, cache, nproc=nproc, nnodes=nnodes,
                synth_pending=pending_synth)
    return plan


def _attack_json(attack: Attack) -> dict[str, Any]:
    return {"name": attack.name, "levels": list(attack.levels), "params": attack.params}


def _resolve_attacks(protocol: Protocol) -> list[Attack]:
    """The protocol's attacks, or test_robust.py's default grid (IMDL-BenCo's)."""
    if protocol.robustness is None:
        return []
    if protocol.robustness.attacks is not None:
        return list(protocol.robustness.attacks)
    from ..engine.robustness import attack_name, default_attacks

    out = []
    for wrapper in default_attacks():
        levels = tuple(param if param is not None else 0 for param, _ in wrapper)
        out.append(Attack(attack_name(wrapper), levels, {}))
    return out


def _training_status(training: Training) -> None:
    marker = read_json(training.marker)
    if training.missing:
        training.status = "blocked"
    elif isinstance(marker, dict) and marker.get("provenance") == training.provenance and training.checkpoint.is_file():
        sha = _file_sha256(str(training.checkpoint))
        if sha and sha == marker.get("checkpoint_sha256"):
            training.status = "trained"
            training.checkpoint_sha256 = sha
            return
        training.status = "stale"
    elif isinstance(marker, dict):
        training.status = "stale"
    else:
        training.status = "pending"


def _cell_status(cell: Cell) -> None:
    if cell.missing or (cell.training is not None and cell.training.status == "blocked"):
        cell.status = "blocked"
        return
    if cell.training is not None and cell.training.status != "trained":
        # a (re)training makes a new checkpoint: results from any earlier one do not count
        cell.status = "pending" if not (cell.folder / RESULTS).is_file() else "stale"
        return
    results = read_json(cell.folder / RESULTS)
    if not isinstance(results, dict):
        cell.status = "pending"
        return
    proto = results.get("protocol") if isinstance(results.get("protocol"), dict) else {}
    if proto.get("provenance") != cell.provenance:
        cell.status = "stale"
        return
    if cell.training is not None:
        # tested on the checkpoint the training holds now (not on one of an earlier training)
        shas = {(r.get("checkpoint") or {}).get("sha256") for r in results.get("records") or [] if isinstance(r, dict)}
        if shas != {cell.training.checkpoint_sha256}:
            cell.status = "stale"
            return
    cell.status = "done"


TRAIN_PLAN = "train_plan.json"


def _fresh(training: Training) -> bool:
    """Whether the training folder holds another training's files (its protocol entry changed): then
    train.py starts over (``--overwrite``); else it resumes whatever is there (``--resume auto``).
    Decided here, once, so that every node of a multi-node job passes the same options."""
    previous = read_json(training.folder.parent / TRAIN_PLAN)
    return isinstance(previous, dict) and previous.get("provenance") != training.provenance


def cell_spec(plan: Plan, cell: Cell) -> dict[str, Any]:
    """What the cell process needs (written to ``<cell>/cell.json``)."""
    protocol = plan.protocol
    training = cell.training
    return {
        "id": cell.id, "model_id": cell.model_id, "set": cell.set_name, "set_path": cell.set_path,
        "folder": str(cell.folder), "imports": cell.entry.imports,
        "sys_path": [str(protocol.source_dir)],
        "metrics": [{"name": m.name, "params": m.params} for m in protocol.metrics],
        "attacks": [_attack_json(a) for a in cell.attacks],
        "augmentation": protocol.augmentation, "threads": protocol.threads,
        "val_split": protocol.val_split, "val": protocol.val, "train_data": protocol.train_data,
        "train": None if training is None else {
            "folder": str(training.folder), "marker": str(training.marker), "config": training.config,
            "provenance": training.provenance, "fresh": _fresh(training)},
        "checkpoint": cell.checkpoint,
        "test_config": cell.test_config, "robust_config": cell.robust_config,
        "provenance": cell.provenance,
        "protocol": {**protocol.summary(), "cell": cell.id, "model_id": cell.model_id, "set": cell.set_name,
                     "provenance": cell.provenance,
                     "train_provenance": training.provenance if training else None},
    }
