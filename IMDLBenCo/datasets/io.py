"""Image and mask reading, file pairing, and the one error type of the dataset layer.

Everything here uses Pillow and numpy only. Images are read as RGB uint8 without EXIF
auto-rotation (a rotated image would no longer line up with its mask). Masks are binarised
from any Pillow mode with one stated rule, :data:`MASK_THRESHOLD`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError

__all__ = [
    "DatasetError",
    "IMAGE_EXTENSIONS",
    "MASK_SUFFIXES",
    "MASK_THRESHOLD",
    "NEGATIVE",
    "is_image_file",
    "list_images",
    "mask_key",
    "open_image",
    "try_open_image",
    "load_rgb",
    "load_mask",
    "decode_mask",
    "mask_gray",
    "binarize_gray",
    "check_hint",
]

#: file extensions (lower case) read as images; everything else in a folder is ignored
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm", ".jfif")
#: suffixes a mask's stem may carry on top of its image's stem (``12_gt.png`` masks ``12.jpg``)
MASK_SUFFIXES = ("_gt", "_mask", "-gt", "-mask")
#: a mask pixel is "manipulated" when its grey value, on the 8-bit scale, is above this
MASK_THRESHOLD = 127.5
#: mask path that marks an authentic image (all-black mask, label 0)
NEGATIVE = "Negative"
#: the largest image (width x height, from the file's header) decoded unless --max_pixels says
#: otherwise: a small file whose header claims a huge size is refused before memory is spent
DEFAULT_MAX_PIXELS = 100_000_000


def check_hint(root: str | None = None) -> str:
    target = root if root else "PATH"
    return f"Run `benco data check {target}` to list every problem (and --write-clean OUT.json to skip bad pairs)."


def is_image_file(name: str) -> bool:
    """True for a file name with an image extension (case-insensitive), hidden files excluded."""
    base = os.path.basename(name)
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: str) -> list[str]:
    """Sorted image file names (not paths) directly inside ``folder``."""
    return sorted(n for n in os.listdir(folder) if is_image_file(n) and os.path.isfile(os.path.join(folder, n)))


def mask_key(name: str) -> str:
    """The image stem a mask file belongs to: stem without a ``_gt``/``_mask`` suffix."""
    stem = os.path.splitext(os.path.basename(name))[0]
    low = stem.lower()
    for suffix in MASK_SUFFIXES:
        if low.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def too_large(img: Image.Image, max_pixels: int | None) -> str:
    """The reason ``img`` (opened, not decoded) is refused, or "" (its header's size is checked)."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    w, h = img.size
    if w * h > limit:
        return (f"its header says {w}x{h} = {w * h:,} pixels, above the limit of {limit:,} (--max_pixels); "
                f"it was not decoded. Raise --max_pixels if the image is genuine")
    return ""


def try_open_image(path: str, max_pixels: int | None = None) -> tuple[Image.Image | None, str]:
    """``(image, "")`` with the image fully decoded, or ``(None, reason)`` when that fails or its
    header claims more than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`)."""
    try:
        with warnings.catch_warnings():  # the size is checked just below, against --max_pixels
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        reason = too_large(img, max_pixels)
        if reason:
            img.close()
            return None, reason
        img.load()  # decode now, so a truncated file fails here and not later
    except FileNotFoundError:
        return None, "file not found"
    except Image.DecompressionBombError as err:  # Pillow's own ceiling (twice its MAX_IMAGE_PIXELS)
        return None, (f"its header claims a size above Pillow's limit ({err}); it was not decoded (--max_pixels "
                      f"cannot raise Pillow's ceiling: PIL.Image.MAX_IMAGE_PIXELS can)")
    except Exception as err:  # UnidentifiedImageError, truncated data, decoder errors
        return None, f"cannot be read as an image ({type(err).__name__}: {err})"
    return img, ""


def open_image(path: str, root: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode ``path`` with Pillow; any failure becomes one :class:`DatasetError`."""
    img, reason = try_open_image(path, max_pixels)
    if img is None:
        raise DatasetError(f"{path}: {reason}. Replace or remove the file. {check_hint(root)}")
    return img


def load_rgb(path: str, root: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """The image at ``path`` as an RGB Pillow image (no EXIF rotation).

    Grey images of more than 8 bits are scaled to 8 bits by their value range, not clipped:
    16-bit (``I;16``) by 1/257; 32-bit integer (``I``) as 8-bit when its values fit in 0–255,
    else as 16-bit when they fit in 0–65535, else by its maximum; float (``F``) as 0–1 when its
    maximum is at most 1 (the usual float TIFF), as 0–255 when at most 255, else by its maximum.
    """
    img = open_image(path, root, max_pixels)
    if img.mode != "RGB":
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            img = Image.fromarray(_to_8bit(np.asarray(img, dtype=np.float64), img.mode), "L")
        img = img.convert("RGB")
    return img


def _to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    finite = arr[np.isfinite(arr)]
    top = float(finite.max()) if finite.size else 0.0
    if mode == "F":
        scale = 255.0 if top <= 1.0 else (1.0 if top <= 255.0 else 255.0 / top)
    elif mode == "I":
        scale = 1.0 if top <= 255 else (1 / 257.0 if top <= 65535 else 255.0 / top)
    else:  # 16-bit
        scale = 1 / 257.0
    arr = np.nan_to_num(arr, nan=0.0, posinf=top, neginf=0.0) * scale
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def mask_gray(img: Image.Image) -> np.ndarray:
    """Grey value of every mask pixel on the 8-bit scale (float32 or uint8 array, H×W).

    L/1/P/RGB: mean of the RGB channels; RGBA/LA/PA: that mean times alpha/255 (transparent
    counts as background); 16- and 32-bit integer modes are divided by 257; float mode ``F`` is
    taken as 0–1 when its maximum is at most 1, else as 0–255.
    """
    mode = img.mode
    if mode == "L":
        return np.asarray(img)
    if mode == "1":
        return np.asarray(img, dtype=np.uint8) * 255
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(img, dtype=np.float32) / 257.0
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return arr * 255.0 if arr.size and float(arr.max()) <= 1.0 else arr
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        arr = np.asarray(img.convert("RGBA"), dtype=np.float32)
        return arr[..., :3].mean(axis=2) * (arr[..., 3] / 255.0)
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    return arr.mean(axis=2)


def binarize_gray(gray: np.ndarray) -> np.ndarray:
    """uint8 {0,1} mask: 1 where the grey value is above :data:`MASK_THRESHOLD`."""
    return (gray > MASK_THRESHOLD).view(np.uint8) if gray.dtype != np.uint8 else (gray > 127).view(np.uint8)


def _coloured_pixels(rgb: np.ndarray) -> int:
    """Pixels that are clearly coloured (one channel above the threshold, the grey mean not):
    e.g. pure red, green or blue, which the grey rule would read as authentic."""
    hi = rgb.max(axis=2) > MASK_THRESHOLD
    if not hi.any():
        return 0
    return int(np.count_nonzero(hi & (rgb.mean(axis=2, dtype=np.float32) <= MASK_THRESHOLD)))


def decode_mask(img: Image.Image, path: str = "mask", root: str | None = None) -> np.ndarray:
    """A decoded mask image as a uint8 H×W array in {0,1} (1 = manipulated).

    The rule, per mask file:

    * the grey value (:func:`mask_gray`: mean of the RGB channels, 16-bit scaled to 8 bits) above
      :data:`MASK_THRESHOLD` is manipulated: IMDL-BenCo's rule, so 0/255 masks read exactly as there;
    * a mask with exactly two values ``{0, v}`` whose ``v`` is at or below the threshold (0/1 masks in
      8 or 16 bits, 0/255 stored in 16 bits) reads ``v`` as manipulated (IMDL-BenCo reads such
      masks as empty and trains on them as if nothing were tampered);
    * a mask whose non-zero pixels are all faint (several values, none above the threshold) or that
      holds coloured pixels (e.g. red on black) is refused with a :class:`DatasetError` naming the
      file: there is no safe reading of it.
    """
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8)
    if img.mode == "P" and "transparency" not in img.info:
        img = img.convert("RGB")
    if img.mode == "RGB":
        rgb = np.asarray(img)
        n = _coloured_pixels(rgb)
        if n:
            raise DatasetError(
                f"{path}: {n} mask pixel(s) are coloured (one channel bright, e.g. red on black), which the grey "
                f"rule (mean of R, G, B > {MASK_THRESHOLD}) would read as authentic. Save the mask as white "
                f"(255) on black (0), e.g. with `benco data prepare` or Pillow's convert('L') and a threshold. "
                f"{check_hint(root)}"
            )
    gray = mask_gray(img)
    mx = float(gray.max()) if gray.size else 0.0
    if mx > MASK_THRESHOLD or mx == 0.0:
        return binarize_gray(gray)
    # nothing above the threshold, something above zero: a two-valued {0, v} mask, or refuse
    raw = np.asarray(img) if img.mode in ("L", "I;16", "I;16B", "I;16L", "I") else gray
    nonzero = raw != 0
    if raw.ndim == 2 and np.all(raw[nonzero] == raw[nonzero].flat[0]):
        return nonzero.view(np.uint8)
    raise DatasetError(
        f"{path}: the mask has non-zero pixels but none above {MASK_THRESHOLD} on the 8-bit scale (largest "
        f"{mx:.1f}, mode {img.mode}), and it is not a two-valued 0/v mask, so which pixels are manipulated "
        f"is unclear. Save it as white (255) on black (0). {check_hint(root)}"
    )


def load_mask(path: str, root: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """The mask at ``path`` as a uint8 H×W array in {0,1}; see :func:`decode_mask` for the rule."""
    return decode_mask(open_image(path, root, max_pixels), path, root)


def unique_names(paths: Sequence[str]) -> list[str]:
    """File names for ``paths``; where two share a file name, parent folders are added (``a/x.png``)."""
    parts = [Path(p).parts for p in paths]
    depth = [1] * len(paths)
    while True:
        names = ["/".join(pp[-d:]) for pp, d in zip(parts, depth)]
        seen: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            seen.setdefault(n, []).append(i)
        clashes = [idx for idx in seen.values() if len(idx) > 1]
        grew = False
        for idx in clashes:
            for i in idx:
                if depth[i] < len(parts[i]):
                    depth[i] += 1
                    grew = True
        if not clashes or not grew:
            if clashes:  # identical paths listed twice: number them
                for idx in clashes:
                    for k, i in enumerate(idx[1:], start=2):
                        names[i] = f"{names[i]}#{k}"
            return names


def pair_by_stem(
    images: Iterable[str], masks: Iterable[str]
) -> tuple[list[tuple[str, str]], list[str], list[str], dict[str, list[str]]]:
    """Pair image and mask file names by stem (a mask may add ``_gt``/``_mask``).

    Returns ``(pairs, images_without_mask, masks_without_image, duplicates)``, where
    ``duplicates`` maps a stem to the file names (images or masks) that share it.
    """
    by_stem: dict[str, list[str]] = {}
    for name in images:
        by_stem.setdefault(os.path.splitext(name)[0], []).append(name)
    mask_by_stem: dict[str, list[str]] = {}
    for name in masks:
        mask_by_stem.setdefault(mask_key(name), []).append(name)
    # a mask whose full stem equals an image stem wins over the suffix reading (``a_gt.png``
    # next to an image ``a_gt.jpg``)
    for name in masks:
        stem = os.path.splitext(name)[0]
        key = mask_key(name)
        if key != stem and stem in by_stem and key not in by_stem:
            mask_by_stem[key].remove(name)
            if not mask_by_stem[key]:
                del mask_by_stem[key]
            mask_by_stem.setdefault(stem, []).append(name)
    duplicates: dict[str, list[str]] = {}
    for stem, names in by_stem.items():
        if len(names) > 1:
            duplicates[stem] = list(names)
    for stem, names in mask_by_stem.items():
        if len(names) > 1:
            duplicates.setdefault(stem, []).extend(names)
    pairs: list[tuple[str, str]] = []
    lonely_images: list[str] = []
    for stem in sorted(by_stem):
        if stem in duplicates:
            continue
        if stem in mask_by_stem:
            pairs.append((by_stem[stem][0], mask_by_stem[stem][0]))
        else:
            lonely_images.append(by_stem[stem][0])
    lonely_masks = sorted(n for stem, ns in mask_by_stem.items() if stem not in by_stem for n in ns)
    return pairs, lonely_images, lonely_masks, duplicates
