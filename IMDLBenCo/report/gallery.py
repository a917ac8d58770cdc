"""The sample gallery: image, ground truth and prediction overlays, worst and best by pixel F1.

Scores are computed from the files a save-images run wrote (``pred/<name>.png``, probabilities
scaled to 0-255 at the original size) and the ground-truth masks named in ``predictions.json``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets.io import load_mask
from ..outputs import is_positive
from .runs import RunFolder

__all__ = ["GalleryItem", "score_predictions", "select_samples", "write_gallery", "pixel_f1"]

logger = logging.getLogger(__name__)

#: the long side of the thumbnails, in pixels
THUMB = 224
NEGATIVE = "Negative"


@dataclass
class GalleryItem:
    """One scored prediction."""

    name: str
    image_path: Path | None
    mask_path: Path | None  # None: authentic ("Negative") or no ground truth
    pred_path: Path | None
    label: int | None
    pred_label: float | None
    f1: float | None = None  # pixel F1 at the threshold; None for authentic / no ground truth
    bin_fraction: float | None = None  # share of pixels above the threshold in the saved mask
    positive_fraction: float | None = None  # share of pixels predicted manipulated
    group: str = ""
    files: dict[str, str] | None = None  # picture kind -> file name in the assets folder
    note: str = ""
    cam_path: Path | None = None  # the class-activation overlay (cam/<stem>_overlay.jpg), when there is one


def _resolve(run: RunFolder, value: Any) -> Path | None:
    """A path from predictions.json: absolute, relative to the run folder, or to the working directory."""
    if not value or value == NEGATIVE:
        return None
    path = Path(str(value))
    if path.is_absolute():
        return path
    for candidate in (run.path / path, Path.cwd() / path):
        if candidate.exists():
            return candidate
    return run.path / path


def pixel_f1(pred, gt, threshold: float = 0.5) -> float:
    """Per-image pixel F1 of probabilities ``pred`` against the binary mask ``gt`` (H×W arrays),
    computed by the evaluator itself (:class:`IMDLBenCo.evaluation.PixelF1`), so the report and the
    metric tables cannot disagree; NaN for a mask without manipulated pixels (not scored)."""
    import numpy as np
    import torch

    from ..evaluation import PixelF1

    ev = PixelF1(threshold=threshold)
    ev.update({"pred_mask": torch.from_numpy(np.asarray(pred, dtype=np.float32))[None, None]},
              {"mask": torch.from_numpy(np.asarray(gt, dtype=np.float32))[None, None]})
    return float(ev.compute(sync=False)["pixel_f1"])


def _load_gray(path: Path, size=None):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        if size is not None and im.size != size:
            im = im.resize(size, Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 255.0


def cam_overlay(run: RunFolder, entry: dict[str, Any]) -> Path | None:
    """The CAM overlay of a prediction: from cam.json, or else ``cam/<stem>_overlay.jpg`` beside its
    ``pred/<stem>.png`` (the file names of ``benco cam``)."""
    from ..runfolder import CAM_DIR, PRED_DIR

    record = run.cam_records.get(str(entry.get("name")))
    if record is not None and record.get("overlay_path"):
        path = _resolve(run, record["overlay_path"])
        return path if path is not None and path.is_file() else None
    pred = str(entry.get("pred_path") or "").replace("\\", "/")
    if pred.startswith(PRED_DIR + "/") and pred.endswith(".png"):
        path = run.path / CAM_DIR / (pred[len(PRED_DIR) + 1:-4] + "_overlay.jpg")
        return path if path.is_file() else None
    return None


def score_predictions(run: RunFolder, threshold: float = 0.5) -> list[GalleryItem]:
    """Read every prediction of ``run`` and compute its pixel F1 against the ground truth."""
    items: list[GalleryItem] = []
    for entry in run.predictions:
        name = str(entry.get("name", "?"))
        label = entry.get("label")
        item = GalleryItem(
            name=name,
            image_path=_resolve(run, entry.get("image_path")),
            mask_path=_resolve(run, entry.get("mask_path")),
            pred_path=_resolve(run, entry.get("pred_path")),
            label=int(label) if isinstance(label, (int, float)) and not isinstance(label, bool) else None,
            pred_label=float(entry["pred_label"]) if isinstance(entry.get("pred_label"), (int, float)) else None,
            cam_path=cam_overlay(run, entry),
        )
        if entry.get("mask_path") == NEGATIVE and item.label is None:
            item.label = 0
        if item.pred_path is not None and item.pred_path.is_file():
            try:
                pred = _load_gray(item.pred_path)
                item.positive_fraction = float(is_positive(pred, threshold).mean())
                if item.mask_path is not None and item.mask_path.is_file():
                    gt = load_mask(str(item.mask_path))  # the dataset's own reading of the mask
                    if pred.shape != gt.shape:  # re-read the prediction at the mask's (W, H)
                        pred = _load_gray(item.pred_path, size=(gt.shape[1], gt.shape[0]))
                    if gt.any():
                        item.f1 = pixel_f1(pred, gt, threshold)
            except (OSError, ValueError) as err:  # unreadable file, or a mask the dataset refuses
                item.note = f"unreadable: {err}"
                logger.warning("report gallery: %s", item.note)
        elif item.pred_path is not None:
            item.note = f"prediction file {item.pred_path} not found"
        items.append(item)
    return items


def select_samples(items: list[GalleryItem], n: int) -> list[GalleryItem]:
    """Worst and best manipulated images by pixel F1, then the authentic images with the most false alarm."""
    scored = sorted((i for i in items if i.f1 is not None), key=lambda i: (i.f1, i.name))
    authentic = sorted(
        (i for i in items if i.f1 is None and i.label == 0 and i.positive_fraction is not None),
        key=lambda i: (-i.positive_fraction, i.name),
    )
    if not scored and not authentic:
        chosen = items[:n]
        for i in chosen:
            i.group = "sample"
        return chosen
    n_auth = min(len(authentic), max(1, n // 5)) if authentic else 0
    n_scored = min(len(scored), n - n_auth)
    n_worst = math.ceil(n_scored / 2)
    worst = scored[:n_worst]
    best = [i for i in reversed(scored[n_worst:]) ][: n_scored - n_worst]
    for i in worst:
        i.group = "worst"
    for i in best:
        i.group = "best"
    auth = authentic[: n - len(worst) - len(best)]
    for i in auth:
        i.group = "authentic"
    return worst + best + auth


def _thumb_size(w: int, h: int):
    scale = THUMB / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def write_gallery(items: list[GalleryItem], assets: Path, prefix: str, threshold: float = 0.5) -> None:
    """Write four thumbnails per item (five with a CAM overlay) into ``assets`` and record their file
    names in ``item.files``."""
    import numpy as np
    from PIL import Image

    red = np.array([230.0, 30.0, 30.0], dtype=np.float32)  # ground truth
    cyan = np.array([0.0, 220.0, 255.0], dtype=np.float32)  # prediction: a different colour, so the two are not confused
    for index, item in enumerate(items):
        files: dict[str, str] = {}
        base = None
        size = None
        if item.image_path is not None and item.image_path.is_file():
            with Image.open(item.image_path) as im:
                size = _thumb_size(*im.size)
                base = np.asarray(im.convert("RGB").resize(size, Image.BILINEAR), dtype=np.float32)
        pred = None
        if item.pred_path is not None and item.pred_path.is_file():
            if size is None:
                with Image.open(item.pred_path) as im:
                    size = _thumb_size(*im.size)
            pred = _load_gray(item.pred_path, size=size)
        if size is None and item.cam_path is not None:
            with Image.open(item.cam_path) as im:
                size = _thumb_size(*im.size)
        if base is None and size is not None:
            base = np.full((size[1], size[0], 3), 128.0, dtype=np.float32)  # no image: grey canvas
        if base is None:
            item.files = files
            continue

        def save(kind: str, array, index: int = index, files: dict[str, str] = files) -> None:
            fname = f"{prefix}_{index:03d}_{kind}.png"
            Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(assets / fname)
            files[kind] = fname

        save("image", base)
        if item.mask_path is not None and item.mask_path.is_file():
            gt = _load_gray(item.mask_path, size=size)[..., None] > 0.5
            save("gt", np.where(gt, base * 0.45 + red * 0.55, base * 0.8))
        elif item.label == 0:
            save("gt", base * 0.8)  # authentic: nothing to overlay
        if pred is not None:
            alpha = 0.7 * pred[..., None]
            save("pred", base * (1 - alpha) + cyan * alpha)
            binary = is_positive(pred, threshold)
            item.bin_fraction = float(binary.mean()) if binary.size else None
            save("bin", np.repeat(binary[..., None] * 255.0, 3, axis=2))
        if item.cam_path is not None:
            try:
                with Image.open(item.cam_path) as im:
                    save("cam", np.asarray(im.convert("RGB").resize(size, Image.BILINEAR), dtype=np.float32))
            except OSError as err:
                logger.warning("report gallery: CAM overlay %s unreadable: %s", item.cam_path, err)
        item.files = files
