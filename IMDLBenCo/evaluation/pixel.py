"""Pixel-level evaluators (localisation).

Common rules (stated once here, repeated in each ``definitions()``):

* **Valid pixels**: all pixels, or those with ``batch['shape_mask'] > 0.5`` when the batch has a
  shape mask (padding is excluded everywhere, from counts, sorts and histograms).
* **Ground truth**: ``batch['mask'] > 0.5``. An image is *manipulated* when it has at least one
  positive valid pixel, otherwise *authentic*.
* **Per-image keys** (``pixel_f1``, ...): the metric is computed on each manipulated image and
  averaged over manipulated images (exactly rounded mean). Authentic images do not enter these
  means (their F1/IoU/AUC are undefined or zero by construction); they feed
  :class:`PixelFPR`. NaN when no manipulated image was seen.
* **Pooled keys** (``..._pooled``): one confusion matrix (or histogram) over the valid pixels of
  *all* images, manipulated and authentic, then the metric once (dataset-level).
* **Threshold**: a pixel is predicted manipulated when ``pred_mask > threshold`` (strict, compared
  in float32); default 0.5.
* **Mode**: ``origin`` uses the prediction as it is; ``reverse`` inverts it (binary prediction
  ``pred_mask <= threshold``; for AUC the score ``-pred_mask``, i.e. ``1 - AUC``); ``double`` takes,
  per image (and for the pooled value, per dataset), the larger of the two. This matches
  IMDL-BenCo's modes, for models whose output may be inverted.
* **Precision**: predictions are compared and ranked as float32 (float16/bfloat16 widen exactly,
  float64 is rounded); every per-image value is an exact ratio of integer counts in float64.

Differences from IMDL-BenCo (deliberate): no ``1e-8`` epsilon in the ratios (values equal
scikit-learn's), authentic images are not averaged in as 0, and the per-image AUC counts tied
scores as 1/2 instead of depending on the sort order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._prepare import HIST_BINS, prepare_pixels
from .base import Evaluator, mean_or_nan

__all__ = ["PixelF1", "PixelIOU", "PixelAccuracy", "PixelAUC", "PixelAUPRC", "PixelF1Best", "PixelFPR"]

_MODES = ("origin", "reverse", "double")


def _key(base: str, mode: str, threshold: float) -> str:
    key = base if mode == "origin" else f"{base}_{mode}"
    if threshold != 0.5:
        key += f"_t{threshold:g}"
    return key


def _scope(threshold: float, mode: str) -> str:
    inv = {"origin": "", "reverse": "; prediction inverted (mode=reverse)",
           "double": "; max of prediction and inverted prediction (mode=double)"}[mode]
    return f"pred_mask > {threshold:g}{inv}; padding (shape_mask) excluded"


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den in float64, 0 where den == 0 (scikit-learn's zero_division=0)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))


class _ThresholdMetric(Evaluator):
    """Per-image and pooled metric of the thresholded confusion counts ``[TP, FP, FN, TN]``."""

    base_name = ""
    title = ""
    formula = ""

    def __init__(self, threshold: float = 0.5, mode: str = "origin") -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"{type(self).__name__}: mode must be one of {_MODES}, got {mode!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"{type(self).__name__}: threshold must be in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.mode = mode
        self.name = _key(self.base_name, mode, self.threshold)
        self.add_cat_state("per_image", torch.float64)
        self.add_sum_state("counts", torch.zeros(4, dtype=torch.int64))
        self.add_cat_state("image_counts", torch.int64, width=4)  # every image, in order: the bootstrap's unit

    @staticmethod
    def _metric(c: torch.Tensor) -> torch.Tensor:
        """Metric of (..., 4) counts ``[TP, FP, FN, TN]`` in float64."""
        raise NotImplementedError

    def _moded(self, c: torch.Tensor) -> torch.Tensor:
        if self.mode == "origin":
            return self._metric(c)
        # Inverted binary prediction: TP'=FN, FP'=TN, FN'=TP, TN'=FP.
        rev = self._metric(c[..., [2, 3, 0, 1]])
        return rev if self.mode == "reverse" else torch.maximum(self._metric(c), rev)

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        pb = prepare_pixels(outputs, batch, type(self).__name__, self._batch_cache)
        c = pb.counts(self.threshold)
        manip = pb.n_pos > 0
        self.append("per_image", self._moded(c[manip]))
        self.accumulate("counts", c.sum(0))
        self.append("image_counts", c)

    def resample(self, states: dict[str, torch.Tensor], weights: Any) -> dict[str, Any]:
        import numpy as np

        from .bootstrap import weighted_mean, weighted_sums

        counts = states["image_counts"].cpu()
        if counts.shape[0] != weights.shape[1]:
            return {}
        values = self._moded(counts).numpy().copy()
        values[(counts[:, 0] + counts[:, 2]).numpy() == 0] = np.nan  # authentic: not in the per-image mean
        pooled = self._moded(torch.from_numpy(weighted_sums(weights, counts.numpy()))).numpy()
        return {self.name: weighted_mean(weights, values), f"{self.name}_pooled": pooled}

    def _compute(self, states: dict[str, torch.Tensor]) -> dict[str, float]:
        return {self.name: mean_or_nan(states["per_image"]),
                f"{self.name}_pooled": float(self._moded(states["counts"]))}

    def definitions(self) -> dict[str, str]:
        s = _scope(self.threshold, self.mode)
        return {
            self.name: f"pixel {self.title} = {self.formula} per manipulated image, mean over manipulated "
                       f"images (authentic excluded); {s}",
            f"{self.name}_pooled": f"pixel {self.title} = {self.formula} over the pooled pixels of all images "
                                   f"(manipulated and authentic; dataset-level); {s}",
        }


class PixelF1(_ThresholdMetric):
    """Pixel-level F1 score.

    Per image: ``F1 = 2TP / (2TP + FP + FN)`` over valid pixels with ``pred_mask > threshold``
    (scikit-learn's ``f1_score``; no epsilon). Key ``pixel_f1``: mean over manipulated images
    (never degenerate: a manipulated image has TP + FN > 0; an empty prediction gives 0).
    Key ``pixel_f1_pooled``: the same formula on the counts summed over all images; 0 when the
    whole dataset has neither positive pixels nor positive predictions. See the module docstring
    for modes, padding and which images count. Keys get ``_reverse``/``_double`` and ``_t<thr>``
    suffixes for other modes and thresholds.
    """

    base_name = "pixel_f1"
    title = "F1"
    formula = "2TP/(2TP+FP+FN)"

    @staticmethod
    def _metric(c: torch.Tensor) -> torch.Tensor:
        return _safe_div(2 * c[..., 0], 2 * c[..., 0] + c[..., 1] + c[..., 2])


class PixelIOU(_ThresholdMetric):
    """Pixel-level intersection over union (Jaccard index).

    Per image: ``IoU = TP / (TP + FP + FN)`` with ``pred_mask > threshold`` (scikit-learn's
    ``jaccard_score``). Key ``pixel_iou``: mean over manipulated images (never degenerate);
    ``pixel_iou_pooled``: on counts summed over all images, 0 when TP + FP + FN = 0.
    """

    base_name = "pixel_iou"
    title = "IoU"
    formula = "TP/(TP+FP+FN)"

    @staticmethod
    def _metric(c: torch.Tensor) -> torch.Tensor:
        return _safe_div(c[..., 0], c[..., 0] + c[..., 1] + c[..., 2])


class PixelAccuracy(_ThresholdMetric):
    """Pixel-level accuracy.

    Per image: ``(TP + TN) / (TP + FP + FN + TN)`` over valid pixels with ``pred_mask > threshold``
    (scikit-learn's ``accuracy_score``). Key ``pixel_accuracy``: mean over manipulated images;
    ``pixel_accuracy_pooled``: over the valid pixels of all images (0 if there are none).
    """

    base_name = "pixel_accuracy"
    title = "accuracy"
    formula = "(TP+TN)/(TP+FP+FN+TN)"

    @staticmethod
    def _metric(c: torch.Tensor) -> torch.Tensor:
        return _safe_div(c[..., 0] + c[..., 3], c.sum(-1))


class PixelAUC(Evaluator):
    """Pixel-level area under the ROC curve.

    Key ``pixel_auc``: per manipulated image, the exact AUC of ``pred_mask`` against the mask over
    valid pixels, ``(#(neg < pos) + 0.5 #(neg == pos)) / (P N)`` over all (negative, positive)
    pixel pairs, which is scikit-learn's tie-aware ``roc_auc_score``; then the mean over manipulated
    images. Degenerate: all-equal scores give 0.5; an image whose valid pixels are all
    manipulated (N = 0) has no AUC and is left out of the mean. The threshold is not used.

    Key ``pixel_auc_pooled``: dataset-level AUC over the valid pixels of all images from a
    histogram of ``HIST_BINS`` = 4096 equal bins on [0, 1] per class (constant memory). Pairs in
    the same bin count as ties, so the error against the exact pooled AUC is at most
    ``0.5 * sum_b P_b N_b / (P N)``; this bound is computed from the histogram and reported as
    ``pixel_auc_pooled_error_bound``. The bound is conservative: when no bin holds two different
    scores (e.g. 8-bit predictions k/255) the pooled AUC is exact, yet the bound is not 0. NaN
    when the dataset lacks positive or negative pixels. Memory: 2 x 4096 int64 per evaluator.

    Modes: ``reverse`` is the AUC of ``-pred_mask`` (= 1 - AUC), ``double`` the larger of both.
    """

    def __init__(self, threshold: float = 0.5, mode: str = "origin") -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"PixelAUC: mode must be one of {_MODES}, got {mode!r}")
        self.threshold = float(threshold)  # kept for IMDL-BenCo compatibility; AUC uses no threshold
        self.mode = mode
        self.name = "pixel_auc" if mode == "origin" else f"pixel_auc_{mode}"
        self.add_cat_state("per_image", torch.float64)
        self.add_sum_state("hist", torch.zeros(2, HIST_BINS, dtype=torch.int64))
        self.add_cat_state("image_value", torch.float64)  # every image (NaN: not in the mean)
        self.add_cat_state("image_hist", torch.int32, width=2 * HIST_BINS)

    def _moded(self, auc: torch.Tensor) -> torch.Tensor:
        if self.mode == "origin":
            return auc
        return 1.0 - auc if self.mode == "reverse" else torch.maximum(auc, 1.0 - auc)

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        pb = prepare_pixels(outputs, batch, "PixelAUC", self._batch_cache)
        auc = pb.auc()
        self.append("per_image", self._moded(auc[~torch.isnan(auc)]))
        self.accumulate("hist", pb.histogram())
        self.append("image_value", self._moded(auc))
        self.append("image_hist", pb.histograms())

    def resample(self, states: dict[str, torch.Tensor], weights: Any) -> dict[str, Any]:
        from .bootstrap import histogram_auc_rows, weighted_mean

        values = states["image_value"].cpu().numpy()
        if values.shape[0] != weights.shape[1]:
            return {}
        pooled = histogram_auc_rows(_resampled_histograms(states["image_hist"], weights))
        pooled = self._moded(torch.from_numpy(pooled)).numpy()
        return {self.name: weighted_mean(weights, values), f"{self.name}_pooled": pooled}

    def _compute(self, states: dict[str, torch.Tensor]) -> dict[str, float]:
        auc, bound = histogram_auc(states["hist"])
        return {self.name: mean_or_nan(states["per_image"]),
                f"{self.name}_pooled": float(self._moded(torch.tensor(auc, dtype=torch.float64))),
                f"{self.name}_pooled_error_bound": bound}

    def definitions(self) -> dict[str, str]:
        inv = {"origin": "", "reverse": " of the inverted score (1-AUC)", "double": " max(AUC, 1-AUC)"}[self.mode]
        return {
            self.name: f"pixel ROC AUC{inv}, exact (ties count 1/2, as scikit-learn), per manipulated image "
                       f"with both classes, mean over those images; no threshold; padding excluded",
            f"{self.name}_pooled": f"pixel ROC AUC{inv} over the pooled pixels of all images (dataset-level), "
                                   f"from a {HIST_BINS}-bin histogram; padding excluded",
            f"{self.name}_pooled_error_bound": f"upper bound of |{self.name}_pooled - exact pooled AUC| "
                                               f"(pairs sharing a histogram bin counted as ties)",
        }


class PixelAUPRC(Evaluator):
    """Pixel-level area under the precision-recall curve (average precision).

    Key ``pixel_auprc``: per manipulated image, scikit-learn's ``average_precision_score`` of
    ``pred_mask`` against the mask over valid pixels, ``sum_k (R_k - R_{k-1}) P_k`` with every
    distinct score as a threshold, highest first (exact); then the mean over manipulated images.
    Key ``pixel_auprc_pooled``: the same formula over the pooled valid pixels of all images,
    computed from the ``HIST_BINS`` = 4096-bin histogram that ``PixelAUC`` keeps (the bin edges are
    the thresholds, so it approximates the exact pooled value; exact for 8-bit predictions k/255
    only up to the binning). No threshold; NaN without manipulated pixels.
    """

    name = "pixel_auprc"

    def __init__(self) -> None:
        super().__init__()
        self.add_cat_state("per_image", torch.float64)
        self.add_sum_state("hist", torch.zeros(2, HIST_BINS, dtype=torch.int64))
        self.add_cat_state("image_value", torch.float64)  # every image (NaN: not in the mean)
        self.add_cat_state("image_hist", torch.int32, width=2 * HIST_BINS)

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        pb = prepare_pixels(outputs, batch, "PixelAUPRC", self._batch_cache)
        ap = pb.average_precision()
        self.append("per_image", ap[pb.n_pos > 0])
        self.accumulate("hist", pb.histogram())
        self.append("image_value", torch.where(pb.n_pos > 0, ap, torch.full_like(ap, float("nan"))))
        self.append("image_hist", pb.histograms())

    def resample(self, states: dict[str, torch.Tensor], weights: Any) -> dict[str, Any]:
        from .bootstrap import histogram_ap_rows, weighted_mean

        values = states["image_value"].cpu().numpy()
        if values.shape[0] != weights.shape[1]:
            return {}
        pooled = histogram_ap_rows(_resampled_histograms(states["image_hist"], weights))
        return {self.name: weighted_mean(weights, values), f"{self.name}_pooled": pooled}

    def _compute(self, states: dict[str, torch.Tensor]) -> dict[str, float]:
        return {self.name: mean_or_nan(states["per_image"]),
                f"{self.name}_pooled": histogram_ap(states["hist"])}

    def definitions(self) -> dict[str, str]:
        return {
            self.name: "pixel average precision (area under the precision-recall curve, scikit-learn's "
                       "average_precision_score, exact) per manipulated image, mean over manipulated images; "
                       "no threshold; padding excluded",
            f"{self.name}_pooled": f"pixel average precision over the pooled pixels of all images (dataset-level), "
                                   f"from a {HIST_BINS}-bin histogram (bin edges as thresholds); padding excluded",
        }


def _resampled_histograms(image_hist: torch.Tensor, weights: Any) -> Any:
    """(R, 2, K) pooled histograms of the drawn images from (N, 2K) per-image counts (exact in
    float64; done in blocks of images so memory stays at a block's worth)."""
    import numpy as np

    h = image_hist.cpu().numpy()
    out = np.zeros((weights.shape[0], h.shape[1]), np.float64)
    block = 512
    for start in range(0, h.shape[0], block):
        out += weights[:, start:start + block].astype(np.float64) @ h[start:start + block].astype(np.float64)
    return out.reshape(weights.shape[0], 2, -1)


def histogram_ap(hist: torch.Tensor) -> float:
    """Average precision from (2, K) negative/positive counts per ascending score bin, the bins
    taken as the distinct scores (thresholds at the bin edges); NaN without positives."""
    h = hist.detach().cpu().to(torch.float64)
    neg, pos = h[0].flip(0), h[1].flip(0)  # highest bin first
    n_pos = float(pos.sum())
    if n_pos == 0:
        return float("nan")
    tp, fp = torch.cumsum(pos, 0), torch.cumsum(neg, 0)
    filled = (pos + neg) > 0
    precision = torch.where(filled, tp / (tp + fp).clamp(min=1), torch.zeros_like(tp))
    return float((pos * precision).sum() / n_pos)


def histogram_auc(hist: torch.Tensor) -> tuple:
    """``(auc, error_bound)`` from (2, K) negative/positive counts per ascending score bin.

    Pairs in a lower bin count 1, pairs in the same bin 1/2; integer arithmetic, exact.
    """
    h = hist.detach().cpu().to(torch.int64)
    neg, pos = h[0], h[1]
    n_neg, n_pos = int(neg.sum()), int(pos.sum())
    if n_neg == 0 or n_pos == 0:
        return float("nan"), float("nan")
    below = torch.cumsum(neg, 0) - neg  # negatives in lower bins
    if n_neg * n_pos < 2 ** 61:  # int64 sums cannot overflow
        twice_pairs = int((pos * (2 * below + neg)).sum())
        same = int((pos * neg).sum())
    else:  # beyond ~10^18 pixel pairs: Python integers
        p, b, n = pos.tolist(), below.tolist(), neg.tolist()
        twice_pairs = sum(pi * (2 * bi + ni) for pi, bi, ni in zip(p, b, n))
        same = sum(pi * ni for pi, ni in zip(p, n))
    den = n_pos * n_neg
    return twice_pairs / (2 * den), same / (2 * den)


class PixelF1Best(Evaluator):
    """Pixel-level F1 at the best threshold of each image ("F1-best", an oracle upper bound).

    Per manipulated image: ``max over thresholds v of 2TP/(2TP+FP+FN)`` where the prediction is
    ``pred_mask >= v`` and v runs over every distinct score of the image's valid pixels (the
    maximum of scikit-learn's ``precision_recall_curve`` F1). Key ``pixel_f1_best``: the mean over
    manipulated images. All-equal scores give ``2P / (n + P)`` (everything predicted positive).
    """

    name = "pixel_f1_best"

    def __init__(self) -> None:
        super().__init__()
        self.add_cat_state("per_image", torch.float64)
        self.add_cat_state("image_value", torch.float64)  # every image (NaN: not in the mean)

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        pb = prepare_pixels(outputs, batch, "PixelF1Best", self._batch_cache)
        f1 = pb.f1_best()
        self.append("per_image", f1[pb.n_pos > 0])
        self.append("image_value", torch.where(pb.n_pos > 0, f1, torch.full_like(f1, float("nan"))))

    def resample(self, states: dict[str, torch.Tensor], weights: Any) -> dict[str, Any]:
        from .bootstrap import weighted_mean

        values = states["image_value"].cpu().numpy()
        return {self.name: weighted_mean(weights, values)} if values.shape[0] == weights.shape[1] else {}

    def _compute(self, states: dict[str, torch.Tensor]) -> dict[str, float]:
        return {self.name: mean_or_nan(states["per_image"])}

    def definitions(self) -> dict[str, str]:
        return {self.name: "pixel F1 at the best threshold of each manipulated image (pred_mask >= v over all "
                           "distinct scores v), mean over manipulated images; padding excluded"}


class PixelFPR(Evaluator):
    """Pixel false-positive rate on authentic images.

    Per authentic image (no positive valid pixel): ``FP / n_valid``, the fraction of valid pixels
    with ``pred_mask > threshold``. Key ``pixel_fpr_authentic``: mean over authentic images;
    ``pixel_fpr_authentic_pooled``: false-positive pixels over all valid pixels of all authentic
    images. NaN when no authentic image (with at least one valid pixel) was seen. Lower is better.

    Modes, as the other pixel metrics: ``reverse`` counts the inverted prediction's false positives
    (``pred_mask <= threshold``); ``double`` takes per image (and for the pooled value) the *lower*
    (better) of the two, as ``double`` takes the better of the two everywhere.
    """

    def __init__(self, threshold: float = 0.5, mode: str = "origin") -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"PixelFPR: mode must be one of {_MODES}, got {mode!r}")
        self.threshold = float(threshold)
        self.mode = mode
        self.name = _key("pixel_fpr_authentic", mode, self.threshold)
        self.add_cat_state("per_image", torch.float64)
        self.add_sum_state("counts", torch.zeros(3, dtype=torch.int64))  # [FP, FP inverted, valid pixels]
        self.add_cat_state("image_counts", torch.int64, width=3)  # every image; zeros for manipulated ones

    def _moded(self, fp: torch.Tensor, fp_inv: torch.Tensor) -> torch.Tensor:
        return {"origin": fp, "reverse": fp_inv, "double": torch.minimum(fp, fp_inv)}[self.mode]

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        pb = prepare_pixels(outputs, batch, "PixelFPR", self._batch_cache)
        c = pb.counts(self.threshold)
        auth = (pb.n_pos == 0) & (pb.n_valid > 0)
        fp, nv = c[auth, 1], pb.n_valid[auth]
        fp_inv = nv - fp  # authentic: every valid pixel is a negative (TN of the prediction = FP inverted)
        self.append("per_image", self._moded(fp.double(), fp_inv.double()) / nv.double())
        self.accumulate("counts", torch.stack([fp.sum(), fp_inv.sum(), nv.sum()]))
        rows = torch.zeros((auth.shape[0], 3), dtype=torch.int64, device=auth.device)
        rows[auth] = torch.stack([fp, fp_inv, nv], dim=1).to(torch.int64)
        self.append("image_counts", rows)

    def resample(self, states: dict[str, torch.Tensor], weights: Any) -> dict[str, Any]:
        import numpy as np

        from .bootstrap import weighted_mean, weighted_sums

        rows = states["image_counts"].cpu().numpy().astype(np.float64)
        if rows.shape[0] != weights.shape[1]:
            return {}
        with np.errstate(invalid="ignore", divide="ignore"):
            per_image = np.where(rows[:, 2] > 0, self._moded_np(rows[:, 0], rows[:, 1]) / rows[:, 2], np.nan)
            sums = weighted_sums(weights, rows)
            pooled = np.where(sums[:, 2] > 0, self._moded_np(sums[:, 0], sums[:, 1]) / sums[:, 2], np.nan)
        return {self.name: weighted_mean(weights, per_image), f"{self.name}_pooled": pooled}

    def _moded_np(self, fp: Any, fp_inv: Any) -> Any:
        import numpy as np

        return {"origin": fp, "reverse": fp_inv, "double": np.minimum(fp, fp_inv)}[self.mode]

    def _compute(self, states: dict[str, torch.Tensor]) -> dict[str, float]:
        fp, fp_inv, nv = states["counts"].tolist()
        pooled = float(self._moded(torch.tensor(float(fp)), torch.tensor(float(fp_inv)))) / nv if nv else float("nan")
        return {self.name: mean_or_nan(states["per_image"]), f"{self.name}_pooled": pooled}

    def definitions(self) -> dict[str, str]:
        inv = {"origin": f"pred_mask > {self.threshold:g}",
               "reverse": f"inverted prediction, pred_mask <= {self.threshold:g} (mode=reverse)",
               "double": f"the lower of pred_mask > {self.threshold:g} and its inversion (mode=double)"}[self.mode]
        return {
            self.name: f"fraction of pixels predicted manipulated ({inv}) per authentic image, mean over authentic "
                       f"images; padding excluded; lower is better",
            f"{self.name}_pooled": f"false-positive pixels / pixels over all authentic images pooled ({inv}); "
                                   f"padding excluded; lower is better",
        }
