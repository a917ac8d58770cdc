"""Optimizer parameter groups and the learning-rate schedule (warm-up, then cosine)."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

logger = logging.getLogger("IMDLBenCo.engine")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: weight decay on weights, none on norms, biases and other 1-D params.

    Names listed by a model's ``no_weight_decay()`` (timm convention, e.g. position embeddings)
    are also excluded from decay.
    """
    skip = set()
    if hasattr(model, "no_weight_decay"):
        try:
            skip = set(model.no_weight_decay())
        except TypeError as err:
            logger.warning("%s.no_weight_decay() could not be called (%s); every weight gets weight decay",
                           type(model).__name__, err)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias") or name in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class WarmupCosineSchedule:
    """Per-iteration learning rate: linear warm-up over ``warmup_epochs``, cosine to ``min_lr``.

    ``step(epoch_float)`` sets the lr of every param group (times its ``lr_scale`` if it has
    one) for a fractional epoch ``epoch + i / iters_per_epoch``. The same formula as
    IMDL-BenCo's ``adjust_learning_rate``, as an object with a state dict for checkpoints.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, min_lr: float,
                 warmup_epochs: float, epochs: int) -> None:
        self.optimizer = optimizer
        self.lr = float(lr)
        self.min_lr = float(min_lr)
        self.warmup_epochs = float(warmup_epochs)
        self.epochs = int(epochs)
        self.last_epoch_float = 0.0

    def lr_at(self, epoch_float: float) -> float:
        if epoch_float < self.warmup_epochs:
            return self.lr * epoch_float / self.warmup_epochs
        span = max(self.epochs - self.warmup_epochs, 1e-8)
        progress = min(max((epoch_float - self.warmup_epochs) / span, 0.0), 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def step(self, epoch_float: float) -> float:
        lr = self.lr_at(epoch_float)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.last_epoch_float = float(epoch_float)
        return lr

    def state_dict(self) -> dict[str, float]:
        return {"lr": self.lr, "min_lr": self.min_lr, "warmup_epochs": self.warmup_epochs,
                "epochs": self.epochs, "last_epoch_float": self.last_epoch_float}

    def load_state_dict(self, state: dict[str, float]) -> None:
        # lr/min_lr/epochs come from the command line of the resumed run (they may be changed
        # on purpose, e.g. more epochs); only the position is restored.
        self.last_epoch_float = float(state.get("last_epoch_float", 0.0))


def resolve_lr(lr: float | None, blr: float, batch_size: int, accum_iter: int, world_size: int) -> float:
    """``lr`` if given, else ``blr × effective batch / 256`` (effective = batch × accum × ranks)."""
    if lr is not None:
        return float(lr)
    return float(blr) * batch_size * accum_iter * world_size / 256.0

