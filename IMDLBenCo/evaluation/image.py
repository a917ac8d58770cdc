"""Image-level evaluators (detection): one score per image, metrics over the whole dataset.

Every image-level evaluator keeps all scores ``outputs['pred_label']`` (B,) and labels
``batch['label'] > 0.5`` of the images it saw; ``compute()`` gathers them from every process
(variable lengths, rank order) and computes the metric once over the whole dataset. Authentic
and manipulated images both count. Thresholded metrics predict "manipulated" when
``pred_label > threshold`` (strict; default 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._prepare import get_pred_label
from .base import Evaluator

__all__ = ["ImageF1", "ImageAUC", "ImageAccuracy", "ImageAP", "ImageBalancedAccuracy", "ImageMCC", "ImageTPR",
           "ImageTNR", "binary_auc", "average_precision"]


def _groups(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives and negatives per distinct score, scores descending (int64 each)."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], labels[order].to(torch.int64)
    _, counts = torch.unique_consecutive(s, return_counts=True)
    ends = torch.cumsum(counts, 0)
    cum_pos = torch.cumsum(y, 0)[ends - 1]
    pos = torch.diff(cum_pos, prepend=torch.zeros(1, dtype=torch.int64, device=s.device))
    return pos, counts - pos


def binary_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Exact ROC AUC, ties counted 1/2 (scikit-learn's ``roc_auc_score``); NaN with one class only."""
    if scores.numel() == 0:
        return float("nan")
    pos, neg = _groups(scores.double(), labels.bool())
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Descending order: a positive beats every negative in a later (lower) group; ties count 1/2.
    neg_below = n_neg - torch.cumsum(neg, 0)
    twice = int((pos * (2 * neg_below + neg)).sum())
    return twice / (2 * n_pos * n_neg)


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """scikit-learn's ``average_precision_score``: sum over thresholds of (R_k - R_k-1) P_k; 0 without positives."""
    if scores.numel() == 0:
        return float("nan")
    pos, neg = _groups(scores.double(), labels.bool())
    n_pos = int(pos.sum())
    if n_pos == 0:
        return 0.0
    tp = torch.cumsum(pos, 0).double()
    fp = torch.cumsum(neg, 0).double()
    precision = tp / (tp + fp)
    return float((pos.double() / n_pos * precision).sum())


class _ImageMetric(Evaluator):
    """Stores scores and labels; subclasses turn the gathered arrays into one number."""

    base_name = ""
    description = ""
    uses_threshold = True

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"{type(self).__name__}: threshold must be in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.name = self.base_name
        if self.uses_threshold and self.threshold != 0.5:
            self.name += f"_t{self.threshold:g}"
        self.add_cat_state("scores", torch.float64)
        self.add_cat_state("labels", torch.bool)

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        scores, labels = get_pred_label(outputs, batch, type(self).__name__)
        self.append("scores", scores)
        self.append("labels", labels.to(scores.device))

    def _compute(self, states: dict[str, torch.Tensor]) -> dict[str, float]:
        return {self.name: self._value(states["scores"], states["labels"].bool())}

    def _value(self, scores: torch.Tensor, labels: torch.Tensor) -> float:
        """Thresholded metrics: NaN without images, else ``_from_counts`` of the confusion counts."""
        if labels.numel() == 0:
            return float("nan")
        hit = scores > self.threshold
        tp = int((hit & labels).sum())
        fp = int((hit & ~labels).sum())
        fn = int((~hit & labels).sum())
        return self._from_counts(tp, fp, fn, int(labels.numel()) - tp - fp - fn)

    def _from_counts(self, tp: Any, fp: Any, fn: Any, tn: Any) -> Any:
        """The metric of the confusion counts (ints; floats with integral values when resampled)."""
        raise NotImplementedError

    def resample(self, states: dict[str, torch.Tensor], weights: Any) -> dict[str, Any]:

        scores = states["scores"].cpu().numpy()
        labels = states["labels"].cpu().numpy().astype(bool)
        if scores.shape[0] != weights.shape[1]:
            return {}
        return {self.name: self._resampled(weights, scores, labels)}

    def _resampled(self, weights: Any, scores: Any, labels: Any) -> Any:
        import numpy as np

        hit = scores > self.threshold
        cols = np.stack([hit & labels, hit & ~labels, ~hit & labels, ~hit & ~labels], axis=1)
        c = weights.astype(np.float64) @ cols.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.array([self._from_counts(*row) for row in c.tolist()], dtype=np.float64)
        return np.where(c.sum(axis=1) > 0, values, np.nan)

    def definitions(self) -> dict[str, str]:
        thr = f"pred_label > {self.threshold:g}; " if self.uses_threshold else "no threshold; "
        return {self.name: f"image-level {self.description}; {thr}all images of the dataset (authentic and "
                           f"manipulated), computed once over the dataset"}


