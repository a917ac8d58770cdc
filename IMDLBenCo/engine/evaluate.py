"""The evaluation loop shared by training, test, robustness and save-images."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from ..runfolder import test_key
from .builders import autocast, batch_to_device, batch_where, evaluation_mode, run_model
from .config import CallConfig
from .outputs import check_model_output
from .runtime import Runtime
from .writers import RunWriter

logger = logging.getLogger("IMDLBenCo.engine")


def default_evaluators() -> List[Any]:
    """IMDL-BenCo's default metric list: pixel-level F1 at threshold 0.5."""
    from ..evaluation import PixelF1

    return [PixelF1(threshold=0.5, mode="origin")]


def metric_definitions(evaluators: Sequence[Any]) -> Dict[str, str]:
    definitions: Dict[str, str] = {}
    for ev in evaluators:
        try:
            definitions.update(ev.definitions())
        except AttributeError:
            definitions[getattr(ev, "name", type(ev).__name__)] = type(ev).__doc__ or ""
    return definitions


def progress(iterable, runtime: Runtime, desc: str, total: Optional[int] = None, every: Optional[int] = None):
    """Progress on rank 0: a tqdm bar with ETA on a terminal; log lines with ETA otherwise
    (a launcher that sends output to logs.log / error.log gets readable lines, not bar redraws)."""
    if not runtime.is_main:
        return iterable
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True, leave=False, mininterval=1.0)
    return LoggedProgress(iterable, desc, total, every)


class LoggedProgress:
    """Iterates ``iterable`` and logs ``desc [i/total] eta ... s/it`` every ``every`` items."""

    def __init__(self, iterable, desc: str, total: Optional[int] = None, every: Optional[int] = None) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.every = every or max((self.total or 50) // 5, 1)
        self.postfix: Dict[str, Any] = {}

    def set_postfix(self, values: Mapping[str, Any]) -> None:
        self.postfix = dict(values)

    def __iter__(self):
        start = time.perf_counter()
        i = -1
        for i, item in enumerate(self.iterable):
            yield item
            done = i + 1
            if done % self.every == 0 or done == self.total:
                per_item = (time.perf_counter() - start) / done
                eta = per_item * (self.total - done) if self.total else 0.0
                extra = "  ".join(f"{k} {v}" for k, v in self.postfix.items())
                logger.info("%s [%d/%s] eta %s (%.3f s/it)%s", self.desc, done, self.total or "?",
                            time.strftime("%H:%M:%S", time.gmtime(eta)), per_item, f"  {extra}" if extra else "")


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    evaluators: Sequence[Any],
    runtime: Runtime,
    call: Optional[CallConfig] = None,
    desc: str = "test",
    writer: Optional[RunWriter] = None,
    image_tag: Optional[str] = None,
    step: int = 0,
) -> Dict[str, float]:
    """Run ``model`` over this rank's shard of ``loader`` and return the reduced metrics.

    Every rank must call this (the evaluators reduce across processes in ``compute()``).
    The first batch of rank 0 goes to TensorBoard under ``image_tag`` when a writer is given.
    """
    from ..evaluation import share_batch_cache

    call = call or CallConfig()
    for ev in evaluators:
        ev.reset()
    share_batch_cache(evaluators)  # one validation and preparation of each batch for all of them
    with evaluation_mode(model, keep_train_mode=call.keep_train_mode) as net:
        for i, batch in enumerate(progress(loader, runtime, desc)):
            batch = batch_to_device(batch, runtime.device)
            with autocast(runtime, call.use_amp, call.amp_dtype):
                out = run_model(net, batch, call)
            out = _float_outputs(out)
            # every batch: a model may give logits or NaN only on some images
            check_model_output(out, batch, training=False, where=batch_where(i, batch))
            for ev in evaluators:
                ev.update(out, batch)
            if i == 0 and writer is not None and image_tag:
                writer.images(image_tag, batch, out, step)
    results: Dict[str, float] = {}
    for ev in evaluators:
        for key, value in ev.compute().items():
            results[key] = float(value)
    return results


def _float_outputs(out: Mapping[str, Any]) -> Dict[str, Any]:
    """Predictions made under autocast (float16) as float32, so metrics see full precision."""
    out = dict(out)
    for key in ("pred_mask", "pred_label"):
        value = out.get(key)
        if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
            out[key] = value.float()
    return out


def mean_over_sets(per_set: Mapping[str, Mapping[str, float]]) -> Dict[str, float]:
    """Each metric averaged over the test sets that report it."""
    sums: Dict[str, List[float]] = {}
    for metrics in per_set.values():
        for key, value in metrics.items():
            sums.setdefault(key, []).append(float(value))
    return {key: sum(values) / len(values) for key, values in sums.items()}


def flat_test_record(per_set: Mapping[str, Mapping[str, float]]) -> Dict[str, float]:
    """``test_<metric>`` (mean over sets, IMDL-BenCo's key) and ``test_<set>/<metric>`` entries."""
    record = {test_key(k): v for k, v in mean_over_sets(per_set).items()}
    for name, metrics in per_set.items():
        for key, value in metrics.items():
            record[test_key(key, name)] = value
    return record


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain text table (for the console summaries)."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)
