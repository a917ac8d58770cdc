"""Input checks and per-batch work shared by all pixel evaluators.

Several evaluators usually see the same batch (F1, IoU, accuracy, AUC ...). :func:`prepare_pixels`
validates the inputs once and returns a :class:`PixelBatch` whose expensive results (thresholded
confusion counts, the per-image sort behind the exact AUC, histograms) are computed on first use
and cached for the next evaluator in a :class:`BatchCache`, keyed on the identity and version
of the tensors (weak references to them). The cache belongs to the evaluators that share it
(:func:`share_batch_cache`; each evaluator alone has its own), not to the module: only the last
batch is kept, and ``compute()``/``reset()`` drop it.

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
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import EvaluatorInputError as InputError
from ..outputs import label_shape_problem, probability_problem

_SENTINEL = 0x7FFFFFFF  # larger than every packed key of a value in [0, 1] (<= 0x7F000001)

#: bins of the pooled (dataset-level) pixel AUC histogram; a power of two so that
#: ``floor(p * HIST_BINS)`` is exact in float32 and identical on every device. 4096 bins of
#: width 2.4e-4 keep the reported error bound near 1e-4 or below on realistic predictions
#: (measured: bound 4.6e-5, actual error 1.5e-6 on the benchmark's noisy predictions).
HIST_BINS = 1 << 12


#: CPU tensors go through numpy (faster there); tests turn this off to run the torch code path,
#: the one used on GPUs, on CPU.
USE_NUMPY_ON_CPU = True


# ------------------------------------------------------------------ checks
def _tensor(obj: Any, metric: str, where: str, expected: str) -> torch.Tensor:
    if obj is None:
        raise InputError(f"{metric}: {where} is missing or None; expected {expected}.")
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{metric}: {where} must be a torch.Tensor ({expected}), got {type(obj).__name__}.")
    return obj


def check_probabilities(t: torch.Tensor, metric: str, where: str) -> None:
    """Raise when ``t`` is not probabilities (the rule of :mod:`IMDLBenCo.outputs`)."""
    problem = probability_problem(t)
    if problem:
        raise InputError(f"{metric}: {where} {problem}.")


def get_pred_label(outputs: Mapping[str, Any], batch: Mapping[str, Any], metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked ``(scores (B,) float, labels (B,) bool)`` for the image-level metrics."""
    if not isinstance(outputs, Mapping):
        raise InputError(f"{metric}: outputs must be the model output dict, got {type(outputs).__name__}.")
    pred = _tensor(outputs.get("pred_label"), metric, "outputs['pred_label']",
                   "(B,) image-level probabilities; remove image-level metrics from the evaluator list "
                   "for a model without a classification head (or run with --if_predict_label)")
    label = _tensor(batch.get("label"), metric, "batch['label']", "(B,) 0/1 labels")
    if pred.dim() != 1:
        raise InputError(f"{metric}: outputs['pred_label'] {label_shape_problem(pred, None)}.")
    label = label.reshape(-1)
    if label.shape[0] != pred.shape[0]:
        raise InputError(f"{metric}: outputs['pred_label'] has {pred.shape[0]} scores but batch['label'] has "
                         f"{label.shape[0]} labels; expected one score per image.")
    check_probabilities(pred, metric, "outputs['pred_label']")
    return pred.detach(), label.detach() > 0.5


# ------------------------------------------------------------------ cache
class BatchCache:
    """The last prepared batch of a group of evaluators (see :func:`share_batch_cache`)."""

    __slots__ = ("refs", "batch")

    def __init__(self) -> None:
        self.refs: tuple | None = None
        self.batch: PixelBatch | None = None

    def clear(self) -> None:
        """Forget the last prepared batch (frees its memory once the loop is done)."""
        self.refs = None
        self.batch = None


def share_batch_cache(evaluators: Any) -> BatchCache:
    """Let ``evaluators`` prepare each batch once between them (the engine does this for the
    evaluator list of a script; do it for a list of your own in a notebook). Returns the cache."""
    cache = BatchCache()
    for ev in evaluators:
        if hasattr(ev, "_batch_cache"):
            ev._batch_cache = cache
    return cache


def _version(t: torch.Tensor) -> int | None:
    """In-place modification counter; None for inference-mode tensors, which have none."""
    try:
        return t._version
    except RuntimeError:
        return None


def _same(refs: tuple | None, tensors: tuple) -> bool:
    if refs is None or len(refs) != len(tensors):
        return False
    for entry, t in zip(refs, tensors):
        if t is None or entry is None:
            if t is not entry:
                return False
            continue
        ref, version = entry
        if ref() is not t or _version(t) != version:
            return False
    return True


