"""The process of one cell: ``python -m IMDLBenCo.bench.cell CELL.json --stage train|test``.

Started by the executors (:mod:`IMDLBenCo.bench.executors`), as plain ``python`` for one process
or under ``torchrun --nproc_per_node N`` (every rank runs this module), so a failure stays in its
own process. It builds the evaluators and attacks the protocol names (``IMDLBenCo.evaluation``
classes with their parameters, ``IMDLBenCo.transforms`` robustness wrappers) and calls the engine
in-process:

- ``--stage train``: ``train_main`` (checkpoint chosen on validation: ``--val_split`` or
  ``--val_data_path``), then rank 0 writes the training's marker (``<model>/train.json``);
- ``--stage test``: ``test_main`` on the chosen (or given) checkpoint and the cell's test set,
  ``test_robust_main`` over the attack grid when the protocol attacks that set, then rank 0
  merges their ``results.json`` / ``per_image.csv`` into the cell folder with the ``protocol`` key.

The option files (``--config``) are written by the executor before the launch (``config_paths``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["config_paths", "write_configs", "build_evaluators", "build_attacks", "merge_results", "main"]


def config_paths(spec: dict[str, Any]) -> dict[str, Path]:
    """Where the ``--config`` files of a cell's stages lie."""
    folder = Path(spec["folder"])
    paths = {"test": folder / "test_config.json", "robust": folder / "robust_config.json",
             "sets": folder / "test_set.json"}
    if spec.get("train"):
        paths["train"] = Path(spec["train"]["folder"]).parent / "train_config.json"
    return paths


