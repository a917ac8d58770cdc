"""``benco data synth``: a small synthetic tampering dataset cut from real photographs.

Images are random crops of photographs (``photos`` folder, or by default the photographs that
installed packages ship: matplotlib's ``grace_hopper.jpg`` and, when scikit-learn is installed,
its ``china.jpg`` / ``flower.jpg``; nothing is downloaded). Each image is one of:

- **splicing**: a random shape from another crop, with a slight colour gain and added noise;
- **copy-move**: a random shape of the same image moved elsewhere, with a small brightness
  change and added noise;
- **inpainting**: a random shape filled from its surroundings (smooth diffusion fill);
- **authentic**: the crop as it is.

These traces (noise, colour, missing texture, hard edges) are deliberately learnable by a small
CNN in minutes on a CPU, so a demo can show training that works. Output, for ``out``::

    out/{train,val,test}/Tp/*.png, Gt/*.png   ManiDataset folders (tampered images only)
    out/{train,val,test}/Au/*.png            authentic images
    out/{train,val,test}.json                JsonDataset files (authentic images as "Negative")
    out/test_datasets.json                   {"synth_test": "test.json"}

Everything is deterministic for a given ``seed`` (numpy Generator, PNG output).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..transforms.functional import diffusion_fill
from .io import NEGATIVE, list_images
from .utils import write_json_dataset

logger = logging.getLogger(__name__)

__all__ = ["make_synthetic_dataset", "default_photos", "KINDS"]

#: kinds in the order they cycle through each split (so every split of >= 5 images has them all)
KINDS = ("splice", "copymove", "authentic", "inpaint", "splice")
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))


def default_photos() -> list[str]:
    """Photographs shipped inside installed packages (no download)."""
    found = []
    candidates = [("matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg")),
                  ("sklearn", ("datasets", "images", "china.jpg")),
                  ("sklearn", ("datasets", "images", "flower.jpg"))]
    for package, parts in candidates:
        try:
            import importlib.util

            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
        if os.path.isfile(path):
            found.append(path)
    return found


def _load_photos(photos: str | None) -> tuple[list[np.ndarray], list[str]]:
    if photos:
        if not os.path.isdir(photos):
            raise FileNotFoundError(f"--photos {photos}: not a folder of photographs")
        paths = [os.path.join(photos, n) for n in list_images(photos)]
        if not paths:
            raise ValueError(f"--photos {photos}: no image files in this folder")
    else:
        paths = default_photos()
        if not paths:
            raise ValueError("no photographs found in installed packages (matplotlib's sample data); pass --photos DIR")
    arrays = []
    for p in paths:
        with Image.open(p) as im:
            arrays.append(np.asarray(im.convert("RGB")))
    return arrays, paths


def _crop(rng: np.random.Generator, photos: Sequence[np.ndarray], size: int) -> np.ndarray:
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 0.8))
    side = max(8, min(side, h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    arr = np.array(crop)
    return arr[:, ::-1].copy() if rng.random() < 0.5 else arr


def _shape_mask(rng: np.random.Generator, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A random ellipse, rectangle or polygon covering roughly 4–25 % of the image; and its box."""
    bh, bw = (int(size * rng.uniform(0.25, 0.5)) for _ in range(2))
    y0, x0 = int(rng.integers(0, size - bh)), int(rng.integers(0, size - bw))
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    box = (x0, y0, x0 + bw - 1, y0 + bh - 1)
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse(box, fill=255)
    elif kind == 1:
        draw.rectangle(box, fill=255)
    else:
        cx, cy = x0 + bw / 2, y0 + bh / 2
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9))))
        radii = rng.uniform(0.5, 1.0, len(angles))
        pts = [(cx + r * bw / 2 * np.cos(a), cy + r * bh / 2 * np.sin(a)) for a, r in zip(angles, radii)]
        draw.polygon(pts, fill=255)
    mask = np.asarray(canvas) > 127
    if mask.sum() < 16:  # degenerate polygon: fall back to the box
        mask = np.zeros((size, size), bool)
        mask[y0:y0 + bh, x0:x0 + bw] = True
    return mask, (y0, x0, y0 + bh, x0 + bw)


