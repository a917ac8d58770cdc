"""Evaluator base class: states that reduce once, at ``compute()``, across processes.

A state is either a *sum* state (a tensor added element-wise over batches and over processes:
confusion counts, histograms) or a *cat* state (a list of 1-D tensors concatenated over batches
and, in rank order, over processes: per-image values, image scores). ``update`` only touches
local states; ``compute`` gathers them once (when a ``torch.distributed`` process group with more
than one process is initialised) without changing the local states, so calling ``compute`` twice
gives the same value and never counts a sample twice.

Why our own base class rather than ``torchmetrics.Metric``: the pixel metrics share one
preparation per batch (thresholding, one sort) across evaluator objects through a small cache
(:mod:`._prepare`), per-image values must be exact float64 rationals from integer counts, and
the list states of torchmetrics would keep every pixel for an exact AUC. A 150-line class does
what we need without a dependency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ._prepare import BatchCache

__all__ = ["Evaluator", "is_distributed", "gather_cat", "reduce_sums"]


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _comm_device() -> torch.device:
    """Device the collectives run on: CUDA for NCCL, CPU for gloo (and anything else)."""
    import torch.distributed as dist

    if "nccl" in str(dist.get_backend()).lower() and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_sums(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Element-wise sums over all processes (one all-reduce per dtype); inputs are not changed."""
    import torch.distributed as dist

    if not is_distributed() or not tensors:
        return [t.clone() for t in tensors]
    dev = _comm_device()
    out: list[torch.Tensor | None] = [None] * len(tensors)
    for dtype in sorted({t.dtype for t in tensors}, key=str):
        idx = [i for i, t in enumerate(tensors) if t.dtype == dtype]
        flat = torch.cat([tensors[i].reshape(-1).to(dev) for i in idx])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for i in idx:
            n = tensors[i].numel()
            out[i] = flat[offset:offset + n].reshape(tensors[i].shape).to(tensors[i].device)
            offset += n
    return out  # type: ignore[return-value]


