"""Image-level scores for localisation-only models: ``pred_label`` derived from ``pred_mask``.

Many IMDL models (and every model trained without ``--if_predict_label``) give only a mask, so
image-level metrics (ImageF1, ImageAUC, ImageMCC, ...) have nothing to score. The usual remedy in
the field is to read the mask: the image is as manipulated as its most manipulated pixel
(``max``) or as the mean of its ``k`` most manipulated pixels (``topk``, less sensitive to one
stray pixel).

Scripts: ``--label_from_mask max|topk`` (``--label_topk K``) on any model. Python::

    model = MODELS.get("IML_ViT")(...)
    attach_label_from_mask(model, "topk", topk=100)   # model(**batch) now also returns pred_label

The rule is attached as a forward hook, so the model keeps its class, its state-dict keys (its
checkpoints are unchanged) and works under DDP. Only pixels inside ``shape_mask`` (the content of
a zero-padded image) are read. A model that gives its own ``pred_label`` has it replaced (logged
once): the option says which score the user wants evaluated.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger("IMDLBenCo")

#: the rules ``--label_from_mask`` accepts
LABEL_FROM_MASK_MODES = ("max", "topk")


def label_from_mask(pred_mask: torch.Tensor, mode: str = "max", topk: int = 100,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) image scores from a (B,1,H,W) (or (B,H,W)) probability map.

    Args:
        pred_mask: per-pixel probabilities.
        mode: ``max`` (the highest pixel) or ``topk`` (mean of the ``topk`` highest pixels; all of
            them when an image has fewer valid pixels).
        topk: number of pixels averaged by ``topk``.
        valid: optional map of the same size, non-zero where pixels count (``shape_mask``).
    """
    if mode not in LABEL_FROM_MASK_MODES:
        raise ValueError(f"label_from_mask: mode {mode!r}; expected one of {LABEL_FROM_MASK_MODES}")
    if int(topk) < 1:
        raise ValueError(f"label_from_mask: topk {topk}; expected 1 or more pixels")
    flat = pred_mask.detach().float().reshape(pred_mask.shape[0], -1)
    if valid is not None:
        keep = valid.reshape(valid.shape[0], -1) > 0
        if keep.shape != flat.shape:
            raise ValueError(f"label_from_mask: shape_mask {tuple(valid.shape)} does not match pred_mask "
                             f"{tuple(pred_mask.shape)}")
        flat = flat.masked_fill(~keep, float("-inf"))
        counts = keep.sum(dim=1)
    else:
        counts = torch.full((flat.shape[0],), flat.shape[1], device=flat.device)
    if mode == "max":
        out = flat.max(dim=1).values
    else:
        k = min(int(topk), flat.shape[1])
        top = flat.topk(k, dim=1).values  # descending
        n = counts.clamp(max=k).clamp(min=1)
        taken = torch.arange(k, device=flat.device)[None, :] < n[:, None]
        out = torch.where(taken, top, torch.zeros_like(top)).sum(dim=1) / n
    # an image with no valid pixel scores 0 (nothing in it was predicted manipulated)
    return torch.where(counts > 0, out, torch.zeros_like(out)).clamp(0.0, 1.0)


class LabelFromMask:
    """Forward hook that sets ``output["pred_label"] = label_from_mask(output["pred_mask"])``."""

    def __init__(self, mode: str = "max", topk: int = 100) -> None:
        label_from_mask(torch.zeros(1, 1, 1, 1), mode, topk)  # validates mode and topk now
        self.mode, self.topk = mode, int(topk)
        self._told = False

    def __call__(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        if not isinstance(output, dict) or output.get("pred_mask") is None:
            return output  # the engine's output check names what is missing
        if output.get("pred_label") is not None and not self._told:
            self._told = True
            logger.info("%s gives its own pred_label; --label_from_mask %s replaces it with a score read "
                        "from pred_mask", type(module).__name__, self.mode)
        pred_mask = output["pred_mask"]
        valid = kwargs.get("shape_mask")
        if not isinstance(valid, torch.Tensor) or valid.shape[-2:] != pred_mask.shape[-2:]:
            valid = None
        output = dict(output)
        output["pred_label"] = label_from_mask(pred_mask, self.mode, self.topk, valid).to(pred_mask.dtype)
        return output

    def __repr__(self) -> str:
        return f"LabelFromMask(mode={self.mode!r}, topk={self.topk})"


def attach_label_from_mask(model: torch.nn.Module, mode: str | None, topk: int = 100):
    """Make ``model`` return ``pred_label`` read from its ``pred_mask``; returns the hook handle
    (``handle.remove()`` detaches it), or None when ``mode`` is None."""
    if mode is None:
        return None
    return model.register_forward_hook(LabelFromMask(mode, topk), with_kwargs=True)