def _trace(rng: np.random.Generator, region: np.ndarray, noise: tuple[float, float], gain: float) -> np.ndarray:
    """Slight colour gain and Gaussian noise: the statistical trace a detector can learn."""
    out = region.astype(np.float32) * rng.uniform(1 - gain, 1 + gain, 3).astype(np.float32)
    out += rng.normal(0, rng.uniform(*noise), region.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _forge(kind: str, rng: np.random.Generator, photos: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    image = _crop(rng, photos, size)
    if kind == "authentic":
        return image, np.zeros((size, size), np.uint8)
    mask, (y0, x0, y1, x1) = _shape_mask(rng, size)
    if kind == "splice":
        donor = _trace(rng, _crop(rng, photos, size), noise=(4.0, 9.0), gain=0.12)
        image[mask] = donor[mask]
    elif kind == "copymove":
        # move the shape by a random offset that keeps it inside the image
        dy = int(rng.integers(-y0, size - y1 + 1))
        dx = int(rng.integers(-x0, size - x1 + 1))
        source = np.roll(image, (-dy, -dx), axis=(0, 1))  # source[y, x] = image[y + dy, x + dx]
        moved = _trace(rng, source, noise=(3.0, 7.0), gain=0.06)
        image[mask] = moved[mask]
    elif kind == "inpaint":
        filled = diffusion_fill(image, (y0, x0, y1, x1))
        image[mask] = filled[mask]
    else:
        raise ValueError(f"unknown forgery kind {kind!r}")
    return image, mask.astype(np.uint8) * 255


def _split_counts(n: int) -> dict[str, int]:
    val = max(1, int(round(n * SPLITS[1][1])))
    test = max(1, int(round(n * SPLITS[2][1])))
    return {"train": n - val - test, "val": val, "test": test}


def make_synthetic_dataset(out: str, n: int = 200, size: int = 128, seed: int = 0,
                           photos: str | None = None) -> dict[str, object]:
    """Write a synthetic tampering dataset of ``n`` images of ``size``×``size`` into ``out``.

    Returns ``{"counts": {...}, "photos": [...], "splits": {split: folder}, "json": {split: file}}``.
    """
    n, size = int(n), int(size)
    if n < 6:
        raise ValueError(f"--n {n}: at least 6 images are needed (train, val and test each get some)")
    if size < 32:
        raise ValueError(f"--size {size}: at least 32 pixels")
    arrays, paths = _load_photos(photos)
    rng = np.random.default_rng(int(seed))
    counts: dict[str, int] = {k: 0 for k in ("splice", "copymove", "inpaint", "authentic")}
    info: dict[str, object] = {"photos": paths, "splits": {}, "json": {}}
    index = 0
    for split, m in _split_counts(n).items():
        folder = os.path.join(out, split)
        for sub in ("Tp", "Gt", "Au"):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        entries: list[tuple[str, str]] = []
        for j in range(m):
            kind = KINDS[j % len(KINDS)]
            image, mask = _forge(kind, rng, arrays, size)
            stem = f"{kind}_{index:05d}"
            index += 1
            counts[kind] += 1
            if kind == "authentic":
                Image.fromarray(image).save(os.path.join(folder, "Au", stem + ".png"))
                entries.append((os.path.join(folder, "Au", stem + ".png"), NEGATIVE))
            else:
                Image.fromarray(image).save(os.path.join(folder, "Tp", stem + ".png"))
                Image.fromarray(mask).save(os.path.join(folder, "Gt", stem + ".png"))
                entries.append((os.path.join(folder, "Tp", stem + ".png"), os.path.join(folder, "Gt", stem + ".png")))
        json_path = write_json_dataset(entries, os.path.join(out, f"{split}.json"), relative=True)
        info["splits"][split] = folder  # type: ignore[index]
        info["json"][split] = json_path  # type: ignore[index]
    with open(os.path.join(out, "test_datasets.json"), "w", encoding="utf-8") as f:
        json.dump({"synth_test": "test.json"}, f, indent=1)
        f.write("\n")
    info["counts"] = counts
    logger.info("synthetic dataset in %s: %s (photos: %s)", out, counts, ", ".join(paths))
    return info
