"""``test_save_images.py``: every predicted mask as an 8-bit PNG at the image's original size,
every predicted label in ``pred_label.json``, and an index in ``predictions.json``.

Works without ground truth: ``--test_data_path`` may be a plain folder of images (searched
recursively) or a JsonDataset whose masks are all ``"Negative"``. Each sample is handled by
exactly one rank (exact sharding), so each PNG is written once whatever the process count.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import runfolder
from .builders import build_dataset, eval_loader
from .checkpoint import load_checkpoint
from .inference import MaskWriter, gather_records, run_inference
from .session import eval_session
from .writers import write_json

logger = logging.getLogger("IMDLBenCo.engine")


def _is_plain_image_folder(path: str) -> bool:
    return os.path.isdir(path) and not (os.path.isdir(os.path.join(path, "Tp")) and os.path.isdir(os.path.join(path, "Gt")))


def image_folder_as_json(folder: str, out_json: Path) -> Path:
    """A JsonDataset file listing every image under ``folder`` as ``[path, "Negative"]``."""
    from ..datasets.io import NEGATIVE, is_image_file

    images = sorted(str(Path(root) / name) for root, _, files in os.walk(folder) for name in files
                    if is_image_file(name))
    if not images:
        raise FileNotFoundError(f"--test_data_path {folder}: no image files in this folder (or below)")
    write_json(out_json, [[os.path.abspath(p), NEGATIVE] for p in images])
    return out_json


def prediction_paths(names: Sequence[str]) -> dict[str, str]:
    """``{sample name: "pred/<name>.png"}``, unique: ``a.jpg`` → ``pred/a.png`` unless another
    sample maps there too (``a.png``), then the full name is kept (``pred/a.jpg.png``)."""
    stems = [os.path.splitext(n)[0] + ".png" for n in names]
    count: dict[str, int] = {}
    for s in stems:
        count[s] = count.get(s, 0) + 1
    return {n: "pred/" + (s if count[s] == 1 else n + ".png") for n, s in zip(names, stems)}


def restore_size(pred: torch.Tensor, shape: Sequence[int], original: Sequence[int]) -> torch.Tensor:
    """A (1,S,S) prediction back at the original (H,W): drop padding, undo any resize."""
    h, w = int(shape[0]), int(shape[1])
    pred = pred[:, :h, :w].float()
    oh, ow = int(original[0]), int(original[1])
    if (h, w) != (oh, ow):
        pred = F.interpolate(pred[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]
    return pred


def to_uint8(pred: torch.Tensor) -> Any:
    """Probabilities → 8-bit grey levels, ``round(p × 255)``."""
    return pred.clamp(0, 1).mul(255).add_(0.5).floor_().to(torch.uint8).squeeze(0).cpu().numpy()


def prediction_dataset(s, without_ground_truth: bool = False) -> tuple[Any, bool]:
    """The dataset of a saving run (``test_save_images.py``, ``benco cam``) and whether it has
    ground truth: ``--test_data_path`` as a dataset, or a plain image folder listed (by rank 0)
    into ``input_images.json`` as masks-free samples."""
    args, runtime = s.args, s.runtime
    data_path = args.test_data_path
    no_ground_truth = without_ground_truth or _is_plain_image_folder(data_path)
    if no_ground_truth and not without_ground_truth:
        listing = Path(args.output_dir) / runfolder.INPUT_IMAGES
        if runtime.is_main:
            image_folder_as_json(data_path, listing)
        runtime.barrier()
        data_path = str(listing)
    return build_dataset(data_path, s.data, None, s.post_func), no_ground_truth


def readable_images(paths: Sequence[str], max_pixels: int | None = None) -> tuple[list[str], dict[str, str]]:
    """``(readable, {path: reason})``: every image decoded once in a thread pool (truncated files,
    non-images and images above ``max_pixels`` are found before the run, not in a loader worker)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..datasets.io import try_open_image

    def check(path: str) -> str:
        img, reason = try_open_image(path, max_pixels)
        if img is not None:
            img.close()
        return reason

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        reasons = list(pool.map(check, paths))
    bad = {p: r for p, r in zip(paths, reasons) if r}
    return [p for p in paths if p not in bad], bad


def save_images_main(argv: Sequence[str] | None = None, without_ground_truth: bool = False,
                     images: Sequence[str] | None = None, base: dict[str, Any] | None = None,
                     base_source: str = "") -> dict[str, Any]:
    """Run ``test_save_images.py``; returns ``{"predictions": [...], "pred_label": {...}, "args": ...,
    "skipped": {path: reason}, "is_main": bool}``.

    ``without_ground_truth``: the data's masks are placeholders (``benco predict``'s listing):
    records carry no label or mask path. ``images``: image files to predict (``benco predict``):
    checked first (unreadable ones are skipped and listed), then listed into ``--test_data_path``
    once the output folder is claimed. ``base``/``base_source``: option values below the command
    line (a checkpoint's training run)."""
    from ..datasets.io import NEGATIVE

    with eval_session("test_save_images", argv, tensorboard=False, base=base, base_source=base_source) as s:
        args, runtime = s.args, s.runtime
        out_dir = Path(args.output_dir)
        skipped: dict[str, str] = {}
        if images is not None:
            if runtime.is_main:
                good, skipped = readable_images(list(images), args.max_pixels)
                if not good:
                    from ..errors import UsageError

                    raise UsageError(f"none of the {len(skipped)} input image(s) can be read, e.g. "
                                     f"{next(iter(skipped))}: {next(iter(skipped.values()))}")
                write_json(Path(args.test_data_path), [[p, NEGATIVE] for p in good])
            skipped = runtime.all_gather_object(skipped)[0]
            runtime.barrier()
        dataset, no_ground_truth = prediction_dataset(s, without_ground_truth)
        pred_paths = prediction_paths(list(dataset.names))
        order = {n: i for i, n in enumerate(dataset.names)}
        load_checkpoint(args.checkpoint_path, s.model, map_location=runtime.device)
        loader = eval_loader(dataset, args.test_batch_size, s.data, runtime)
        sink = MaskWriter(out_dir, pred_paths, no_ground_truth)
        run_inference(s.model, loader, runtime, s.call, [sink], desc="save images")
        gathered = gather_records(runtime, sink.records, order)
        labels = {r["name"]: r["pred_label"] for r in gathered if r["pred_label"] is not None}
        if runtime.is_main:
            write_json(out_dir / runfolder.PREDICTIONS, gathered)
            write_json(out_dir / runfolder.PRED_LABELS, labels)
            logger.info("saved %d predicted masks under %s, labels of %d images in pred_label.json",
                        sum(r["pred_path"] is not None for r in gathered), out_dir / "pred", len(labels))
        return {"predictions": gathered, "pred_label": labels, "args": args, "skipped": skipped,
                "is_main": runtime.is_main}
