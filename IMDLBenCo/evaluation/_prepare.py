"""Input checks and per-batch work shared by all pixel evaluators.

Several evaluators usually see the same batch (F1, IoU, accuracy, AUC ...). :func:`prepare_pixels`
validates the inputs once and returns a :class:`PixelBatch` whose expensive results (thresholded
confusion counts, the per-image sort behind the exact AUC, histograms) are computed on first use
and cached, keyed on the identity of the tensors (weak references, so nothing is kept alive).

Exact AUC without a float sort: a probability in [0, 1] as float32 has a bit pattern that,
read as an int32, is ordered like the value. We pack ``bits << 1 | is_positive`` into one int32
key (padding pixels get a key above every valid one) and sort these integers (numpy's vectorised
integer sort on CPU, ``torch.sort`` elsewhere). In the sorted row, tied values are adjacent with
negatives first, so the Mann-Whitney count of pairs (negative <= positive) is the sum of the
positives' positions minus P(P-1)/2, and tied (negative, positive) pairs are found at the few
places where a negative key is followed by the positive key of the same value. Everything is
integer arithmetic, so the AUC is the exact rational ``(#neg < pos + 0.5 #neg == pos) / (P N)``,
which is what scikit-learn's tie-aware ``roc_auc_score`` computes.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

_SENTINEL = 0x7FFFFFFF  # larger than every packed key of a value in [0, 1] (<= 0x7F000001)

#: bins of the pooled (dataset-level) pixel AUC histogram; a power of two so that
#: ``floor(p * HIST_BINS)`` is exact in float32 and identical on every device.
HIST_BINS = 1 << 16


class InputError(ValueError):
    """Raised when an evaluator gets inputs of the wrong kind; the message says what to do."""


# ------------------------------------------------------------------ checks
def _tensor(obj: Any, metric: str, where: str, expected: str) -> torch.Tensor:
    if obj is None:
        raise InputError(f"{metric}: {where} is missing or None; expected {expected}.")
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{metric}: {where} must be a torch.Tensor ({expected}), got {type(obj).__name__}.")
    return obj


def check_probabilities(t: torch.Tensor, metric: str, where: str) -> None:
    """Raise when ``t`` holds NaN or values outside [0, 1] (logits passed as probabilities)."""
    if not t.is_floating_point():
        raise InputError(f"{metric}: {where} must be a floating-point tensor of probabilities in [0, 1], "
                         f"got dtype {t.dtype}.")
    if t.numel() == 0:
        return
    lo, hi = torch.aminmax(t.detach())
    lo, hi = float(lo), float(hi)
    if lo != lo or hi != hi:
        raise InputError(f"{metric}: {where} contains NaN; expected probabilities in [0, 1]. "
                         f"Check the model for numerical problems (e.g. training with a too high LR).")
    if lo < 0.0 or hi > 1.0:
        raise InputError(f"{metric}: {where} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; "
                         f"expected probabilities. If these are logits, apply torch.sigmoid in the "
                         f"model's forward before returning them.")


def get_pred_label(outputs: Mapping[str, Any], batch: Mapping[str, Any], metric: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Checked ``(scores (B,) float, labels (B,) bool)`` for the image-level metrics."""
    if not isinstance(outputs, Mapping):
        raise InputError(f"{metric}: outputs must be the model output dict, got {type(outputs).__name__}.")
    pred = _tensor(outputs.get("pred_label"), metric, "outputs['pred_label']",
                   "(B,) image-level probabilities; remove image-level metrics from the evaluator list "
                   "for a model without a classification head (or run with --if_predict_label)")
    label = _tensor(batch.get("label"), metric, "batch['label']", "(B,) 0/1 labels")
    if pred.dim() == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.dim() != 1:
        raise InputError(f"{metric}: outputs['pred_label'] must have shape (B,), got {tuple(pred.shape)}.")
    label = label.reshape(-1)
    if label.shape[0] != pred.shape[0]:
        raise InputError(f"{metric}: outputs['pred_label'] has {pred.shape[0]} scores but batch['label'] has "
                         f"{label.shape[0]} labels; expected one score per image.")
    check_probabilities(pred, metric, "outputs['pred_label']")
    return pred.detach(), label.detach() > 0.5


# ------------------------------------------------------------------ cache
_cache: Dict[str, Any] = {"refs": None, "batch": None}