def prepare_pixels(outputs: Mapping[str, Any], batch: Mapping[str, Any], metric: str,
                   cache: BatchCache | None = None) -> PixelBatch:
    """Checked inputs of a pixel metric, shared through ``cache`` with the other evaluators of
    the same batch."""
    if not isinstance(outputs, Mapping):
        raise InputError(f"{metric}: outputs must be the model output dict, got {type(outputs).__name__}.")
    if not isinstance(batch, Mapping):
        raise InputError(f"{metric}: batch must be the batch dict, got {type(batch).__name__}.")
    pred = outputs.get("pred_mask")
    mask = batch.get("mask")
    shape_mask = batch.get("shape_mask")
    key = (pred, mask, shape_mask)
    if cache is not None and _same(cache.refs, key):
        return cache.batch  # type: ignore[return-value]
    if cache is not None:
        cache.clear()  # the previous batch's arrays can be freed before this one's are made
    pb = PixelBatch(pred, mask, shape_mask, metric)  # raises on anything but valid tensors
    if cache is not None:
        cache.refs = tuple(None if t is None else (weakref.ref(t), _version(t)) for t in key)
        cache.batch = pb
    return pb


# ------------------------------------------------------------------ the prepared batch
class PixelBatch:
    """One checked batch of pixel predictions, flattened to (B, L), with lazily cached results.

    ``pred`` (float32), ``pos`` (ground truth ``mask > 0.5`` inside the valid region) and
    ``valid`` (``shape_mask > 0.5``, or None for all pixels) are numpy arrays for CPU input
    (numpy's popcount and integer sort are several times faster than torch's on CPU, and the
    data stays in the same memory) and tensors on the input's device otherwise. ``n_valid`` and
    ``n_pos`` are (B,) int64 tensors on the input's device.
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
        if shape_mask is not None:
            shape_mask = _tensor(shape_mask, metric, "batch['shape_mask']", "(B,1,H,W) 1 on real content")
            if tuple(shape_mask.shape) != tuple(mask.shape):
                raise InputError(f"{metric}: batch['shape_mask'] has shape {tuple(shape_mask.shape)} but "
                                 f"batch['mask'] has {tuple(mask.shape)}; expected the same.")
        check_probabilities(pred, metric, "outputs['pred_mask']")
        b = pred.shape[0]
        self.device = pred.device
        self.on_cpu = self.device.type == "cpu" and USE_NUMPY_ON_CPU

        def flat(t: torch.Tensor) -> Any:
            t = t.detach().reshape(b, -1).to(self.device)
            return t.numpy() if self.on_cpu else t

        self.pred = flat(pred.float())
        self.pos = flat(mask) > 0.5
        self.valid = None if shape_mask is None else flat(shape_mask) > 0.5
        if self.valid is not None:
            self.pos &= self.valid
        self.n_pos = self._count_rows(self.pos)
        self.n_valid = (torch.full((b,), self.pred.shape[1], dtype=torch.int64, device=self.device)
                        if self.valid is None else self._count_rows(self.valid))
        self._counts: dict[float, torch.Tensor] = {}
        self._sorted: Any = None
        self._auc: torch.Tensor | None = None
        self._f1_best: torch.Tensor | None = None
        self._ap: torch.Tensor | None = None
        self._hist: torch.Tensor | None = None

    def _count_rows(self, x: Any) -> torch.Tensor:
        """(B,) int64 number of True per row."""
        if self.on_cpu:
            np = _np()
            return torch.tensor([np.count_nonzero(r) for r in x], dtype=torch.int64)
        return x.sum(1)

    # -- thresholded counts ------------------------------------------------
    def counts(self, threshold: float) -> torch.Tensor:
        """(B, 4) int64 per-image ``[TP, FP, FN, TN]`` of ``pred > threshold`` over valid pixels."""
        c = self._counts.get(threshold)
        if c is None:
            hit = self.pred > threshold  # float32 comparison on both backends
            if self.valid is not None:
                hit &= self.valid
            tp = self._count_rows(hit & self.pos)
            fp = self._count_rows(hit) - tp
            fn = self.n_pos - tp
            tn = self.n_valid - tp - fp - fn
            c = torch.stack([tp, fp, fn, tn], dim=1)
            self._counts[threshold] = c
        return c

    # -- sorted keys -----------------------------------------------------------
    def _pack_and_sort_row(self, i: int) -> None:
        """CPU: pack image ``i``'s keys into ``self._sorted[i]`` and sort them in place."""
        np = _np()
        row = self._sorted[i]
        np.bitwise_and(self.pred[i].view(np.int32), 0x7FFFFFFF, out=row)  # -0.0 -> +0.0
        np.left_shift(row, 1, out=row)
        np.bitwise_or(row, self.pos[i], out=row)
        if self.valid is not None:
            np.copyto(row, _SENTINEL, where=~self.valid[i])
        sort_keys_inplace(row)

    def sorted_keys(self) -> Any:
        """(B, L) int32 packed keys ``bits(p) << 1 | positive`` sorted per image, padding last.

        numpy arrays on CPU, sorted by :func:`sort_keys_inplace` (the fastest of numpy's sort,
        OpenCV's and an O(n) radix sort on this machine; ``torch.sort`` is ~25x slower there), a
        tensor on the input's device otherwise. (Sorting images on a thread pool was measured
        slower on the shared 2-core machine, so CPU work is single-threaded.)
        """
        if self._sorted is None:
            self._per_image(None)
        return self._sorted

    def _per_image(self, fn: Any) -> torch.Tensor | None:
        """``fn(ops, sorted valid keys, n_pos)`` per image as a (B,) float64 tensor; sorts first if needed.

        On CPU the image's sort and ``fn`` run back to back, while its keys are still in cache.
        """
        nv, npos = self.n_valid.tolist(), self.n_pos.tolist()
        if self.on_cpu:
            need_sort = self._sorted is None
            if need_sort:
                self._sorted = _np().empty(self.pred.shape, _np().int32)

            def task(i: int) -> float | None:
                if need_sort:
                    self._pack_and_sort_row(i)
                return None if fn is None else fn(_NUMPY, self._sorted[i, : nv[i]], npos[i])

            vals = [task(i) for i in range(len(nv))]
        else:
            if self._sorted is None:
                keys = ((self.pred.view(torch.int32) & 0x7FFFFFFF) << 1) | self.pos.to(torch.int32)
                if self.valid is not None:
                    keys.masked_fill_(~self.valid, _SENTINEL)
                self._sorted = torch.sort(keys, dim=-1).values
            vals = [None if fn is None else fn(_TORCH, self._sorted[i, : nv[i]], npos[i]) for i in range(len(nv))]
        if fn is None:
            return None
        return torch.tensor(vals, dtype=torch.float64, device=self.device)

    def auc(self) -> torch.Tensor:
        """(B,) float64 exact per-image ROC AUC over valid pixels; NaN without both classes."""
        if self._auc is None:
            self._auc = self._per_image(_auc_sorted)
        return self._auc

    def average_precision(self) -> torch.Tensor:
        """(B,) float64 exact per-image average precision over valid pixels (scikit-learn's
        ``average_precision_score``); NaN without positive pixels."""
        if self._ap is None:
            self._ap = self._per_image(_ap_sorted)
        return self._ap

    def f1_best(self) -> torch.Tensor:
        """(B,) float64 per-image F1 at the best threshold; NaN without positive pixels."""
        if self._f1_best is None:
            self._f1_best = self._per_image(_f1_best_sorted)
        return self._f1_best

    def histogram(self) -> torch.Tensor:
        """(2, HIST_BINS) int64 counts of valid pixels per score bin: row 0 negatives, row 1 positives.

        Bin of a score p: ``min(floor(p * HIST_BINS), HIST_BINS - 1)``; exact in float32 because
        HIST_BINS is a power of two. On CPU it is read off the sorted keys (the exact AUC sorts
        them anyway): the bin edges' keys are searched in each sorted row and the positives of
        each bin are summed between those positions, which is about twice as fast as a
        ``bincount`` over every pixel. Elsewhere one ``bincount`` over ``bin << 1 | positive``.
        """
        if self._hist is None:
            k = HIST_BINS
            if self.on_cpu:
                np = _np()
                srt = self.sorted_keys()
                edges = _edge_keys()
                rows = np.zeros((srt.shape[0], 2, k), np.int64)  # per image: what histograms() returns
                for i, nv in enumerate(self.n_valid.tolist()):
                    if nv == 0:
                        continue
                    row = srt[i, :nv]
                    starts = np.empty(k, np.int64)
                    starts[0] = 0
                    starts[1:] = np.searchsorted(row, edges)  # first index of each bin
                    counts = np.diff(starts, append=nv)
                    filled = np.flatnonzero(counts)
                    # Between consecutive non-empty bins' starts lie exactly those bins' pixels.
                    pos = np.add.reduceat(row & 1, starts[filled])
                    rows[i, 1, filled] = pos
                    rows[i, 0] = counts
                    rows[i, 0, filled] -= pos
                self._hists = torch.from_numpy(rows.astype(np.int32))
                self._hist = torch.from_numpy(rows.sum(0))
            else:
                idx = ((self.pred * k).to(torch.int64) << 1) | self.pos.to(torch.int64)
                if self.valid is not None:
                    idx = idx[self.valid]
                hist = torch.bincount(idx.reshape(-1), minlength=2 * k + 2).reshape(k + 1, 2)
                hist[k - 1] += hist[k]  # p == 1.0 goes to the last bin
                self._hist = hist[:k].t().contiguous()
        return self._hist

    def histograms(self) -> torch.Tensor:
        """(B, 2, HIST_BINS) int32 per-image counts (the rows :meth:`histogram` sums): what the
        bootstrap resamples for the pooled AUC/AP (memory per image, never per pixel)."""
        if getattr(self, "_hists", None) is None and self.on_cpu:
            self.histogram()  # read off the sorted keys, per image
        if getattr(self, "_hists", None) is None:
            k, b = HIST_BINS, self.pred.shape[0]
            lib = _np() if self.on_cpu else torch
            bins = (self.pred * k).astype("int64") if self.on_cpu else (self.pred * k).to(torch.int64)
            bins = lib.minimum(bins, k - 1) if self.on_cpu else bins.clamp(max=k - 1)
            pos = self.pos.astype("int64") if self.on_cpu else self.pos.to(torch.int64)
            row = (lib.arange(b) if self.on_cpu else torch.arange(b, device=self.device))[:, None]
            idx = row * (2 * k) + pos * k + bins
            if self.valid is not None:
                idx = idx[self.valid]
            flat = lib.bincount(idx.reshape(-1), minlength=b * 2 * k)
            hists = torch.from_numpy(flat) if self.on_cpu else flat
            self._hists = hists.reshape(b, 2, k).to(torch.int32)
        return self._hists

    def image_calibration_bins(self, i: int, n_bins: int) -> torch.Tensor:
        """(3, n_bins) float64 over the valid pixels of image ``i``: pixels, positives and summed
        probabilities per equal-width probability bin (bin ``min(floor(p * n_bins), n_bins - 1)``)."""
        lib = _np() if self.on_cpu else torch
        keep = slice(None) if self.valid is None else self.valid[i]
        pred, pos = self.pred[i][keep].reshape(-1), self.pos[i][keep].reshape(-1)
        if self.on_cpu:
            bins = lib.minimum((pred * n_bins).astype("int64"), n_bins - 1)
            return torch.from_numpy(lib.stack([lib.bincount(bins, minlength=n_bins).astype("float64"),
                                               lib.bincount(bins, weights=pos.astype("float64"), minlength=n_bins),
                                               lib.bincount(bins, weights=pred.astype("float64"), minlength=n_bins)]))
        bins = (pred * n_bins).to(torch.int64).clamp(max=n_bins - 1)
        return torch.stack([torch.bincount(bins, minlength=n_bins).double(),
                            torch.bincount(bins, weights=pos.double(), minlength=n_bins),
                            torch.bincount(bins, weights=pred.double(), minlength=n_bins)]).cpu()



