"""The one inference loop: every evaluation (the test during training, ``test.py``, the robustness
grid, saving masks, class-activation maps) runs the model over this rank's exact shard of a
loader and hands each batch's outputs to *sinks*.

A sink is anything with ``update(outputs, batch)``: the evaluators (metrics), the
:class:`~IMDLBenCo.evaluation.per_image.PerImageRecorder` (per-image evidence),
:class:`MaskWriter` (``test_save_images.py``), the CAM writer. ``predict`` replaces the model
call when a sink needs more than the outputs (CAMs compute gradients); the loop still checks
every batch's outputs against the contract.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..outputs import check_model_output
from .builders import autocast, batch_to_device, batch_where, evaluation_mode, names_of, run_model
from .config import CallConfig
from .runtime import Runtime

logger = logging.getLogger("IMDLBenCo.engine")

__all__ = ["run_inference", "MaskWriter", "float_outputs"]


def float_outputs(out: Mapping[str, Any]) -> dict[str, Any]:
    """Predictions made under autocast (float16/bfloat16) as float32, so metrics see full precision."""
    out = dict(out)
    for key in ("pred_mask", "pred_label"):
        value = out.get(key)
        if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
            out[key] = value.float()
    return out


def run_inference(model: torch.nn.Module, loader: DataLoader, runtime: Runtime, call: CallConfig | None,
                  sinks: Iterable[Any], *, desc: str = "test",
                  predict: Callable[[torch.nn.Module, dict[str, Any]], dict[str, Any]] | None = None,
                  grad: bool = False, on_first_batch: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
                  ) -> int:
    """Run ``model`` over this rank's shard of ``loader``; give every sink each batch's outputs.

    ``call``: how the model is called (AMP, train mode, sliding window, label from mask);
    ``predict(model, batch) -> outputs`` replaces that call; ``grad``: keep autograd on (CAMs);
    ``on_first_batch(outputs, batch)``: e.g. pictures for TensorBoard. Returns the number of
    batches this rank ran. Every rank must call it when a sink reduces across processes later.
    """
    from .evaluate import progress

    call = call or CallConfig()
    sinks = list(sinks)
    batches = 0
    grad_mode = torch.enable_grad() if grad else torch.no_grad()
    with grad_mode, evaluation_mode(model, keep_train_mode=call.keep_train_mode) as net:
        for i, batch in enumerate(progress(loader, runtime, desc)):
            batch = batch_to_device(batch, runtime.device)
            if predict is not None:
                out = predict(net, batch)
            else:
                with autocast(runtime, call.use_amp, call.amp_dtype):
                    out = run_model(net, batch, call)
            out = float_outputs(out)
            # every batch: a model may give logits or NaN only on some images
            check_model_output(out, batch, training=False, where=batch_where(i, batch))
            for sink in sinks:
                sink.update(out, batch)
            if i == 0 and on_first_batch is not None:
                on_first_batch(out, batch)
            batches += 1
    return batches


class MaskWriter:
    """Sink of ``test_save_images.py``: every predicted mask as an 8-bit PNG at the image's
    original size (padding dropped, resize undone), and one record per image."""

    def __init__(self, out_dir: Path, pred_paths: Mapping[str, str], no_ground_truth: bool) -> None:
        self.out_dir = Path(out_dir)
        self.pred_paths = pred_paths
        self.no_ground_truth = no_ground_truth
        self.records: list[dict[str, Any]] = []

    def update(self, out: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        from PIL import Image

        from .fileio import atomic_write
        from .save_images import restore_size, to_uint8

        pred_mask, pred_label = out.get("pred_mask"), out.get("pred_label")
        for j, name in enumerate(names_of(batch)):
            rel = None
            if pred_mask is not None:
                rel = self.pred_paths[name]
                target = self.out_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                pixels = to_uint8(restore_size(pred_mask[j], batch["shape"][j], batch["original_shape"][j]))
                # 2-D uint8: 8-bit grey; atomic, so a full disk leaves no truncated PNG
                atomic_write(target, lambda tmp, px=pixels: Image.fromarray(px).save(tmp, format="PNG"),
                             needed=pixels.size)
            self.records.append({
                "name": name,
                "image_path": batch["image_path"][j] if "image_path" in batch else None,
                "mask_path": None if self.no_ground_truth else (batch["mask_path"][j] if "mask_path" in batch else None),
                "pred_path": rel,
                "label": None if self.no_ground_truth else int(batch["label"][j]),
                "pred_label": None if pred_label is None else float(pred_label[j]),
            })


def gather_records(runtime: Runtime, records: Sequence[dict[str, Any]], order: Mapping[str, int]) -> list[dict[str, Any]]:
    """Every rank's records, on every rank, in dataset order (``order``: name → index)."""
    gathered = [r for part in runtime.all_gather_object(list(records)) for r in part]
    gathered.sort(key=lambda r: order.get(r["name"], 0))
    return gathered

