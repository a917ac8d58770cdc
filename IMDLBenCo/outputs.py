"""The model output contract, defined once: what a model's ``forward`` returns and what counts
as a positive prediction. The engine (``check_model_output``), the evaluators and the report
all use these rules, so they cannot disagree.

``forward`` returns a dict with ``backward_loss`` (0-dim tensor), ``pred_mask`` ((B,1,H,W)
probabilities in [0, 1], or None), ``pred_label`` ((B,) probabilities in [0, 1], or None; a (B,1)
tensor is refused everywhere: against (B,) labels it would broadcast to B×B), ``visual_loss``
(dict of 0-dim tensors) and ``visual_image`` (dict of (B,C,H,W) tensors). A pixel or an image is
predicted manipulated when its probability is strictly above the threshold (0.5 by default),
as IMDL-BenCo's evaluators count it.

Nothing here imports torch at module level (``import IMDLBenCo`` stays light).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["OUTPUT_KEYS", "DEFAULT_THRESHOLD", "is_positive", "probability_problem", "label_shape_problem",
           "check_model_output"]

OUTPUT_KEYS = ("backward_loss", "pred_mask", "pred_label", "visual_loss", "visual_image")
#: the threshold every metric and picture uses unless told otherwise
DEFAULT_THRESHOLD = 0.5

CONTRACT = ("forward() must return a dict with 'backward_loss' (0-dim tensor), 'pred_mask' ((B,1,H,W) "
            "probabilities in [0,1], or None), 'pred_label' ((B,) probabilities in [0,1], or None), "
            "'visual_loss' (dict of 0-dim tensors), 'visual_image' (dict of (B,C,H,W) tensors)")


def is_positive(score: Any, threshold: float = DEFAULT_THRESHOLD) -> Any:
    """``score > threshold``: the one rule for "predicted manipulated" (tensors, arrays, floats)."""
    return score > threshold


def probability_problem(tensor: Any) -> str | None:
    """What is wrong with ``tensor`` as probabilities (not floating point, NaN, outside [0, 1]),
    or None. One pass over the data and one copy of two numbers to the host."""
    import torch

    if not torch.is_floating_point(tensor):
        return f"has dtype {tensor.dtype}; expected floating-point probabilities in [0, 1]"
    if tensor.numel() == 0:
        return None
    if tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64):
        arr = tensor.detach().numpy()  # numpy's single-threaded min/max: no thread start-up on small CPUs
        lo, hi = float(arr.min()), float(arr.max())
    else:
        lo, hi = torch.stack(list(torch.aminmax(tensor.detach()))).float().tolist()
    if lo != lo or hi != hi:
        return ("contains NaN; expected probabilities in [0, 1] (check the model for numerical problems, "
                "e.g. a too high learning rate)")
    if lo < 0.0 or hi > 1.0:
        return (f"has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]: these look like logits; return "
                f"torch.sigmoid(...) from forward (and compute the loss on the logits)")
    return None


def label_shape_problem(pred_label: Any, batch_size: int | None) -> str | None:
    """What is wrong with the shape of ``pred_label`` for a batch of ``batch_size``, or None."""
    if pred_label.ndim == 2 and pred_label.shape[1] == 1:
        return (f"has shape {tuple(pred_label.shape)}; expected (B,): use pred_label.squeeze(1) ((B,1) "
                "against labels of shape (B,) broadcasts to B×B in the metrics)")
    if pred_label.ndim != 1 or (batch_size is not None and pred_label.shape[0] != batch_size):
        return f"has shape {tuple(pred_label.shape)}; expected ({batch_size if batch_size is not None else 'B'},), one probability per image"
    return None


def check_model_output(out: Any, batch: Mapping[str, Any], training: bool, where: str = "") -> Any:
    """Validate a model's output dict against the batch; return it unchanged.

    In training ``backward_loss`` must be a 0-dim tensor that requires grad; in evaluation at
    least one of ``pred_mask`` / ``pred_label`` must be given. Raises
    :class:`~IMDLBenCo.errors.ModelOutputError` naming the key, what was found and what was
    expected; ``where`` (e.g. the batch and its images) is quoted in the message.
    """
    import torch

    from .errors import ModelOutputError

    def fail(msg: str) -> None:
        raise ModelOutputError(f"model output{f' ({where})' if where else ''}: {msg}. {CONTRACT}")

    if not isinstance(out, Mapping):
        fail(f"forward() returned {type(out).__name__}, not a dict")
    image = batch.get("image")
    batch_size = int(image.shape[0]) if isinstance(image, torch.Tensor) else None

    if training:
        if "backward_loss" not in out or out["backward_loss"] is None:
            fail("'backward_loss' is missing; training needs a loss to back-propagate")
        loss = out["backward_loss"]
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            fail(f"'backward_loss' is {shape}; expected a 0-dim tensor (use .mean())")
        if not loss.requires_grad:
            fail("'backward_loss' does not require grad: it was computed outside autograd "
                 "(detached, or under torch.no_grad())")

    pred_mask = out.get("pred_mask")
    pred_label = out.get("pred_label")
    if not training and pred_mask is None and pred_label is None:
        fail("both 'pred_mask' and 'pred_label' are missing or None; evaluation needs at least one")

    if pred_mask is not None:
        if not isinstance(pred_mask, torch.Tensor) or pred_mask.ndim != 4 or pred_mask.shape[1] != 1:
            shape = tuple(pred_mask.shape) if isinstance(pred_mask, torch.Tensor) else type(pred_mask).__name__
            fail(f"'pred_mask' has shape {shape}; expected (B, 1, H, W)")
        if batch_size is not None and pred_mask.shape[0] != batch_size:
            fail(f"'pred_mask' has batch size {pred_mask.shape[0]}, the input has {batch_size}")
        mask = batch.get("mask")
        if isinstance(mask, torch.Tensor) and tuple(pred_mask.shape[-2:]) != tuple(mask.shape[-2:]):
            fail(f"'pred_mask' is {tuple(pred_mask.shape[-2:])} pixels, the mask is {tuple(mask.shape[-2:])}; "
                 "upsample the prediction (F.interpolate) to the mask size")
        problem = probability_problem(pred_mask)
        if problem:
            fail(f"'pred_mask' {problem}")

    if pred_label is not None:
        if not isinstance(pred_label, torch.Tensor):
            fail(f"'pred_label' is {type(pred_label).__name__}; expected a (B,) tensor")
        problem = label_shape_problem(pred_label, batch_size) or probability_problem(pred_label)
        if problem:
            fail(f"'pred_label' {problem}")

    visual_loss = out.get("visual_loss")
    if visual_loss is not None:
        if not isinstance(visual_loss, Mapping):
            fail(f"'visual_loss' is {type(visual_loss).__name__}; expected a dict of 0-dim tensors")
        for key, value in visual_loss.items():
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                fail(f"'visual_loss'['{key}'] has shape {tuple(value.shape)}; expected a scalar")
    visual_image = out.get("visual_image")
    if visual_image is not None:
        if not isinstance(visual_image, Mapping):
            fail(f"'visual_image' is {type(visual_image).__name__}; expected a dict of (B,C,H,W) tensors")
        for key, value in visual_image.items():
            if value is not None and (not isinstance(value, torch.Tensor) or value.ndim not in (3, 4)):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                fail(f"'visual_image'['{key}'] has shape {shape}; expected (B,C,H,W)")
    return out
