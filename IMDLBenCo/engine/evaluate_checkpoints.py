"""``test.py``: every ``checkpoint-<epoch>.pth`` of a folder × every set of a test_datasets.json."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import runfolder
from .builders import build_dataset, eval_loader, test_set_paths
from .checkpoint import checkpoint_epoch, find_checkpoints, load_checkpoint
from .evaluate import default_evaluators, flat_test_record, format_table, measure, metric_definitions
from .session import eval_session
from .writers import write_text

logger = logging.getLogger("IMDLBenCo.engine")


def checkpoints_to_test(path: str) -> list[tuple[int, Path]]:
    """``[(epoch, file)]`` sorted by epoch for a folder; a single file is used as it is."""
    p = Path(path)
    if p.is_file():
        epoch = checkpoint_epoch(p)
        return [(epoch if epoch is not None else 0, p)]
    if not p.is_dir():
        raise FileNotFoundError(f"--checkpoint_path {path}: no such folder or file")
    numbered, others = find_checkpoints(p)
    for other in others:
        logger.info("ignoring %s: test.py reads checkpoint-<epoch>.pth files (rename it to test it)", other.name)
    if not numbered:
        raise FileNotFoundError(
            f"--checkpoint_path {path}: no checkpoint-<epoch>.pth file in this folder"
            + (f" (found {[o.name for o in others]}; rename one to checkpoint-<n>.pth)" if others else "")
        )
    return numbered


def test_main(argv: Sequence[str] | None = None, *, evaluators: Sequence[Any] | None = None) -> dict[str, Any]:
    """Run ``test.py``; returns ``{"rows": [{"epoch", "set", metric: value}]}`` (also summary.json),
    and writes ``results.json`` + ``per_image.csv`` (docs/results.md)."""
    import time

    from .results import ResultsWriter, checkpoint_provenance, dataset_provenance

    started = time.time()
    with eval_session("test", argv) as s:
        args, runtime, writer = s.args, s.runtime, s.writer
        evaluators = list(evaluators) if evaluators is not None else default_evaluators()
        definitions = metric_definitions(evaluators)
        writer.write_json(runfolder.METRIC_DEFINITIONS, definitions)
        writer.truncate(runfolder.LOG)  # the same command again replaces its records
        paths = test_set_paths(args.test_data_json)
        loaders = {name: eval_loader(build_dataset(path, s.data, None, s.post_func), args.test_batch_size, s.data,
                                     runtime) for name, path in paths.items()}
        checkpoints = checkpoints_to_test(args.checkpoint_path)
        logger.info("testing %d checkpoint(s) on %d set(s): %s", len(checkpoints), len(loaders), ", ".join(loaders))
        results = ResultsWriter(runtime, args.output_dir, "test", args, s.model_kwargs, definitions, s.call,
                                started=started)
        rows: list[dict[str, Any]] = []
        identities: dict[str, dict[str, Any]] = {}
        for epoch, path in checkpoints:
            meta = load_checkpoint(path, s.model, map_location=runtime.device)
            checkpoint = checkpoint_provenance(str(path), meta) if runtime.is_main else {}
            per_set = {}
            for name, loader in loaders.items():
                m = measure(s.model, loader, evaluators, runtime, s.call, desc=f"{path.name} {name}", writer=writer,
                            image_tag=f"test_{name}", step=epoch, bootstrap=args.bootstrap, seed=args.seed)
                per_set[name] = m.metrics
                writer.scalars(f"test_{name}/", m.metrics, epoch)
                rows.append({"epoch": epoch, "set": name, "checkpoint": path.name, **m.metrics})
                if runtime.is_main:
                    counts = {"images": m.images, "manipulated": m.manipulated, "authentic": m.authentic}
                    if name not in identities:  # the same files for every checkpoint: hashed once
                        identities[name] = dataset_provenance(name, paths[name], loader.dataset, counts)
                    record = results.add(m, checkpoint=checkpoint, epoch=epoch, dataset={**identities[name], **counts})
                    for key in m.metrics:
                        lo, hi = record["metrics"][key]["ci_low"], record["metrics"][key]["ci_high"]
                        rows[-1][f"{key}_ci_low"], rows[-1][f"{key}_ci_high"] = lo, hi
                    rows[-1]["selection"] = record["selection"]
            writer.append_jsonl(runfolder.LOG, {"epoch": epoch, "checkpoint": path.name, **flat_test_record(per_set)})
        summary = {"rows": rows}
        writer.write_json(runfolder.SUMMARY_JSON, summary)
        if runtime.is_main:
            write_text(Path(args.output_dir) / runfolder.SUMMARY_CSV, _csv(rows))
            shown = [{k: v for k, v in r.items() if not k.endswith(("_ci_low", "_ci_high"))} for r in rows]
            columns = ["epoch", "set"] + [k for k in shown[0] if k not in ("epoch", "set", "checkpoint")] if shown else []
            logger.info("summary (%s; intervals and evidence in %s):\n%s", Path(args.output_dir) / runfolder.SUMMARY_JSON,
                        runfolder.RESULTS, format_table(shown, columns))
        return summary


def _csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    out = csv.DictWriter(buffer, fieldnames=columns)
    out.writeheader()
    out.writerows(rows)
    return buffer.getvalue()
