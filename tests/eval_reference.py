"""scikit-learn reference values for the evaluators (shared by the evaluation tests).

Each function takes numpy arrays of N images: ``preds`` (N,H,W) float32 in [0,1], ``masks``
(N,H,W) {0,1}, ``valid`` (N,H,W) bool or None, ``labels`` (N,) and ``scores`` (N,), and
returns {result key: value} computed image by image with scikit-learn, under the definitions
documented in ``IMDLBenCo.evaluation``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    matthews_corrcoef,
    precision_recall_curve,
    recall_score,
    roc_auc_score,
)


def _valid_pixels(preds, masks, valid):
    for i in range(preds.shape[0]):
        v = np.ones(preds[i].shape, bool) if valid is None else valid[i] > 0.5
        yield preds[i][v].reshape(-1), masks[i][v].reshape(-1) > 0.5


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def pixel_reference(preds, masks, valid=None, threshold: float = 0.5) -> dict[str, float]:
    """Per-image (manipulated images) and pooled pixel metrics, all modes."""
    fns = {"pixel_f1": f1_score, "pixel_iou": jaccard_score, "pixel_accuracy": accuracy_score}
    per: dict[str, list[float]] = {}
    pooled_p, pooled_y = [], []
    fpr, fpr_rev, fp_total, fp_rev_total, n_total = [], [], 0, 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p, y in _valid_pixels(preds, masks, valid):
            pooled_p.append(p)
            pooled_y.append(y)
            hit = p > np.float32(threshold)
            if not y.any():
                if y.size:
                    fpr.append(hit.mean())
                    fpr_rev.append((~hit).mean())
                    fp_total += int(hit.sum())
                    fp_rev_total += int((~hit).sum())
                    n_total += y.size
                continue
            per.setdefault("pixel_auprc", []).append(average_precision_score(y, p))
            for key, fn in fns.items():
                o, r = fn(y, hit), fn(y, ~hit)
                per.setdefault(key, []).append(o)
                per.setdefault(key + "_reverse", []).append(r)
                per.setdefault(key + "_double", []).append(max(o, r))
            if not y.all():
                a, ra = roc_auc_score(y, p), roc_auc_score(y, -p)
                per.setdefault("pixel_auc", []).append(a)
                per.setdefault("pixel_auc_reverse", []).append(ra)
                per.setdefault("pixel_auc_double", []).append(max(a, ra))
            prec, rec, _ = precision_recall_curve(y, p)
            f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0.0)
            per.setdefault("pixel_f1_best", []).append(f1.max())
        out = {k: _mean(v) for k, v in per.items()}
        p, y = np.concatenate(pooled_p), np.concatenate(pooled_y)
        hit = p > np.float32(threshold)
        for key, fn in fns.items():
            o, r = fn(y, hit), fn(y, ~hit)
            out[key + "_pooled"] = o
            out[key + "_reverse_pooled"] = r
            out[key + "_double_pooled"] = max(o, r)
        if y.any() and not y.all():
            out["pixel_auc_pooled"] = roc_auc_score(y, p)  # exact; ours is a histogram
    out["pixel_auprc_pooled"] = average_precision_score(y, p) if y.any() else float("nan")  # exact; ours: histogram
    out["pixel_fpr_authentic"] = _mean(fpr)
    out["pixel_fpr_authentic_pooled"] = fp_total / n_total if n_total else float("nan")
    out["pixel_fpr_authentic_reverse"] = _mean(fpr_rev)
    out["pixel_fpr_authentic_reverse_pooled"] = fp_rev_total / n_total if n_total else float("nan")
    out["pixel_fpr_authentic_double"] = _mean([min(a, b) for a, b in zip(fpr, fpr_rev)])
    out["pixel_fpr_authentic_double_pooled"] = min(fp_total, fp_rev_total) / n_total if n_total else float("nan")
    if threshold != 0.5:  # keys carry the threshold
        out = {(_with_threshold(k, threshold)): v for k, v in out.items()}
    return out


def _with_threshold(key: str, threshold: float) -> str:
    """The evaluator's key at another threshold (``_t<thr>`` before ``_pooled``); threshold-free keys as they are."""
    if any(key.startswith(k) for k in ("pixel_auc", "pixel_f1_best", "pixel_auprc")):
        return key
    pooled = key.endswith("_pooled")
    base = key[: -len("_pooled")] if pooled else key
    return f"{base}_t{threshold:g}" + ("_pooled" if pooled else "")