class ImageF1(_ImageMetric):
    """Image-level F1: ``2TP / (2TP + FP + FN)`` over all images with ``pred_label > threshold``;
    0 when TP + FP + FN = 0 (scikit-learn's zero_division=0); NaN without images."""

    base_name = "image_f1"
    description = "F1 = 2TP/(2TP+FP+FN) (0 if no positive label or prediction)"

    def _from_counts(self, tp: int, fp: int, fn: int, tn: int) -> float:
        den = 2 * tp + fp + fn
        return 2 * tp / den if den else 0.0


class ImageAccuracy(_ImageMetric):
    """Image-level accuracy: fraction of images with ``(pred_label > threshold) == label``; NaN without images."""

    base_name = "image_accuracy"
    description = "accuracy = (TP+TN)/N"

    def _from_counts(self, tp: int, fp: int, fn: int, tn: int) -> float:
        return (tp + tn) / (tp + fp + fn + tn)


class ImageBalancedAccuracy(_ImageMetric):
    """Image-level balanced accuracy: mean of the recalls (TPR, TNR) of the classes present in the
    labels (scikit-learn's ``balanced_accuracy_score``; with one class only, that class's recall);
    NaN without images."""

    base_name = "image_balanced_accuracy"
    description = "balanced accuracy = mean(TP/(TP+FN), TN/(TN+FP)) over classes present"

    def _from_counts(self, tp: int, fp: int, fn: int, tn: int) -> float:
        recalls = [a / (a + b) for a, b in ((tp, fn), (tn, fp)) if a + b > 0]
        return sum(recalls) / len(recalls)


class ImageMCC(_ImageMetric):
    """Image-level Matthews correlation coefficient
    ``(TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))`` with ``pred_label > threshold``;
    0 when a factor of the denominator is 0 (scikit-learn's ``matthews_corrcoef``); NaN without images."""

    base_name = "image_mcc"
    description = "Matthews correlation (TP*TN-FP*FN)/sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) (0 if undefined)"

    def _from_counts(self, tp: int, fp: int, fn: int, tn: int) -> float:
        den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        return (tp * tn - fp * fn) / den ** 0.5 if den else 0.0


class ImageTPR(_ImageMetric):
    """Image-level true-positive rate (recall, sensitivity) ``TP / (TP + FN)``: the share of
    manipulated images detected, ``pred_label > threshold``; NaN without manipulated images."""

    base_name = "image_tpr"
    description = "true-positive rate TP/(TP+FN), manipulated images detected (NaN if none)"

    def _from_counts(self, tp: int, fp: int, fn: int, tn: int) -> float:
        return tp / (tp + fn) if tp + fn else float("nan")


class ImageTNR(_ImageMetric):
    """Image-level true-negative rate (specificity) ``TN / (TN + FP)``: the share of authentic
    images passed as authentic, ``pred_label > threshold`` meaning manipulated; NaN without
    authentic images."""

    base_name = "image_tnr"
    description = "true-negative rate TN/(TN+FP), authentic images passed (NaN if none)"

    def _from_counts(self, tp: int, fp: int, fn: int, tn: int) -> float:
        return tn / (tn + fp) if tn + fp else float("nan")


class ImageAUC(_ImageMetric):
    """Image-level ROC AUC of ``pred_label``, exact, tied scores count 1/2 (scikit-learn's
    ``roc_auc_score``). The threshold is not used. NaN when only one class is present."""

    base_name = "image_auc"
    description = "ROC AUC, exact, ties count 1/2 (NaN if one class only)"
    uses_threshold = False

    def _value(self, scores: torch.Tensor, labels: torch.Tensor) -> float:
        return binary_auc(scores, labels)

    def _resampled(self, weights: Any, scores: Any, labels: Any) -> Any:
        from .bootstrap import weighted_binary_auc

        return weighted_binary_auc(weights, scores, labels)


class ImageAP(_ImageMetric):
    """Image-level average precision ``sum_k (R_k - R_{k-1}) P_k`` over the distinct scores taken
    as thresholds, highest first (scikit-learn's ``average_precision_score``); 0 without manipulated
    images, NaN without images. No threshold."""

    base_name = "image_ap"
    description = "average precision sum_k (R_k - R_k-1) P_k (0 if no manipulated image)"
    uses_threshold = False

    def _value(self, scores: torch.Tensor, labels: torch.Tensor) -> float:
        return average_precision(scores, labels)

    def _resampled(self, weights: Any, scores: Any, labels: Any) -> Any:
        from .bootstrap import weighted_binary_ap

        return weighted_binary_ap(weights, scores, labels)
