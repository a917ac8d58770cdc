"""The interval of a row's average over test sets, from the rows of ``per_image.csv``.

Each set's images are resampled independently (a stratified percentile bootstrap: the sets are
separate samples), the metric is recomputed per set on each resample as docs/results.md defines
it, and the average over sets is taken per resample. One generator,
``numpy.random.default_rng(seed)``, draws the sets in column order, 100 resamples at a time.
Only metrics that per_image.csv determines are resampled; for the others no interval is given.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from .results import Record

#: per-image metrics: the mean over manipulated images of the column of the same name
PER_IMAGE_METRICS = ("pixel_f1", "pixel_iou", "pixel_auc", "pixel_ap")
#: pooled metrics: from the summed confusion counts
POOLED_METRICS = ("pixel_f1_pooled", "pixel_iou_pooled")
CHUNK = 100
TOLERANCE = 1e-5


def supported(metric: str) -> bool:
    return metric in PER_IMAGE_METRICS or metric in POOLED_METRICS


class _CsvCache:
    def __init__(self) -> None:
        self._rows: dict[Path, list[dict[str, str]]] = {}

    def rows(self, path: Path) -> list[dict[str, str]]:
        key = path.resolve()
        if key not in self._rows:
            with open(path, newline="", encoding="utf-8") as f:
                self._rows[key] = list(csv.DictReader(f))
        return self._rows[key]


CACHE = _CsvCache()


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def record_rows(record: Record) -> list[dict[str, str]] | None:
    """The rows of per_image.csv that belong to ``record`` (None when the file is absent or unreadable)."""
    path = record.per_image_path()
    selector = record.per_image_selector()
    if path is None or not selector:
        return None
    try:
        rows = CACHE.rows(path)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    return [r for r in rows if all((r.get(k) or "") == v for k, v in selector.items())]


def _columns(rows: list[dict[str, str]], metric: str):
    import numpy as np

    if metric in PER_IMAGE_METRICS:
        labels = np.array([_float(r.get("label")) for r in rows])
        values = np.array([_float(r.get(metric)) for r in rows])
        values[labels != 1] = np.nan
        return values
    counts = np.array([[_float(r.get(k)) for k in ("tp", "fp", "fn")] for r in rows], dtype=np.float64)
    return counts


def _stat(data, idx, metric: str):
    """The metric on each resample: ``idx`` is (r, n) indices into the set's rows."""
    import numpy as np

    if metric in PER_IMAGE_METRICS:
        drawn = data[idx]
        n = np.sum(~np.isnan(drawn), axis=1)
        total = np.nansum(drawn, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, total / np.maximum(n, 1), np.nan)
    sums = data[idx].sum(axis=1)  # (r, 3): tp, fp, fn
    tp, fp, fn = sums[:, 0], sums[:, 1], sums[:, 2]
    num, den = (2 * tp, 2 * tp + fp + fn) if metric == "pixel_f1_pooled" else (tp, tp + fp + fn)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def average_interval(records: Sequence[Record], metric: str, resamples: int, seed: int,
                     confidence: float = 0.95) -> tuple[tuple[float, float] | None, str]:
    """((low, high), "") for the average of ``metric`` over ``records`` (one per set), or (None, why)."""
    if not supported(metric):
        return None, f"{metric} is not recomputable from per_image.csv"
    if resamples <= 0:
        return None, "bootstrap was off"
    import numpy as np

    datasets = []
    for record in records:
        rows = record_rows(record)
        if not rows:
            return None, f"no per_image.csv rows for {record.dataset_name} ({record.file.path.parent})"
        data = _columns(rows, metric)
        point = float(_stat(data, np.arange(len(rows))[None, :], metric)[0])
        value = record.value(metric)[0]
        if value is None or not math.isfinite(point) or abs(point - value) > TOLERANCE + 1e-4 * abs(value):
            return None, (f"per_image.csv of {record.dataset_name} gives {point:.6f}, the record {value}: "
                          "the file does not match its record")
        datasets.append(data)
    rng = np.random.default_rng(seed)
    averages = np.zeros(resamples)
    for data in datasets:
        n = len(data)
        per_set = []
        for start in range(0, resamples, CHUNK):
            r = min(CHUNK, resamples - start)
            per_set.append(_stat(data, rng.integers(0, n, size=(r, n)), metric))
        averages += np.concatenate(per_set)
    averages /= len(datasets)
    averages = averages[~np.isnan(averages)]
    if not len(averages):
        return None, "every resample was undefined"
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(averages, [tail, 100 - tail])
    return (float(low), float(high)), ""
