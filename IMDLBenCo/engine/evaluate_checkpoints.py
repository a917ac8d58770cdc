"""``test.py``: every ``checkpoint-<epoch>.pth`` of a folder × every set of a test_datasets.json."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import runfolder
from .builders import build_dataset, eval_loader, test_set_paths
from .checkpoint import checkpoint_epoch, find_checkpoints, load_checkpoint
from .evaluate import default_evaluators, evaluate, flat_test_record, format_table, metric_definitions
from .session import eval_session
from .writers import write_text

logger = logging.getLogger("IMDLBenCo.engine")


def checkpoints_to_test(path: str) -> List[Tuple[int, Path]]:
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


def test_main(argv: Optional[Sequence[str]] = None, *, evaluators: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
    """Run ``test.py``; returns ``{"rows": [{"epoch", "set", metric: value}]}`` (also summary.json)."""
    with eval_session("test", argv) as s:
        args, runtime, writer = s.args, s.runtime, s.writer
        evaluators = list(evaluators) if evaluators is not None else default_evaluators()
        writer.write_json(runfolder.METRIC_DEFINITIONS, metric_definitions(evaluators))
        loaders = {name: eval_loader(build_dataset(path, s.data, None, s.post_func), args.test_batch_size, s.data, runtime)
                   for name, path in test_set_paths(args.test_data_json).items()}
        checkpoints = checkpoints_to_test(args.checkpoint_path)
        logger.info("testing %d checkpoint(s) on %d set(s): %s", len(checkpoints), len(loaders), ", ".join(loaders))
        rows: List[Dict[str, Any]] = []
        for epoch, path in checkpoints:
            load_checkpoint(path, s.model, map_location=runtime.device)
            per_set = {}
            for name, loader in loaders.items():
                metrics = evaluate(s.model, loader, evaluators, runtime, s.call, desc=f"{path.name} {name}",
                                   writer=writer, image_tag=f"test_{name}", step=epoch)
                per_set[name] = metrics
                writer.scalars(f"test_{name}/", metrics, epoch)
                rows.append({"epoch": epoch, "set": name, "checkpoint": path.name, **metrics})
            writer.append_jsonl(runfolder.LOG, {"epoch": epoch, "checkpoint": path.name, **flat_test_record(per_set)})
        summary = {"rows": rows}
        writer.write_json(runfolder.SUMMARY_JSON, summary)
        if runtime.is_main:
            write_text(Path(args.output_dir) / runfolder.SUMMARY_CSV, _csv(rows))
            columns = ["epoch", "set"] + [k for k in rows[0] if k not in ("epoch", "set", "checkpoint")] if rows else []
            logger.info("summary (%s):\n%s", Path(args.output_dir) / runfolder.SUMMARY_JSON, format_table(rows, columns))
        return summary


def _csv(rows: List[Dict[str, Any]]) -> str:
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    out = csv.DictWriter(buffer, fieldnames=columns)
    out.writeheader()
    out.writerows(rows)
    return buffer.getvalue()
