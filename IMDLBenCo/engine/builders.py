"""The steps every script shares: model, post-function, datasets, loaders, DDP, batches.

Scripts call these functions instead of repeating the setup (IMDL-BenCo's five scripts each
had their own copy, and they drifted apart).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .config import CallConfig, DataConfig
from .runtime import Runtime

logger = logging.getLogger("IMDLBenCo.engine")


# ------------------------------------------------------------------------------- model
def build_model(name: str, model_kwargs: dict[str, Any]) -> torch.nn.Module:
    """The registered model ``name`` built with its parsed constructor options.

    Nothing is downloaded while it is built (:mod:`IMDLBenCo.modules.downloads`): a constructor
    that asks for pretrained weights from the network gets one error naming its line and the fix.
    """
    from ..modules.downloads import download_refused, no_downloads
    from ..registry import MODELS

    model_cls = MODELS.get(name)
    try:
        with no_downloads():
            model = model_cls(**model_kwargs)
    except Exception as err:
        unknown = _unknown_timm_model(err, name, model_kwargs)
        if unknown is not None:
            raise unknown from None
        refused = download_refused(err, name)
        if refused is None:
            raise
        raise refused from None
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"MODELS['{name}'] returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _unknown_timm_model(err: Exception, name: str, model_kwargs: dict[str, Any]) -> Exception | None:
    """One UsageError for timm's "Unknown model (x)": which option named it and how to list names."""
    import re

    found = re.match(r"Unknown model \((.+)\)", str(err)) if isinstance(err, RuntimeError) else None
    if found is None:
        return None
    from ..errors import UsageError

    bad = found.group(1)
    option = next((k for k, v in model_kwargs.items() if v == bad), None)
    where = f"--{option} {bad}" if option else f"the timm model {bad!r}"
    try:
        import difflib

        import timm

        close = difflib.get_close_matches(bad, timm.list_models(), n=3)
    except Exception:  # a hint only
        close = []
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return UsageError(f"model {name}: {where}: timm has no model of that name; {hint}list them with "
                      f"python -c \"import timm; print(timm.list_models('*{bad.split('_')[0]}*'))\"")


def import_modules(modules: Sequence[str]) -> None:
    """``--import MODULE``: import each (from the working directory too), so its models are registered."""
    import importlib

    from ..errors import UsageError

    for module in modules:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UsageError(f"--import {module}: cannot import it ({err}); run from the folder that holds "
                             f"{module}.py") from err


def find_post_function(model_name: str, model_kwargs: dict[str, Any] | None = None) -> Callable | None:
    """The post-function registered as ``<model name lower-cased>_post_func`` (e.g. CAT-Net's).

    Keyword parameters of the post-function that share a name with one of the model's options are
    bound to that option's value (``Cat_Net --dct_source benco`` reaches ``cat_net_post_func``), so
    the model and its data preparation cannot disagree. The result is a ``functools.partial`` of a
    module-level function and so can be sent to data-loader workers.
    """
    import functools
    import inspect

    from ..registry import POSTFUNCS

    wanted = f"{model_name.lower()}_post_func"
    for name in POSTFUNCS.list():
        if name.lower() == wanted:
            func = POSTFUNCS.get(name)
            params = inspect.signature(func).parameters
            bound = {k: v for k, v in (model_kwargs or {}).items()
                     if k in params and params[k].kind in (inspect.Parameter.KEYWORD_ONLY,
                                                           inspect.Parameter.POSITIONAL_OR_KEYWORD)
                     and k != next(iter(params))}
            return functools.partial(func, **bound) if bound else func
    return None


def prepare_model(model: torch.nn.Module, runtime: Runtime, train: bool,
                  find_unused_parameters: bool = False) -> torch.nn.Module:
    """Move ``model`` to the device; for distributed training wrap it in DDP (SyncBN on CUDA).

    Evaluation always runs on the unwrapped model (see :func:`evaluation_mode`), so only
    training needs the wrapper.
    """
    model.to(runtime.device)
    if train and runtime.distributed:
        if runtime.is_cuda:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp_kwargs = {"find_unused_parameters": bool(find_unused_parameters)}
        if runtime.is_cuda:
            ddp_kwargs["device_ids"] = [runtime.device.index]
        model = torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
    return model