def _edge_keys() -> Any:
    """Packed keys (label 0) of the bin edges b / HIST_BINS, b = 1 .. HIST_BINS - 1 (numpy int32)."""
    if _EDGE_KEYS.get(HIST_BINS) is None:
        np = _np()
        edges = np.arange(1, HIST_BINS, dtype=np.float32) / np.float32(HIST_BINS)
        _EDGE_KEYS[HIST_BINS] = edges.view(np.int32) << 1
    return _EDGE_KEYS[HIST_BINS]


_EDGE_KEYS: dict[int, Any] = {}


# ------------------------------------------------------------------ sorting int32 keys on CPU
# The exact AUC's cost is the sort of every image's keys (262,144 for 512x512). How fast numpy's
# np.sort is depends on the machine: with its SIMD sort ~1 ms per 512x512 image, without it
# (measured here, an AMD EPYC whose numpy uses no SIMD sort) ~7 ms, 3x the rest of the
# evaluation. So three exact integer sorts are timed once per process on random keys and the
# fastest is used; all three give the same sorted array, so the values never depend on the choice:
#   numpy   np.ndarray.sort (SIMD where numpy has it);
#   opencv  cv2.sort (Intel IPP's sort in the x86 OpenCV wheels, ~1 ms whatever numpy has);
#   radix   least-significant-digit radix sort in two stable 16-bit passes (numpy's stable
#           argsort of 16-bit integers is a radix sort): O(n), no SIMD needed, ~3 ms.
# IMDLBENCO_KEY_SORT=numpy|opencv|radix forces one (tests run each).
KEY_SORTS = ("numpy", "opencv", "radix")
_KEY_SORT: dict[str, Any] = {}


