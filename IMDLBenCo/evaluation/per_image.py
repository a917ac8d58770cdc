"""What each image scored, and calibration: the evidence behind a test's aggregates.

:class:`PerImageRecorder` is an evaluator that keeps one row per image (in dataset order, over
every process): the label, the image-level score, pixel F1/IoU and confusion counts at 0.5, the
exact pixel AUC and average precision, the mask and predicted areas; and the counts the
calibration needs (image scores; per-bin pixel counts, positives and summed probabilities). It
returns no metric of its own: :meth:`PerImageRecorder.table` gives the rows of
``per_image.csv`` and :func:`calibration` the expected calibration error and Brier score
(docs/results.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ._prepare import prepare_pixels
from .base import Evaluator

__all__ = ["PerImageRecorder", "calibration", "reliability_bins", "CALIBRATION_BINS", "PER_IMAGE_COLUMNS"]

#: equal-width probability bins of the expected calibration error
CALIBRATION_BINS = 15
#: the columns of ``per_image.csv`` after the record columns (set, epoch, attack, param)
PER_IMAGE_COLUMNS = ("name", "label", "pred_label", "pixel_f1", "pixel_iou", "pixel_auc", "pixel_ap", "mask_area",
                     "pred_area", "tp", "fp", "fn", "tn")


class PerImageRecorder(Evaluator):
    """One row per image (see the module docstring). ``full=False`` leaves out the per-image AUC
    and AP (a sort of every image's pixels) and the pixel calibration counts, for the quick tests
    during training."""

    name = "per_image"

    def __init__(self, full: bool = True, threshold: float = 0.5) -> None:
        super().__init__()
        self.full = full
        self.threshold = float(threshold)
        self.add_cat_state("label", torch.int64)
        self.add_cat_state("pred_label", torch.float64)
        self.add_cat_state("counts", torch.int64, width=4)  # TP, FP, FN, TN at the threshold; -1: no pred_mask
        self.add_cat_state("n_valid", torch.int64)
        self.add_cat_state("auc_ap", torch.float64, width=2)
        self.add_cat_state("pred_range", torch.float64, width=2)  # lowest and highest pixel probability
        # per image, so their sum runs in dataset order: the same bits under any number of processes
        self.add_cat_state("pixel_bins", torch.float64, width=3 * CALIBRATION_BINS)
        self._names: list[str] = []

    def reset(self) -> None:
        super().reset()
        self._names = []

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        label = batch["label"]
        b = int(label.shape[0]) if isinstance(label, torch.Tensor) else len(label)
        names = batch.get("name")
        names = [str(n) for n in names] if isinstance(names, (list, tuple)) else [str(names)] * b
        self._names += names
        self.append("label", torch.as_tensor(label).reshape(-1).to(torch.int64))
        score = outputs.get("pred_label")
        if isinstance(score, torch.Tensor):
            self.append("pred_label", score.detach().reshape(-1).double())
        else:
            self.append("pred_label", torch.full((b,), float("nan"), dtype=torch.float64))
        if not isinstance(outputs.get("pred_mask"), torch.Tensor):
            self.append("counts", torch.full((b, 4), -1, dtype=torch.int64))
            self.append("n_valid", torch.zeros(b, dtype=torch.int64))
            self.append("auc_ap", torch.full((b, 2), float("nan"), dtype=torch.float64))
            self.append("pred_range", torch.full((b, 2), float("nan"), dtype=torch.float64))
            self.append("pixel_bins", torch.zeros((b, 3 * CALIBRATION_BINS), dtype=torch.float64))
            return
        pb = prepare_pixels(outputs, batch, "PerImageRecorder", self._batch_cache)
        self.append("counts", pb.counts(self.threshold))
        self.append("n_valid", pb.n_valid)
        if self.full:
            self.append("auc_ap", torch.stack([pb.auc().cpu(), pb.average_precision().cpu()], dim=1))
        else:
            self.append("auc_ap", torch.full((b, 2), float("nan"), dtype=torch.float64))
        pred = outputs["pred_mask"].detach().float().reshape(b, -1)
        self.append("pred_range", torch.stack([pred.amin(1), pred.amax(1)], dim=1).double().cpu())
        if self.full:  # calibration is part of the rows; the quick tests during training skip it
            self.append("pixel_bins", torch.stack([pb.image_calibration_bins(i, CALIBRATION_BINS).reshape(-1)
                                                   for i in range(b)]))
        else:
            self.append("pixel_bins", torch.zeros((b, 3 * CALIBRATION_BINS), dtype=torch.float64))

    def _compute(self, states: dict[str, torch.Tensor]) -> dict[str, float]:
        return {}

    def definitions(self) -> dict[str, str]:
        return {}

    def gather(self, runtime: Any = None) -> dict[str, Any]:
        """Every process's rows, in dataset order, on every process: the reduced states plus
        ``names``. ``runtime`` (the engine's) gathers the names; without one, this process's."""
        _, states = self.compute_with_states(sync=runtime is not None and runtime.world_size > 1)
        names = list(self._names)
        if runtime is not None and runtime.world_size > 1:
            names = [n for part in runtime.all_gather_object(names) for n in part]
        return {**{k: v.cpu() for k, v in states.items()}, "names": names}

    @staticmethod
    def table(gathered: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows of ``per_image.csv`` (columns :data:`PER_IMAGE_COLUMNS`; None = empty)."""
        rows = []
        labels = gathered["label"].tolist()
        scores = gathered["pred_label"].tolist()
        counts = gathered["counts"].tolist()
        valid = gathered["n_valid"].tolist()
        auc_ap = gathered["auc_ap"].tolist()
        for i, name in enumerate(gathered["names"]):
            tp, fp, fn, tn = counts[i]
            row: dict[str, Any] = {"name": name, "label": int(labels[i]),
                                   "pred_label": None if math.isnan(scores[i]) else scores[i]}
            if tp < 0:  # no pred_mask
                row.update({k: None for k in PER_IMAGE_COLUMNS[3:]})
            else:
                manipulated = tp + fn > 0
                nv = valid[i]
                row.update({
                    "pixel_f1": 2 * tp / (2 * tp + fp + fn) if manipulated else None,
                    "pixel_iou": tp / (tp + fp + fn) if manipulated else None,
                    "pixel_auc": None if not manipulated or math.isnan(auc_ap[i][0]) else auc_ap[i][0],
                    "pixel_ap": None if not manipulated or math.isnan(auc_ap[i][1]) else auc_ap[i][1],
                    "mask_area": (tp + fn) / nv if nv else None,
                    "pred_area": (tp + fp) / nv if nv else None,
                    "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                })
            rows.append(row)
        return rows

    @staticmethod
    def constant_prediction(gathered: Mapping[str, Any]) -> str | None:
        """A warning when every pixel of every image got the same probability (a model that has
        not learned: all metrics and pictures then say nothing), else None."""
        rng = gathered["pred_range"]
        rng = rng[~torch.isnan(rng).any(dim=1)] if rng.numel() else rng
        if rng.shape[0] < 2:
            return None
        lo, hi = float(rng[:, 0].min()), float(rng[:, 1].max())
        if hi - lo <= 1e-6:
            return (f"the model predicts {lo:.4g} for every pixel of every image ({rng.shape[0]} images): it has not "
                    f"learned to localise anything, so its metrics compare nothing (train longer, check the learning "
                    f"rate and the data, or load the right checkpoint)")
        return None


def reliability_bins(count: Any, positives: Any, total: Any) -> list[dict[str, Any]]:
    """``[{"lower", "upper", "count", "mean_confidence", "fraction_positive"}]`` per bin."""
    n = len(count)
    out = []
    for b in range(n):
        c = float(count[b])
        out.append({"lower": round(b / n, 6), "upper": round((b + 1) / n, 6), "count": int(round(c)),
                    "mean_confidence": float(total[b]) / c if c else None,
                    "fraction_positive": float(positives[b]) / c if c else None})
    return out


def _ece(count: Any, positives: Any, total: Any) -> float | None:
    n = float(sum(float(c) for c in count))
    if n == 0:
        return None
    return math.fsum(abs(float(total[b]) - float(positives[b])) for b in range(len(count))) / n


def calibration(gathered: Mapping[str, Any], n_bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """``{"image": {"ece", "brier", "bins"} | None, "pixel": {"ece", "bins"} | None}``.

    ECE = Σ_b (n_b / N) |mean confidence_b − fraction positive_b| = Σ_b |Σ p − Σ y| / N over
    equal-width bins; image: over images with a score; pixel: over valid pixels (exact sums).
    """
    result: dict[str, Any] = {"image": None, "pixel": None}
    scores, labels = gathered["pred_label"], gathered["label"]
    keep = ~torch.isnan(scores)
    if bool(keep.any()):
        s, y = scores[keep].double(), (labels[keep] > 0).double()
        bins = (s * n_bins).to(torch.int64).clamp(0, n_bins - 1)
        count = torch.bincount(bins, minlength=n_bins).double()
        positives = torch.bincount(bins, weights=y, minlength=n_bins)
        total = torch.bincount(bins, weights=s, minlength=n_bins)
        result["image"] = {"ece": _ece(count.tolist(), positives.tolist(), total.tolist()),
                           "brier": math.fsum(((s - y) ** 2).tolist()) / int(s.numel()),
                           "bins": reliability_bins(count.tolist(), positives.tolist(), total.tolist())}
    rows = gathered.get("pixel_bins")
    pixel = None
    if rows is not None and rows.numel():
        per_image = rows.reshape(rows.shape[0], 3, -1).tolist()  # summed exactly, in dataset order
        pixel = [[math.fsum(img[k][b] for img in per_image) for b in range(n_bins)] for k in range(3)]
    if pixel is not None and sum(pixel[0]) > 0:
        count, positives, total = pixel
        result["pixel"] = {"ece": _ece(count, positives, total), "bins": reliability_bins(count, positives, total)}
    return result