def gather_cat(local: torch.Tensor) -> torch.Tensor:
    """Concatenate ``local`` (N_r, ...) from every process in rank order; N_r may differ.

    Sizes are exchanged first, every tensor is padded to the largest size for ``all_gather`` and
    trimmed afterwards, so nothing is duplicated or dropped.
    """
    import torch.distributed as dist

    if not is_distributed():
        return local
    dev = _comm_device()
    world = dist.get_world_size()
    n_local = torch.tensor([local.shape[0]], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n_local) for _ in range(world)]
    dist.all_gather(sizes, n_local)
    counts = [int(s.item()) for s in sizes]
    n_max = max(counts)
    padded = torch.zeros((n_max,) + tuple(local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local.to(dev)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(local.device)


def mean_or_nan(values: torch.Tensor) -> float:
    """Exactly rounded mean (``math.fsum``, independent of order and batching); NaN when empty."""
    vals = values.detach().double().cpu().tolist()
    return math.fsum(vals) / len(vals) if vals else float("nan")


class Evaluator:
    """Base class of every evaluator.

    Subclasses declare states in ``__init__`` with :meth:`add_sum_state` / :meth:`add_cat_state`,
    fill them in :meth:`update` with :meth:`accumulate` / :meth:`append`, and turn the reduced
    states into numbers in :meth:`_compute`. ``name`` is the prefix of every result key.
    """

    name: str = "evaluator"

    def __init__(self) -> None:
        self._sum_defaults: dict[str, torch.Tensor] = {}
        self._cat_dtypes: dict[str, torch.dtype] = {}
        self._cat_widths: dict[str, int | None] = {}
        self._sums: dict[str, torch.Tensor] = {}
        self._cats: dict[str, list[torch.Tensor]] = {}
        #: the prepared-batch cache, own or shared with other evaluators (``share_batch_cache``)
        self._batch_cache = BatchCache()

    # ------------------------------------------------------------------ states
    def add_sum_state(self, key: str, default: torch.Tensor) -> None:
        """A tensor state summed over batches and processes (e.g. int64 confusion counts)."""
        self._sum_defaults[key] = default.detach().clone()
        self._sums[key] = default.detach().clone()

    def add_cat_state(self, key: str, dtype: torch.dtype, width: int | None = None) -> None:
        """A state concatenated over batches and processes (e.g. per-image values): 1-D, or rows
        of ``width`` values (e.g. per-image confusion counts, ``width=4``)."""
        self._cat_dtypes[key] = dtype
        self._cat_widths[key] = width
        self._cats[key] = []

    def accumulate(self, key: str, value: torch.Tensor) -> None:
        """Add ``value`` to a sum state; the state follows the device of the incoming data."""
        state = self._sums[key]
        if state.device != value.device:
            state = state.to(value.device)
        self._sums[key] = state + value.to(state.dtype)

    def append(self, key: str, value: torch.Tensor) -> None:
        """Append ``value`` to a cat state (kept on its device): 1-D values, or (n, width) rows."""
        width = self._cat_widths.get(key)
        shape = (-1,) if width is None else (-1, width)
        self._cats[key].append(value.detach().reshape(shape).to(self._cat_dtypes[key]))

    def reset(self) -> None:
        """Forget everything seen so far (call between test sets or epochs)."""
        self._batch_cache.clear()
        self._sums = {k: v.clone() for k, v in self._sum_defaults.items()}
        self._cats = {k: [] for k in self._cat_dtypes}

    def _local_cat(self, key: str) -> torch.Tensor:
        parts = self._cats[key]
        if not parts:
            width = self._cat_widths.get(key)
            return torch.zeros((0,) if width is None else (0, width), dtype=self._cat_dtypes[key])
        dev = parts[0].device
        return torch.cat([p.to(dev) for p in parts])

    def synced_states(self, sync: bool = True) -> dict[str, torch.Tensor]:
        """All states, reduced over processes when ``sync`` (local states are left as they are)."""
        keys = list(self._sums)
        summed = reduce_sums([self._sums[k] for k in keys]) if sync else [self._sums[k] for k in keys]
        states = dict(zip(keys, summed))
        for k in self._cats:
            local = self._local_cat(k)
            states[k] = gather_cat(local) if sync else local
        return states

    # ------------------------------------------------------------------ API
    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        """Add one batch: ``outputs`` is the model output dict, ``batch`` the batch dict."""
        raise NotImplementedError

    def compute(self, sync: bool = True) -> dict[str, float]:
        """Result keys → values over everything seen by every process (same on every rank).

        Under ``torch.distributed`` every process must call it (it runs collectives), unless
        ``sync=False``, which gives this process's own values without communicating.
        """
        return self.compute_with_states(sync)[0]

    def compute_with_states(self, sync: bool = True) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """:meth:`compute`'s values and the reduced states they came from (what :meth:`resample`
        takes), with one round of communication."""
        self._batch_cache.clear()
        states = self.synced_states(sync)
        return {k: float(v) for k, v in self._compute(states).items()}, states

    def _compute(self, states: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def resample(self, states: dict[str, torch.Tensor], weights: Any) -> dict[str, Any]:
        """Each result key's value under bootstrap resamples of the images.

        ``states``: what :meth:`compute_with_states` returned; ``weights``: an (R, N) integer
        NumPy array, how many times each of the N images (in dataset order) is drawn in each of R
        resamples. Returns ``{key: (R,) float64 array}`` for the keys that can be resampled; the
        default, for an evaluator that keeps no per-image states, is ``{}`` (no interval).
        """
        return {}

    def definitions(self) -> dict[str, str]:
        """Result key → one-line definition (aggregation, threshold, which images count).

        The default names the evaluator and its docstring's first line; built-in evaluators
        say exactly how each key is computed."""
        doc = (type(self).__doc__ or "").strip().splitlines()
        summary = doc[0].strip() if doc else ""
        return {self.name: f"{type(self).__name__}" + (f": {summary}" if summary else " (no definition given)")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