def _sort_numpy(row: Any) -> None:
    row.sort()


def _sort_opencv(row: Any) -> None:
    import cv2

    view = row.reshape(1, -1)
    cv2.sort(view, cv2.SORT_EVERY_ROW | cv2.SORT_ASCENDING, dst=view)  # in place (dst is src)


def _sort_radix(row: Any) -> None:
    np = _np()
    # keys are non-negative int32: two stable passes, low 16 bits then high 16 bits
    order = np.argsort(row.astype(np.uint16), kind="stable")  # astype keeps the low 16 bits
    by_low = row[order]
    order = np.argsort((by_low >> 16).astype(np.uint16), kind="stable")
    np.take(by_low, order, out=row)


_SORTERS = {"numpy": _sort_numpy, "opencv": _sort_opencv, "radix": _sort_radix}


def _choose_key_sort() -> str:
    import os
    import time

    forced = os.environ.get("IMDLBENCO_KEY_SORT", "").strip().lower()
    if forced:
        if forced not in _SORTERS:
            raise ValueError(f"IMDLBENCO_KEY_SORT={forced!r}; expected one of {KEY_SORTS}")
        return forced
    np = _np()
    rng = np.random.default_rng(0)
    probe = (rng.random(1 << 17, dtype=np.float32).view(np.int32) << 1) | (rng.random(1 << 17) < 0.3)
    best, best_time = "numpy", float("inf")
    for name, fn in _SORTERS.items():
        try:
            spent = []
            for _ in range(3):
                row = probe.copy()
                t0 = time.perf_counter()
                fn(row)
                spent.append(time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - e.g. no OpenCV: that sort is simply not a candidate
            continue
        if min(spent) < best_time:
            best, best_time = name, min(spent)
    return best


def key_sort_name() -> str:
    """The CPU key sort this process uses (see above); chosen on first call."""
    name = _KEY_SORT.get("name")
    if name is None:
        name = _KEY_SORT["name"] = _choose_key_sort()
    return name


def sort_keys_inplace(row: Any) -> None:
    """Sort a 1-D contiguous numpy int32 array of non-negative keys in place, ascending."""
    if row.shape[0] > 1:
        _SORTERS[key_sort_name()](row)


# ------------------------------------------------------------------ per-image kernels
def _np():
    import numpy

    return numpy


class _NumpyOps:
    """The few array operations of the kernels, for numpy arrays (CPU)."""

    @staticmethod
    def nonzero(x: Any) -> Any:
        return _np().flatnonzero(x)

    @staticmethod
    def searchsorted(a: Any, v: Any, right: bool) -> Any:
        return _np().searchsorted(a, v, side="right" if right else "left")

    @staticmethod
    def cumsum(x: Any) -> Any:
        return _np().cumsum(x, dtype=_np().int64)

    @staticmethod
    def any(x: Any) -> bool:
        return bool(x.any())

    @staticmethod
    def ratio(a: Any, b: Any) -> Any:
        return a / b  # true division of integer arrays: float64

    @staticmethod
    def join(first: Any, x: Any, last: Any) -> Any:
        """``x`` with an int64 scalar prepended and/or appended (None: nothing)."""
        np = _np()
        parts = ([np.array([first], np.int64)] if first is not None else []) + [x.astype(np.int64)] + \
            ([np.array([last], np.int64)] if last is not None else [])
        return np.concatenate(parts)

    @staticmethod
    def position_sum(lab: Any) -> int:
        """Sum of the indices i where lab[i] == 1, exactly, without materialising the indices."""
        np = _np()
        n = lab.shape[0]
        w = 512
        body = n - n % w
        total = 0
        if body:
            blk = lab[:body].reshape(-1, w)
            # int32 sums are exact (a sum never exceeds the row count or w) and vectorise better
            rows = blk.sum(axis=1, dtype=np.int32).astype(np.int64)
            cols = blk.sum(axis=0, dtype=np.int32).astype(np.int64)
            total = w * int(np.dot(np.arange(rows.shape[0], dtype=np.int64), rows)) + \
                int(np.dot(np.arange(w, dtype=np.int64), cols))
        if body < n:
            total += int(np.flatnonzero(lab[body:]).sum()) + body * int(lab[body:].sum())
        return total


class _TorchOps:
    """The same operations for tensors on any device."""

    @staticmethod
    def nonzero(x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(x).reshape(-1)

    @staticmethod
    def searchsorted(a: torch.Tensor, v: torch.Tensor, right: bool) -> torch.Tensor:
        return torch.searchsorted(a, v, right=right)

    @staticmethod
    def cumsum(x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, 0, dtype=torch.int64)

    @staticmethod
    def any(x: torch.Tensor) -> bool:
        return bool(x.any())

    @staticmethod
    def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.double() / b.double()

    @staticmethod
    def join(first: Any, x: torch.Tensor, last: Any) -> torch.Tensor:
        parts = ([torch.tensor([first], dtype=torch.int64, device=x.device)] if first is not None else []) + \
            [x.to(torch.int64)] + ([torch.tensor([last], dtype=torch.int64, device=x.device)] if last is not None else [])
        return torch.cat(parts)

    @staticmethod
    def position_sum(lab: torch.Tensor) -> int:
        idx = torch.arange(lab.shape[0], device=lab.device, dtype=torch.int64)
        return int((idx * lab.to(torch.int64)).sum())


_NUMPY, _TORCH = _NumpyOps(), _TorchOps()


def _auc_sorted(ops: Any, s: Any, n_pos: int) -> float:
    """Exact ROC AUC of one image from its sorted packed keys ``s`` (valid pixels only).

    Negatives precede positives among tied values, so the pairs (negative <= positive) number
    ``sum(positions of positives) - P(P-1)/2``; tied pairs are then counted around each place
    where a negative key ``2v`` is directly followed by the positive key ``2v+1`` of the same value.
    """
    n_neg = s.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    lab = s & 1
    pairs_le = ops.position_sum(lab) - n_pos * (n_pos - 1) // 2
    ties = 0
    step = (s[1:] - s[:-1]) == 1
    if ops.any(step):
        bnd = ops.nonzero(step) + 1
        bnd = bnd[lab[bnd] == 1]  # positive key right after the negative key of the same value
        if bnd.shape[0]:
            first = ops.searchsorted(s, s[bnd] - 1, right=False)
            last = ops.searchsorted(s, s[bnd], right=True)
            ties = int(((bnd - first) * (last - bnd)).sum())
    return (2 * pairs_le - ties) / (2 * n_pos * n_neg)


def _ap_sorted(ops: Any, s: Any, n_pos: int) -> float:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` of one image from its sorted keys ``s``,
    the thresholds being the distinct scores from the highest down (scikit-learn's definition).

    With ascending keys, a distinct value starting at index j has ``n - j`` pixels at or above
    it, of which ``TP = P - (positives before j)`` are positive; its own positives are the
    difference to the next higher value's TP."""
    n = s.shape[0]
    if n_pos == 0:
        return float("nan")
    vals = s >> 1
    starts = ops.nonzero(vals[1:] != vals[:-1]) + 1  # every distinct value but the lowest
    cum = ops.cumsum(s & 1)
    # positives at or above each distinct value, ascending (the lowest value: all of them)
    tp = ops.join(n_pos, n_pos - cum[starts - 1], None)
    above = ops.join(n, n - starts, None)  # pixels at or above each value
    # each value's own positives: its TP minus the next higher value's (0 above the top)
    own = tp - ops.join(None, tp[1:], 0)
    return float((ops.ratio(own * tp, above)).sum()) / n_pos


def _f1_best_sorted(ops: Any, s: Any, n_pos: int) -> float:
    """Best F1 over the thresholds "score >= v", v every distinct score, from sorted keys ``s``."""
    n = s.shape[0]
    if n_pos == 0:
        return float("nan")
    vals = s >> 1
    starts = ops.nonzero(vals[1:] != vals[:-1]) + 1  # first index of every distinct value but the lowest
    cum = ops.cumsum(s & 1)
    pos_before = cum[starts - 1]
    tp = n_pos - pos_before
    f1 = ops.ratio(2 * tp, (n - starts) + n_pos)
    best = float(f1.max()) if f1.shape[0] else 0.0
    return max(best, 2 * n_pos / (n + n_pos))  # the lowest value as threshold: everything positive