@contextmanager
def evaluation_mode(model: torch.nn.Module, keep_train_mode: bool) -> Iterator[torch.nn.Module]:
    """Put ``model`` (unwrapped) in eval mode (or train mode with ``keep_train_mode``) for testing.

    With ``keep_train_mode`` SyncBatchNorm layers use local batch statistics while testing:
    ranks hold different numbers of test batches (exact sharding), so a synchronising layer
    would wait for a rank that has finished.
    """
    from .checkpoint import unwrap_model

    inner = unwrap_model(model)
    was_training = inner.training
    inner.train(keep_train_mode)
    patched = []
    if keep_train_mode:
        from torch.nn.modules.batchnorm import _BatchNorm

        for module in inner.modules():
            if isinstance(module, torch.nn.SyncBatchNorm):
                module.forward = _BatchNorm.forward.__get__(module)  # local statistics
                patched.append(module)
    try:
        yield inner
    finally:
        for module in patched:
            del module.forward
        inner.train(was_training)


# ----------------------------------------------------------------------------- datasets
def dataset_kwargs(data: DataConfig, transform: Any = None, post_func: Callable | None = None,
                   defer_normalization: bool = True) -> dict[str, Any]:
    """The dataset constructor keywords of ARCHITECTURE.md for ``data``."""
    return dict(
        is_padding=data.padding and not data.keep_size,
        is_resizing=not data.padding and not data.keep_size,
        keep_size=data.keep_size,
        output_size=(data.image_size, data.image_size),
        common_transforms=transform,
        edge_width=data.edge_mask_width,
        post_funcs=post_func,
        defer_normalization=defer_normalization,
        max_pixels=data.max_pixels,
    )


def check_before_run(dataset: Dataset, path: str) -> None:
    """Refuse a dataset with broken pairs before any work starts (headers only: fast).

    Missing or unreadable files and image/mask size mismatches among the pairs ``dataset`` lists
    are named in one message. The pairs come from the dataset object, so its folder or JSON file
    is read and validated once (by the class), not a second time here.
    """
    from ..datasets.check import check_pairs
    from ..datasets.io import DatasetError

    errors = [p for p in check_pairs(dataset_pairs(dataset), quick=True, max_pixels=getattr(dataset, "max_pixels", None))
              if p.severity == "error"]
    if errors:
        shown = "\n".join("  " + p.line(path if os.path.isdir(path) else "") for p in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise DatasetError(
            f"{path}: {len(errors)} broken pair(s) found before the run:\n{shown}{more}\n"
            f"Run `benco data check {path}` for the full list and `--write-clean OUT.json` to use only "
            f"the good pairs (or pass --skip_data_check to start anyway)."
        )


def dataset_pairs(dataset: Dataset) -> list[tuple[str, str]]:
    """``[(image path, mask path or "Negative")]`` of a dataset (every sub-dataset of a balanced one)."""
    subs = getattr(dataset, "datasets", None)
    if subs is not None:
        return [pair for sub in subs for pair in dataset_pairs(sub)]
    if getattr(dataset, "packed", False):  # shards (benco data pack): checked when packed, no files to check
        return []
    return list(zip(dataset.image_paths, dataset.mask_paths))


def build_dataset(path: str, data: DataConfig, transform: Any = None, post_func: Callable | None = None,
                  check_files: bool | None = None) -> Dataset:
    """The dataset at ``path`` (Mani folder, Json list, Balanced JSON) with ``data``'s sizing;
    its files are checked (headers) before it is returned when ``check_files`` (default:
    ``data.check_files``; a caller that builds the same dataset again passes False)."""
    from ..datasets import dataset_from_path

    # ``seed`` reaches BalancedDataset only (its per-epoch draw); the others ignore it
    dataset = dataset_from_path(path, seed=data.seed, **dataset_kwargs(data, transform, post_func))
    if data.check_files if check_files is None else check_files:
        check_before_run(dataset, path)
    return dataset


def test_set_paths(path: str) -> dict[str, str]:
    """``{set name: path}`` from a ``test_datasets.json`` or a single dataset path."""
    from ..datasets import load_test_datasets

    return dict(load_test_datasets(path))


test_set_paths.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one


def _seed_worker(worker_id: int) -> None:
    # torch seeds Python's random and torch per worker; NumPy too, from the same base seed
    import random

    import numpy as np

    seed = torch.initial_seed() % (2**32)
    np.random.seed(seed)
    random.seed(seed)


def train_loader(dataset: Dataset, batch_size: int, data: DataConfig, runtime: Runtime) -> DataLoader:
    """Shuffled loader, sharded over ranks; reseed it with :func:`start_epoch` every epoch."""
    from torch.utils.data import DistributedSampler

    from ..datasets.shards import shard_train_sampler

    # shards: each rank reads its own contiguous part of the epoch's shard order (buffer-shuffled)
    sampler = shard_train_sampler(dataset, runtime.world_size, runtime.rank, data.seed)
    if sampler is None:
        sampler = DistributedSampler(dataset, num_replicas=runtime.world_size, rank=runtime.rank,
                                     shuffle=True, seed=data.seed, drop_last=False)
    generator = torch.Generator()
    generator.manual_seed(data.seed)
    # a last partial batch is dropped only when there is at least one full batch
    drop_last = len(sampler) >= batch_size * 2
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=data.num_workers,
        pin_memory=bool(data.pin_memory and runtime.is_cuda), drop_last=drop_last,
        worker_init_fn=_seed_worker, generator=generator,
        persistent_workers=False,  # workers are re-seeded per epoch, which makes --resume exact
    )