def write_configs(spec: dict[str, Any]) -> None:
    """Write the stages' option files (one process, before the launch)."""
    paths = config_paths(spec)
    # the set as a one-entry test_datasets.json: results.json then names it as the protocol does
    values = {"test": spec["test_config"], "robust": spec.get("robust_config"),
              "train": (spec.get("train") or {}).get("config"), "sets": {spec["set"]: spec["set_path"]}}
    for stage, path in paths.items():
        if values.get(stage) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_text(path, json.dumps(values[stage], indent=1) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_evaluators(metrics: Sequence[dict[str, Any]]) -> list[Any]:
    """Evaluator objects from ``[{"name", "params"}]`` (one message naming a bad parameter)."""
    from .. import evaluation
    from ..errors import UsageError

    out = []
    for metric in metrics:
        cls = getattr(evaluation, metric["name"])
        try:
            out.append(cls(**dict(metric.get("params") or {})))
        except (TypeError, ValueError) as err:
            raise UsageError(f"metrics: {metric['name']}({', '.join(f'{k}={v!r}' for k, v in (metric.get('params') or {}).items())}): "
                             f"{err}") from None
    return out


def build_attacks(attacks: Sequence[dict[str, Any]]) -> list[Any]:
    """Robustness wrappers from ``[{"name", "levels", "params"}]``."""
    from .. import transforms
    from ..errors import UsageError
    from .protocol import ATTACKS

    out = []
    for attack in attacks:
        cls = getattr(transforms, ATTACKS[attack["name"]])
        try:
            out.append(cls(list(attack["levels"]), **dict(attack.get("params") or {})))
        except (TypeError, ValueError) as err:
            raise UsageError(f"robustness.attacks.{attack['name']}: {err}") from None
    return out


def _prepare_imports(spec: dict[str, Any]) -> None:
    from ..engine.builders import import_modules

    for folder in reversed(spec.get("sys_path") or []):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    import_modules(spec.get("imports") or [])


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def run_train(spec: dict[str, Any], fresh: bool) -> None:
    from ..datasets.identity import file_sha256
    from ..engine import train_main

    train = spec["train"]
    folder = Path(train["folder"])
    argv = ["--config", str(config_paths(spec)["train"]), "--data_path", spec["train_data"],
            "--output_dir", str(folder)]
    argv += ["--overwrite"] if fresh else ["--resume", "auto"]
    if spec.get("val_split") is not None:
        argv += ["--val_split", str(spec["val_split"])]
    else:
        argv += ["--val_data_path", spec["val"]]
    transform = None if spec.get("augmentation", "default") == "default" else False
    started = time.time()
    result = train_main(argv, evaluators=build_evaluators(spec["metrics"]), train_transform=transform)
    if _is_main():
        best = folder / "checkpoint-best.pth"
        if not best.is_file():
            raise RuntimeError(f"{folder}: training finished without {best.name}; see {folder / 'log.txt'}")
        marker = {"provenance": train["provenance"], "checkpoint": str(best), "checkpoint_sha256": file_sha256(str(best)),
                  "best": (result or {}).get("best"), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "wall_time_s": round(time.time() - started, 3)}
        _write_text(Path(train["marker"]), json.dumps(marker, indent=1, default=str) + "\n")


def run_test(spec: dict[str, Any]) -> None:
    from ..engine import test_main, test_robust_main

    folder = Path(spec["folder"])
    paths = config_paths(spec)
    common = ["--checkpoint_path", spec["checkpoint"], "--test_data_path", str(paths["sets"]), "--overwrite"]
    test_main(["--config", str(paths["test"]), *common, "--output_dir", str(folder / "test")],
              evaluators=build_evaluators(spec["metrics"]))
    if spec.get("robust_config") is not None and spec.get("attacks"):
        test_robust_main(["--config", str(paths["robust"]), *common, "--output_dir", str(folder / "robust")],
                         evaluators=build_evaluators(spec["metrics"]), attacks=build_attacks(spec["attacks"]))
    if _is_main():
        merge_results(spec)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def merge_results(spec: dict[str, Any]) -> dict[str, Any]:
    """The cell's ``results.json`` and ``per_image.csv``: the test stage's and the robustness
    stage's records together, with the ``protocol`` key (written last: it marks the cell done)."""
    folder = Path(spec["folder"])
    stages = [s for s in ("test", "robust") if (folder / s / "results.json").is_file()]
    if "test" not in stages:
        raise RuntimeError(f"{folder / 'test'}: test.py wrote no results.json")
    parts = {s: json.loads((folder / s / "results.json").read_text(encoding="utf-8")) for s in stages}
    merged = dict(parts["test"])
    merged["script"] = "bench"
    merged["wall_time_s"] = round(sum(float(p.get("wall_time_s") or 0) for p in parts.values()), 3)
    merged["stages"] = {s: {"script": p.get("script"), "file": f"{s}/results.json", "args": p.get("args")}
                        for s, p in parts.items()}
    definitions: dict[str, Any] = {}
    records: list[Any] = []
    for part in parts.values():
        definitions.update(part.get("metric_definitions") or {})
        records += list(part.get("records") or [])
    merged["metric_definitions"] = definitions
    merged["records"] = records
    merged["protocol"] = spec["protocol"]
    rows: list[dict[str, str]] = []
    columns: list[str] = []
    for s in stages:
        for row in _read_csv(folder / s / "per_image.csv"):
            columns += [c for c in row if c not in columns]
            rows.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(folder / "per_image.csv", buffer.getvalue())
    _write_text(folder / "results.json", json.dumps(merged, indent=2, ensure_ascii=False, default=str) + "\n")
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m IMDLBenCo.bench.cell",
                                     description="Run one stage of a benco bench cell (started by benco bench).")
    parser.add_argument("spec", help="the cell's cell.json")
    parser.add_argument("--stage", choices=("train", "test"), required=True)
    parser.add_argument("--fresh", action="store_true", help="train from scratch (--overwrite), not --resume auto")
    args = parser.parse_args(argv)
    from ..engine.errors import peer_failed, user_error_types

    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    rank = os.environ.get("RANK")
    where = f" (rank {rank})" if rank not in (None, "0") else ""
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    try:
        _prepare_imports(spec)
        if args.stage == "train":
            run_train(spec, args.fresh)
        else:
            run_test(spec)
    except user_error_types() as err:
        if os.environ.get("IMDLBENCO_DEBUG"):
            raise
        print(f"\nerror{where}: {' '.join(str(err).split()) if len(str(err)) < 400 else err}", file=sys.stderr,
              flush=True)
        return 1
    except Exception as err:
        if peer_failed(err):
            print(f"[rank {rank}] stopped: another process of this cell failed", file=sys.stderr, flush=True)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
