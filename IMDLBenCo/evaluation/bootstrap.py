"""Bootstrap confidence intervals over images (docs/results.md "The bootstrap").

A resample draws N images with replacement: ``numpy.random.default_rng(seed).integers(0, N,
size=(R, N))``. Every evaluator recomputes its values from per-image quantities it keeps
(:meth:`IMDLBenCo.evaluation.Evaluator.resample`), given each resample as a row of *weights*
(how many times each image was drawn), which is the same computation as on the resampled
arrays, without copying anything per pixel. The interval is the percentile interval of the R
values (NaN resamples left out).

The functions below are the vectorised pieces the evaluators share: weighted means, confusion
counts, ROC AUC and average precision of weighted (score, label) pairs and of weighted
histograms. Each takes (R, N) weights and returns (R,) float64 values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["index_chunks", "resample_indices", "resample_weights", "weight_chunks", "percentile_interval", "weighted_mean",
           "weighted_sums", "weighted_binary_auc", "weighted_binary_ap", "histogram_auc_rows", "histogram_ap_rows",
           "bootstrap_intervals", "CONFIDENCE"]

CONFIDENCE = 0.95
#: resamples computed at once (memory: CHUNK x N weights)
CHUNK = 100


def index_chunks(n: int, resamples: int, seed: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """The draws, ``chunk`` resamples at a time: ``default_rng(seed).integers(0, n, size=(k, n))``
    called repeatedly on one generator (the definition of the bootstrap's resamples)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(R, n) indices of the images drawn in each resample (all of :func:`index_chunks`)."""
    return np.concatenate(list(index_chunks(n, resamples, seed))) if resamples > 0 else np.zeros((0, n), np.int64)


def resample_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """(R, n) int64 counts: how many times each image appears in each row of ``indices``."""
    r = indices.shape[0]
    flat = (indices + (np.arange(r, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=r * n).reshape(r, n)


def weight_chunks(n: int, resamples: int, seed: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """The (≤chunk, n) weight blocks of :func:`resample_indices`'s rows, in order."""
    for indices in index_chunks(n, resamples, seed, chunk):
        yield resample_weights(indices, n)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The percentile interval of ``values`` (NaN left out); (None, None) when nothing is left."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (N,) over the drawn images, NaN entries left out (as the mean over
    manipulated images leaves authentic ones out); NaN when no defined value was drawn."""
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    w = weights[:, defined].astype(np.float64)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w @ values[defined] / np.where(total > 0, total, 1), np.nan)


def weighted_sums(weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(R, K) sums of the (N, K) per-image ``rows`` over the drawn images (exact for counts)."""
    return weights.astype(np.float64) @ np.asarray(rows, dtype=np.float64)


def _groups_desc(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order of ``scores`` descending and the start of each run of equal scores in it."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.zeros(0, np.int64)
    return order, starts


def _weighted_groups(weights: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, G) drawn positives and negatives per group of equal scores, highest score first."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    order, starts = _groups_desc(scores)
    w = weights[:, order].astype(np.float64)
    y = labels[order]
    if not starts.size:
        empty = np.zeros((w.shape[0], 0))
        return empty, empty
    return np.add.reduceat(w * y, starts, axis=1), np.add.reduceat(w * ~y, starts, axis=1)


def weighted_binary_auc(weights: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC (ties 1/2) of the drawn (score, label) pairs; NaN when a class was not drawn."""
    pos, neg = _weighted_groups(weights, scores, labels)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)
    twice = (pos * (2 * neg_below + neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), twice / (2 * n_pos * n_neg), np.nan)


def weighted_binary_ap(weights: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's) of the drawn pairs; 0 without a drawn positive, NaN
    without any image."""
    pos, neg = _weighted_groups(weights, scores, labels)
    n_pos = pos.sum(axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
        ap = (pos * precision).sum(axis=1) / np.where(n_pos > 0, n_pos, 1)
    total = weights.sum(axis=1)
    return np.where(total > 0, np.where(n_pos > 0, ap, 0.0), np.nan)


def histogram_auc_rows(hist: np.ndarray) -> np.ndarray:
    """Pooled ROC AUC of (R, 2, K) negative/positive counts per ascending score bin (a bin's
    pairs count 1/2, as :func:`IMDLBenCo.evaluation.pixel.histogram_auc`); NaN without a class."""
    neg, pos = hist[:, 0].astype(np.float64), hist[:, 1].astype(np.float64)
    n_neg, n_pos = neg.sum(axis=1), pos.sum(axis=1)
    below = np.cumsum(neg, axis=1) - neg
    twice = (pos * (2 * below + neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), twice / (2 * n_pos * n_neg), np.nan)


def histogram_ap_rows(hist: np.ndarray) -> np.ndarray:
    """Pooled average precision of (R, 2, K) histograms (bins as thresholds, highest first);
    NaN without positives (as :func:`IMDLBenCo.evaluation.pixel.histogram_ap`)."""
    neg, pos = hist[:, 0, ::-1].astype(np.float64), hist[:, 1, ::-1].astype(np.float64)
    n_pos = pos.sum(axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    filled = (pos + neg) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(filled, tp / np.maximum(tp + fp, 1), 0.0)
        return np.where(n_pos > 0, (pos * precision).sum(axis=1) / np.where(n_pos > 0, n_pos, 1), np.nan)


def bootstrap_intervals(evaluated: Sequence[tuple[Any, Mapping[str, Any]]], n_images: int, resamples: int,
                        seed: int, confidence: float = CONFIDENCE) -> dict[str, tuple[float | None, float | None]]:
    """``{result key: (low, high)}`` for every key the evaluators can resample.

    ``evaluated``: ``(evaluator, states)`` pairs from ``compute_with_states``; ``n_images``: the
    number of images tested (N). Every evaluator sees the same resamples (the same draws), so
    intervals of different metrics describe the same bootstrap.
    """
    if resamples <= 0 or n_images <= 0:
        return {}
    collected: dict[str, list] = {}
    for weights in weight_chunks(n_images, resamples, seed):
        for ev, states in evaluated:
            for key, values in ev.resample(states, weights).items():
                collected.setdefault(key, []).append(np.asarray(values, dtype=np.float64))
    return {key: percentile_interval(np.concatenate(parts), confidence) for key, parts in collected.items()}
