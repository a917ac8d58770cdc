"""The model output contract, checked with messages that say what was expected."""

from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from ..errors import ModelOutputError

OUTPUT_KEYS = ("backward_loss", "pred_mask", "pred_label", "visual_loss", "visual_image")


def _fail_at(msg: str, where: str = "") -> None:
    raise ModelOutputError(
        f"model output{f' ({where})' if where else ''}: {msg}. forward() must return a dict with "
        "'backward_loss' (0-dim tensor), 'pred_mask' ((B,1,H,W) probabilities in [0,1], or None), 'pred_label' ((B,) probabilities "
        "in [0,1], or None), 'visual_loss' (dict of 0-dim tensors), 'visual_image' (dict of "
        "(B,C,H,W) tensors)"
    )


def _check_probabilities_at(name: str, tensor: torch.Tensor, where: str = "") -> None:
    if not torch.is_floating_point(tensor):
        _fail_at(f"'{name}' has dtype {tensor.dtype}; expected floating-point probabilities", where)
    if tensor.numel() == 0:
        return
    lo, hi = torch.stack(list(torch.aminmax(tensor.detach()))).float().tolist()  # one pass, one copy to host
    if not (lo == lo and hi == hi):  # NaN
        _fail_at(f"'{name}' contains NaN", where)
    if lo < 0.0 or hi > 1.0:
        _fail_at(
            f"'{name}' has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]: these look like logits; "
            f"return torch.sigmoid(...) as '{name}' (and compute the loss on the logits)", where
        )


def check_model_output(out: Any, batch: Mapping[str, Any], training: bool, where: str = "") -> Dict[str, Any]:
    """Validate a model's output dict against the batch; return it unchanged.

    In training ``backward_loss`` must be a 0-dim tensor; in evaluation at least one of
    ``pred_mask`` / ``pred_label`` must be given. ``pred_mask`` must be (B,1,H,W) like the
    batch's ``mask`` and hold probabilities; ``pred_label`` must be (B,) (not (B,1)).
    Raises :class:`ModelOutputError` naming the key, what was found and what was expected;
    ``where`` (e.g. the batch and its images) is quoted in the message.
    """
    def _fail(msg: str) -> None:
        _fail_at(msg, where)

    def _check_probabilities(name: str, tensor: torch.Tensor) -> None:
        _check_probabilities_at(name, tensor, where)

    if not isinstance(out, Mapping):
        _fail(f"forward() returned {type(out).__name__}, not a dict")
    image = batch.get("image")
    batch_size = int(image.shape[0]) if isinstance(image, torch.Tensor) else None

    if training:
        if "backward_loss" not in out or out["backward_loss"] is None:
            _fail("'backward_loss' is missing; training needs a loss to back-propagate")
        loss = out["backward_loss"]
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            _fail(f"'backward_loss' is {shape}; expected a 0-dim tensor (use .mean())")
        if not loss.requires_grad:
            _fail("'backward_loss' does not require grad: it was computed outside autograd "
                  "(detached, or under torch.no_grad())")

    pred_mask = out.get("pred_mask")
    pred_label = out.get("pred_label")
    if not training and pred_mask is None and pred_label is None:
        _fail("both 'pred_mask' and 'pred_label' are missing or None; evaluation needs at least one")

    if pred_mask is not None:
        if not isinstance(pred_mask, torch.Tensor) or pred_mask.ndim != 4 or pred_mask.shape[1] != 1:
            shape = tuple(pred_mask.shape) if isinstance(pred_mask, torch.Tensor) else type(pred_mask).__name__
            _fail(f"'pred_mask' has shape {shape}; expected (B, 1, H, W)")
        if batch_size is not None and pred_mask.shape[0] != batch_size:
            _fail(f"'pred_mask' has batch size {pred_mask.shape[0]}, the input has {batch_size}")
        mask = batch.get("mask")
        if isinstance(mask, torch.Tensor) and tuple(pred_mask.shape[-2:]) != tuple(mask.shape[-2:]):
            _fail(f"'pred_mask' is {tuple(pred_mask.shape[-2:])} pixels, the mask is {tuple(mask.shape[-2:])}; "
                  "upsample the prediction (F.interpolate) to the mask size")
        _check_probabilities("pred_mask", pred_mask)

    if pred_label is not None:
        if not isinstance(pred_label, torch.Tensor):
            _fail(f"'pred_label' is {type(pred_label).__name__}; expected a (B,) tensor")
        if pred_label.ndim == 2 and pred_label.shape[1] == 1:
            _fail(f"'pred_label' has shape {tuple(pred_label.shape)}; expected (B,): use pred_label.squeeze(1) "
                  "((B,1) against labels of shape (B,) broadcasts to B×B in the metrics)")
        if pred_label.ndim != 1 or (batch_size is not None and pred_label.shape[0] != batch_size):
            _fail(f"'pred_label' has shape {tuple(pred_label.shape)}; expected ({batch_size},), one probability "
                  "per image")
        _check_probabilities("pred_label", pred_label)

    visual_loss = out.get("visual_loss")
    if visual_loss is not None:
        if not isinstance(visual_loss, Mapping):
            _fail(f"'visual_loss' is {type(visual_loss).__name__}; expected a dict of 0-dim tensors")
        for key, value in visual_loss.items():
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                _fail(f"'visual_loss'['{key}'] has shape {tuple(value.shape)}; expected a scalar")
    visual_image = out.get("visual_image")
    if visual_image is not None:
        if not isinstance(visual_image, Mapping):
            _fail(f"'visual_image' is {type(visual_image).__name__}; expected a dict of (B,C,H,W) tensors")
        for key, value in visual_image.items():
            if value is not None and (not isinstance(value, torch.Tensor) or value.ndim not in (3, 4)):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                _fail(f"'visual_image'['{key}'] has shape {shape}; expected (B,C,H,W)")
    return out  # type: ignore[return-value]
