"""The evaluation loop shared by training, test, robustness and save-images."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..runfolder import test_key
from .config import CallConfig
from .inference import run_inference
from .runtime import Runtime
from .writers import RunWriter

logger = logging.getLogger("IMDLBenCo.engine")


def default_evaluators() -> list[Any]:
    """IMDL-BenCo's default metric list: pixel-level F1 at threshold 0.5."""
    from ..evaluation import PixelF1

    return [PixelF1(threshold=0.5, mode="origin")]


def metric_definitions(evaluators: Sequence[Any]) -> dict[str, str]:
    """``{result key: definition}`` of the evaluators (an object without ``definitions()`` is
    described by its name and docstring)."""
    definitions: dict[str, str] = {}
    for ev in evaluators:
        if callable(getattr(ev, "definitions", None)):
            definitions.update(ev.definitions())
        else:
            definitions[getattr(ev, "name", type(ev).__name__)] = (type(ev).__doc__ or "").strip()
    return definitions


def progress(iterable, runtime: Runtime, desc: str, total: int | None = None, every: int | None = None):
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

    def __init__(self, iterable, desc: str, total: int | None = None, every: int | None = None) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.every = every or max((self.total or 50) // 5, 1)
        self.postfix: dict[str, Any] = {}

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


def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    evaluators: Sequence[Any],
    runtime: Runtime,
    call: CallConfig | None = None,
    desc: str = "test",
    writer: RunWriter | None = None,
    image_tag: str | None = None,
    step: int = 0,
) -> dict[str, float]:
    """Run ``model`` over this rank's shard of ``loader`` and return the reduced metrics.

    Every rank must call this (the evaluators reduce across processes in ``compute()``).
    The first batch of rank 0 goes to TensorBoard under ``image_tag`` when a writer is given.
    """
    return measure(model, loader, evaluators, runtime, call, desc=desc, writer=writer, image_tag=image_tag,
                   step=step, bootstrap=0, per_image=False).metrics


@dataclass
class Measurement:
    """The metrics of one test pass and their evidence (docs/results.md)."""

    metrics: dict[str, float]
    intervals: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    images: int = 0
    manipulated: int = 0
    authentic: int = 0
    warning: str | None = None


def measure(model: torch.nn.Module, loader: DataLoader, evaluators: Sequence[Any], runtime: Runtime,
            call: CallConfig | None = None, *, desc: str = "test", writer: RunWriter | None = None,
            image_tag: str | None = None, step: int = 0, bootstrap: int = 0, seed: int = 0,
            per_image: bool = True) -> Measurement:
    """One test pass: the evaluators' values and, with ``per_image``, the per-image rows, the
    calibration and ``bootstrap`` resamples' 95 % intervals (seeded by ``seed``; computed on rank
    0, the rank that writes them). A model that predicts one value everywhere is warned about."""
    from ..evaluation import share_batch_cache
    from ..evaluation.bootstrap import bootstrap_intervals
    from ..evaluation.per_image import PerImageRecorder, calibration

    recorder = PerImageRecorder(full=per_image)
    for ev in evaluators:
        ev.reset()
    share_batch_cache([*evaluators, recorder])  # one validation and preparation of each batch for all of them

    def pictures(out: dict[str, Any], batch: dict[str, Any]) -> None:
        if writer is not None and image_tag:
            writer.images(image_tag, batch, out, step)

    run_inference(model, loader, runtime, call, [*evaluators, recorder], desc=desc, on_first_batch=pictures)
    results: dict[str, float] = {}
    evaluated = []
    for ev in evaluators:
        if hasattr(ev, "compute_with_states"):
            values, states = ev.compute_with_states()
            evaluated.append((ev, states))
        else:  # a user's evaluator with compute() only: no interval
            values = ev.compute()
        for key, value in values.items():
            results[key] = float(value)
    gathered = recorder.gather(runtime)
    labels = gathered["label"]
    m = Measurement(results, images=int(labels.numel()), manipulated=int((labels > 0).sum()),
                    authentic=int((labels <= 0).sum()))
    m.warning = PerImageRecorder.constant_prediction(gathered)
    if m.warning and runtime.is_main:
        logger.warning("%s: %s", desc, m.warning)
    if per_image and runtime.is_main:
        m.rows = PerImageRecorder.table(gathered)
        m.calibration = calibration(gathered)
        if bootstrap > 0:
            m.intervals = bootstrap_intervals(evaluated, m.images, bootstrap, seed)
    return m


def mean_over_sets(per_set: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each metric averaged over the test sets that report it."""
    sums: dict[str, list[float]] = {}
    for metrics in per_set.values():
        for key, value in metrics.items():
            sums.setdefault(key, []).append(float(value))
    return {key: sum(values) / len(values) for key, values in sums.items()}


def flat_test_record(per_set: Mapping[str, Mapping[str, float]], prefix: str = "test") -> dict[str, float]:
    """``test_<metric>`` (mean over sets, IMDL-BenCo's key, also under IMDL-BenCo's metric names
    such as ``test_pixel-level F1``) and ``test_<set>/<metric>`` entries; ``prefix`` ``val``
    for the validation set."""
    from ..evaluation.reference_names import with_reference_names

    means = mean_over_sets(per_set)
    record = {test_key(k, prefix=prefix): v for k, v in with_reference_names(means).items()}
    for name, metrics in per_set.items():
        for key, value in metrics.items():
            record[test_key(key, name, prefix=prefix)] = value
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