def image_reference(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    y, s = np.asarray(labels) > 0.5, np.asarray(scores, dtype=np.float64)
    hit = s > threshold
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"image_f1": f1_score(y, hit, zero_division=0), "image_accuracy": accuracy_score(y, hit),
               "image_balanced_accuracy": balanced_accuracy_score(y, hit),
               "image_ap": average_precision_score(y, s),
               "image_mcc": matthews_corrcoef(y, hit),
               "image_tpr": recall_score(y, hit, zero_division=np.nan),
               "image_tnr": recall_score(~y, ~hit, zero_division=np.nan)}
    out["image_auc"] = roc_auc_score(y, s) if 0 < y.sum() < y.size else float("nan")
    if threshold != 0.5:
        out = {(k if k in ("image_auc", "image_ap") else f"{k}_t{threshold:g}"): v for k, v in out.items()}
    return out


def all_evaluators():
    """One of every evaluator: the 15 documented ones (3 modes × 4 pixel + 3 image) and the extras."""
    from IMDLBenCo import evaluation as E

    evs = [cls(mode=m) for cls in (E.PixelF1, E.PixelIOU, E.PixelAccuracy, E.PixelAUC)
           for m in ("origin", "reverse", "double")]
    evs += [E.ImageF1(), E.ImageAUC(), E.ImageAccuracy(), E.ImageAP(), E.ImageBalancedAccuracy(),
            E.ImageMCC(), E.ImageTPR(), E.ImageTNR(), E.PixelF1Best(), E.PixelAUPRC()]
    evs += [E.PixelFPR(mode=m) for m in ("origin", "reverse", "double")]
    return evs


def thresholded_evaluators(threshold: float):
    """The evaluators whose keys depend on the threshold, at ``threshold``."""
    from IMDLBenCo import evaluation as E

    evs = [cls(threshold=threshold, mode=m) for cls in (E.PixelF1, E.PixelIOU, E.PixelAccuracy, E.PixelFPR)
           for m in ("origin", "reverse", "double")]
    evs += [cls(threshold=threshold) for cls in (E.ImageF1, E.ImageAccuracy, E.ImageBalancedAccuracy, E.ImageMCC,
                                                 E.ImageTPR, E.ImageTNR)]
    return evs


def run_evaluators(evaluators, preds, masks, valid, labels, scores, batch_size: int,
                   indices: range | None = None, device: str = "cpu") -> dict[str, float]:
    """Feed the images (in ``indices`` order) in batches through every evaluator; merged results."""
    idx = list(indices if indices is not None else range(preds.shape[0]))
    for s in range(0, len(idx), batch_size):
        sel = idx[s:s + batch_size]
        out = {"pred_mask": torch.from_numpy(preds[sel][:, None]).to(device),
               "pred_label": torch.as_tensor(np.asarray(scores)[sel], dtype=torch.float32).to(device)}
        batch = {"mask": torch.from_numpy(masks[sel][:, None].astype(np.float32)).to(device),
                 "label": torch.as_tensor(np.asarray(labels)[sel], dtype=torch.int64).to(device)}
        if valid is not None:
            batch["shape_mask"] = torch.from_numpy(valid[sel][:, None].astype(np.float32)).to(device)
        for ev in evaluators:
            ev.update(out, batch)
    res: dict[str, float] = {}
    for ev in evaluators:
        res.update(ev.compute())
    return res


def assert_matches(ours: dict[str, float], ref: dict[str, float], tol: float = 1e-6) -> None:
    """Every reference key (except the exact pooled AUC) equals ours within ``tol`` (NaN == NaN)."""
    for key, want in ref.items():
        if key == "pixel_auc_pooled":
            bound = ours["pixel_auc_pooled_error_bound"]
            assert abs(ours[key] - want) <= bound + 1e-12, (key, ours[key], want, bound)
            continue
        if key == "pixel_auprc_pooled":  # from the 4096-bin histogram: close, exact only without in-bin ties
            assert abs(ours[key] - want) <= 5e-3 or (np.isnan(want) and np.isnan(ours[key])), (key, ours[key], want)
            continue
        got = ours[key]
        if np.isnan(want):
            assert np.isnan(got), (key, got, want)
        else:
            assert abs(got - want) <= tol, (key, got, want)