def _same(refs: Optional[tuple], tensors: tuple) -> bool:
    if refs is None or len(refs) != len(tensors):
        return False
    for entry, t in zip(refs, tensors):
        if t is None or entry is None:
            if t is not entry:
                return False
            continue
        ref, version = entry
        if ref() is not t or t._version != version:
            return False
    return True


def prepare_pixels(outputs: Mapping[str, Any], batch: Mapping[str, Any], metric: str) -> "PixelBatch":
    """Checked inputs of a pixel metric, shared with the other evaluators of the same batch."""
    if not isinstance(outputs, Mapping):
        raise InputError(f"{metric}: outputs must be the model output dict, got {type(outputs).__name__}.")
    if not isinstance(batch, Mapping):
        raise InputError(f"{metric}: batch must be the batch dict, got {type(batch).__name__}.")
    pred = outputs.get("pred_mask")
    mask = batch.get("mask")
    shape_mask = batch.get("shape_mask")
    key = (pred, mask, shape_mask)
    if _same(_cache["refs"], key):
        return _cache["batch"]
    pb = PixelBatch(pred, mask, shape_mask, metric)
    _cache["refs"] = tuple(None if t is None else (weakref.ref(t), t._version) for t in key)
    _cache["batch"] = pb
    return pb


# ------------------------------------------------------------------ the prepared batch
class PixelBatch:
    """One checked batch of pixel predictions, flattened to (B, L), with lazily cached results.

    ``pos``: ground-truth positives (mask > 0.5) inside the valid region; ``valid``: the
    ``shape_mask`` > 0.5 region or None (all pixels); ``n_valid``/``n_pos`` per image (int64).
    """

    def __init__(self, pred: Any, mask: Any, shape_mask: Any, metric: str) -> None:
        pred = _tensor(pred, metric, "outputs['pred_mask']",
                       "(B,1,H,W) pixel probabilities; remove pixel-level metrics from the evaluator list "
                       "for a model without a localisation head")
        mask = _tensor(mask, metric, "batch['mask']", "(B,1,H,W) ground-truth mask in {0,1}")
        if pred.dim() != 4 or pred.shape[1] != 1:
            raise InputError(f"{metric}: outputs['pred_mask'] must have shape (B,1,H,W), got {tuple(pred.shape)}.")
        if tuple(mask.shape) != tuple(pred.shape):
            raise InputError(f"{metric}: outputs['pred_mask'] has shape {tuple(pred.shape)} but batch['mask'] has "
                             f"{tuple(mask.shape)}; expected the same (B,1,H,W) (resize the prediction to the "
                             f"mask size in the model).")
        check_probabilities(pred, metric, "outputs['pred_mask']")
        b = pred.shape[0]
        self.device = pred.device
        self.pred = pred.detach().reshape(b, -1).float().contiguous()
        pos = mask.detach().reshape(b, -1).to(self.device) > 0.5
        self.valid: Optional[torch.Tensor] = None
        if shape_mask is not None:
            shape_mask = _tensor(shape_mask, metric, "batch['shape_mask']", "(B,1,H,W) 1 on real content")
            if tuple(shape_mask.shape) != tuple(mask.shape):
                raise InputError(f"{metric}: batch['shape_mask'] has shape {tuple(shape_mask.shape)} but "
                                 f"batch['mask'] has {tuple(mask.shape)}; expected the same.")
            self.valid = shape_mask.detach().reshape(b, -1).to(self.device) > 0.5
            pos = pos & self.valid
            self.n_valid = self.valid.sum(1)
        else:
            self.n_valid = torch.full((b,), self.pred.shape[1], dtype=torch.int64, device=self.device)
        self.pos = pos
        self.n_pos = pos.sum(1)
        self._counts: Dict[float, torch.Tensor] = {}
        self._sorted: Optional[torch.Tensor] = None
        self._ranked: Optional[Dict[str, torch.Tensor]] = None
        self._hist: Optional[torch.Tensor] = None

    # -- thresholded counts ------------------------------------------------
    def counts(self, threshold: float) -> torch.Tensor:
        """(B, 4) int64 per-image ``[TP, FP, FN, TN]`` of ``pred > threshold`` over valid pixels."""
        c = self._counts.get(threshold)
        if c is None:
            hit = self.pred > threshold
            if self.valid is not None:
                hit &= self.valid
            tp = (hit & self.pos).sum(1)
            fp = hit.sum(1) - tp
            fn = self.n_pos - tp
            tn = self.n_valid - tp - fp - fn
            c = torch.stack([tp, fp, fn, tn], dim=1)
            self._counts[threshold] = c
        return c

    # -- sorted keys -----------------------------------------------------------
    def sorted_keys(self) -> torch.Tensor:
        """(B, L) int32 packed keys ``bits(p) << 1 | positive`` sorted per image; padding last."""
        if self._sorted is None:
            # & 0x7FFFFFFF maps -0.0 to +0.0 (values are checked to be in [0, 1]).
            keys = ((self.pred.view(torch.int32) & 0x7FFFFFFF) << 1) | self.pos.to(torch.int32)
            if self.valid is not None:
                keys.masked_fill_(~self.valid, _SENTINEL)
            if keys.device.type == "cpu":
                import numpy as np

                self._sorted = torch.from_numpy(np.sort(keys.numpy(), axis=-1))
            else:
                self._sorted = torch.sort(keys, dim=-1).values
        return self._sorted

    def ranked(self) -> Dict[str, torch.Tensor]:
        """Per-image exact ``auc`` and best-threshold ``f1_best`` (float64, NaN where undefined)."""
        if self._ranked is None:
            srt = self.sorted_keys()
            nv = self.n_valid.tolist()
            npos = self.n_pos.tolist()
            auc, f1b = [], []
            for i in range(srt.shape[0]):
                a, f = _rank_stats(srt[i, : nv[i]], npos[i])
                auc.append(a)
                f1b.append(f)
            self._ranked = {
                "auc": torch.tensor(auc, dtype=torch.float64, device=self.device),
                "f1_best": torch.tensor(f1b, dtype=torch.float64, device=self.device),
            }
        return self._ranked

    def histogram(self) -> torch.Tensor:
        """(2, HIST_BINS) int64 counts of valid pixels per score bin: row 0 negatives, row 1 positives."""
        if self._hist is None:
            k = HIST_BINS
            idx = (self.pred * k).to(torch.int64).clamp_(max=k - 1) + self.pos.to(torch.int64) * k
            if self.valid is not None:
                idx = idx[self.valid]
            self._hist = torch.bincount(idx.reshape(-1), minlength=2 * k).reshape(2, k)
        return self._hist