def start_epoch(loader: DataLoader, epoch: int, seed: int, rank: int) -> None:
    """Make epoch ``epoch`` of ``loader`` depend only on (seed, epoch, rank): order and augmentation."""
    for part in (loader.sampler, loader.dataset):  # BalancedDataset draws its samples per epoch
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch * 1_009 + rank)


def eval_loader(dataset: Dataset, batch_size: int, data: DataConfig, runtime: Runtime) -> DataLoader:
    """Loader over this rank's exact shard (every sample once over all ranks, nothing dropped).

    Images kept at their own size (``--sliding_window``) cannot be stacked: one per batch."""
    from ..evaluation import EvalSampler

    if data.keep_size and batch_size > 1:
        logger.info("--sliding_window: images keep their own sizes, so each test batch holds one image "
                    "(--test_batch_size %d is not used)", batch_size)
        batch_size = 1

    sampler = EvalSampler(dataset, num_replicas=runtime.world_size, rank=runtime.rank)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=data.num_workers,
        pin_memory=bool(data.pin_memory and runtime.is_cuda), drop_last=False,
        worker_init_fn=_seed_worker,
    )


# ------------------------------------------------------------------------------ batches
def batch_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of ``batch`` moved to ``device`` and normalised (deferred uint8 → float)."""
    from ..datasets import normalize_batch

    moved = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    return normalize_batch(moved)


def autocast(runtime: Runtime, enabled: bool, dtype: str = "float16"):
    """Mixed precision (``dtype``: float16 or bfloat16) on CUDA when enabled; a no-op context elsewhere."""
    return torch.autocast(device_type=runtime.device.type, dtype=getattr(torch, dtype),
                          enabled=bool(enabled and runtime.is_cuda))


def forward(model: torch.nn.Module, batch: dict[str, Any], predict_label: bool = False) -> dict[str, Any]:
    """Call the model with the batch by keyword (plus ``if_predict_label``), as IMDL-BenCo does.

    The flag is also passed under IMDL-BenCo's misspelled keyword ``if_predcit_label``, which
    models ported from it (CAT-Net) read.
    """
    flag = bool(predict_label)
    return model(**batch, if_predict_label=flag, if_predcit_label=flag)


def run_model(model: torch.nn.Module, batch: dict[str, Any], call: CallConfig) -> dict[str, Any]:
    """The model's outputs for an evaluation batch under ``call``: one call, or sliding-window
    tiles blended (``call.window``); with ``call.label_from_mask`` the label of a slid image is
    read from its blended mask."""
    if call.window is None:
        return forward(model, batch, call.predict_label)
    from ..modules.label_from_mask import label_from_mask
    from .sliding import black_pixel, sliding_window_forward

    out = sliding_window_forward(lambda tile: forward(model, tile, call.predict_label), batch, call.window,
                                 call.window_overlap, black_pixel(batch["image"].device))
    if call.label_from_mask is not None and out.get("pred_mask") is not None:
        out["pred_label"] = label_from_mask(out["pred_mask"], call.label_from_mask, call.label_topk)
    return out


def attach_call_hooks(model: torch.nn.Module, call: CallConfig) -> torch.nn.Module:
    """What ``call`` adds to the model itself (``--label_from_mask``: a forward hook); returns it."""
    from ..modules.label_from_mask import attach_label_from_mask

    attach_label_from_mask(model, call.label_from_mask, call.label_topk)
    return model


def log_run_header(runtime: Runtime, script: str, model: str, model_kwargs: dict[str, Any]) -> None:
    logger.info("%s: model %s on %s (%d process%s%s)", script, model, runtime.device,
                runtime.world_size, "es" if runtime.world_size > 1 else "",
                f", backend {runtime.backend}" if runtime.backend else "")
    if model_kwargs:
        logger.info("model options: %s", ", ".join(f"{k}={v!r}" for k, v in model_kwargs.items()))


def batch_where(index: int, batch: dict[str, Any], shown: int = 3) -> str:
    """``batch 4 (a.png, b.png, ...)``: where in a loop a problem was met, for messages."""
    names = names_of(batch)
    listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    return f"batch {index}" + (f" ({listed})" if listed else "")


def names_of(batch: dict[str, Any]) -> list[str]:
    names = batch.get("name")
    if names is None:
        return []
    return list(names) if isinstance(names, (list, tuple)) else [str(names)]
