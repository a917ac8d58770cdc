"""Typed settings that the library functions take, made once from a script's options.

The five entry points parse the command line into an ``argparse.Namespace``; everything below
them (datasets, loaders, the forward call, evaluation, complexity) takes these small frozen
objects or plain keywords instead, so a renamed option fails loudly where the object is made
(:meth:`DataConfig.from_args` reads every attribute by name) rather than silently falling back to
a default deep inside a builder, and the functions can be called from a notebook without a
namespace.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

__all__ = ["DataConfig", "CallConfig", "TrainConfig"]


@dataclass(frozen=True)
class DataConfig:
    """How samples are made and loaded.

    Attributes:
        image_size: side S of the S×S network input.
        padding: zero-pad to S×S (else resize to S×S).
        keep_size: neither: each image keeps its size (``--sliding_window``; one image per batch).
        edge_mask_width: size of the edge band's cross kernel (None: no ``edge_mask``).
        num_workers: DataLoader worker processes per rank.
        pin_memory: pin loader memory (effective on CUDA only).
        seed: seed of the shuffling, the workers and a BalancedDataset's draw.
        check_files: check every file's header before the run (``--skip_data_check`` turns it off).
        max_pixels: the largest image decoded (``--max_pixels``; checked from the file's header).
    """

    image_size: int = 512
    padding: bool = False
    keep_size: bool = False
    edge_mask_width: int | None = None
    num_workers: int = 0
    pin_memory: bool = True
    seed: int = 42
    check_files: bool = True
    max_pixels: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DataConfig:
        return cls(image_size=args.image_size, padding=bool(args.if_padding),
                   keep_size=bool(getattr(args, "sliding_window", False)), edge_mask_width=args.edge_mask_width,
                   num_workers=args.num_workers, pin_memory=bool(args.pin_mem), seed=args.seed,
                   check_files=not args.skip_data_check, max_pixels=args.max_pixels)


@dataclass(frozen=True)
class CallConfig:
    """How the model is called.

    Attributes:
        predict_label: passed to ``forward`` as ``if_predict_label`` (``--if_predict_label``).
        use_amp: mixed precision on CUDA (``--if_not_amp`` turns it off).
        amp_dtype: ``float16`` (with a gradient scaler in training) or ``bfloat16`` (``--amp_dtype``).
        keep_train_mode: evaluate in train mode (``--no_model_eval``, MVSS-Net's setting).
        label_from_mask: ``max``/``topk``: ``pred_label`` read from ``pred_mask``
            (``--label_from_mask``, :mod:`IMDLBenCo.modules.label_from_mask`); None: the model's own.
        label_topk: pixels averaged by ``topk`` (``--label_topk``).
        window: tile side of sliding-window inference (``--sliding_window`` at ``--image_size``);
            None: the model sees the dataset's padded/resized images.
        window_overlap: fraction of a tile shared with its neighbour (``--window_overlap``).
    """

    predict_label: bool = False
    use_amp: bool = True
    amp_dtype: str = "float16"
    keep_train_mode: bool = False
    label_from_mask: str | None = None
    label_topk: int = 100
    window: int | None = None
    window_overlap: float = 0.25

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CallConfig:
        return cls(predict_label=bool(args.if_predict_label), use_amp=not args.if_not_amp,
                   amp_dtype=args.amp_dtype,
                   keep_train_mode=bool(args.no_model_eval), label_from_mask=args.label_from_mask,
                   label_topk=args.label_topk,
                   window=args.image_size if getattr(args, "sliding_window", False) else None,
                   window_overlap=float(getattr(args, "window_overlap", 0.25)))


@dataclass(frozen=True)
class TrainConfig:
    """What the training loop reads: each field is the ``train.py`` option of the same name
    (:mod:`IMDLBenCo.runoptions` defines them; a test checks every field is one)."""

    model: str
    data_path: str
    test_data_path: str | None
    val_data_path: str | None
    val_split: float | None
    output_dir: str
    epochs: int
    start_epoch: int
    batch_size: int
    test_batch_size: int
    lr: float | None
    blr: float
    min_lr: float
    weight_decay: float
    warmup_epochs: float
    accum_iter: int
    clip_grad: float | None
    test_period: int
    save_period: int
    best_metric: str | None
    best_metric_mode: str
    log_per_epoch_count: int
    resume: str
    skip_nonfinite_loss: bool
    save_optimizer: bool
    bootstrap: int
    seed: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