def _rank_stats(s: torch.Tensor, n_pos: int) -> Tuple[float, float]:
    """Exact AUC and best-threshold F1 of one image from its sorted packed keys ``s``."""
    n = s.shape[0]
    n_neg = n - n_pos
    if n_pos == 0:
        return float("nan"), float("nan")
    lab = s & 1
    # F1 at the best threshold: over every distinct score v, predict "score >= v".
    change = torch.nonzero((s[1:] >> 1) != (s[:-1] >> 1)).reshape(-1) + 1
    starts = torch.cat([torch.zeros(1, dtype=change.dtype, device=s.device), change])
    cum = torch.cumsum(lab, 0, dtype=torch.int64)
    pos_before = torch.where(starts > 0, cum[(starts - 1).clamp(min=0)], torch.zeros_like(starts))
    tp = n_pos - pos_before
    f1 = (2 * tp).double() / ((n - starts) + n_pos).double()
    f1_best = float(f1.max())
    if n_neg == 0:
        return float("nan"), f1_best
    # Mann-Whitney: pairs (negative <= positive), negatives sorted first among ties.
    pos_idx = torch.nonzero(lab).reshape(-1)
    a_le = int(pos_idx.sum()) - n_pos * (n_pos - 1) // 2
    # Tied pairs: a negative key immediately followed by the positive key of the same value.
    bnd = torch.nonzero((s[1:] - s[:-1]) == 1).reshape(-1) + 1
    ties = 0
    if bnd.numel():
        bnd = bnd[lab[bnd] == 1]
        if bnd.numel():
            first = torch.searchsorted(s, s[bnd] - 1, right=False)
            last = torch.searchsorted(s, s[bnd], right=True)
            ties = int(((bnd - first) * (last - bnd)).sum())
    return (2 * a_le - ties) / (2 * n_pos * n_neg), f1_best
