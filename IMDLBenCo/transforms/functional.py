"""Small image functions on uint8 numpy arrays (H×W×3 images, H×W masks), numpy + Pillow only."""

from __future__ import annotations

import io
from typing import Tuple

import numpy as np
from PIL import Image

__all__ = ["gaussian_kernel", "gaussian_blur", "jpeg_roundtrip", "gaussian_noise", "box_filter", "diffusion_fill"]


def gaussian_kernel(ksize: int, sigma: float = 0.0) -> np.ndarray:
    """1-D normalised Gaussian of odd size ``ksize``; ``sigma <= 0`` derives it from the size
    the way OpenCV does (``0.3 * ((ksize - 1) * 0.5 - 1) + 0.8``)."""
    ksize = int(ksize)
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd int, got {ksize}")
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(image: np.ndarray, ksize: int, sigma: float = 0.0) -> np.ndarray:
    """Separable Gaussian blur with a ``ksize``×``ksize`` kernel, mirrored borders (OpenCV's default)."""
    if int(ksize) <= 1:
        return image.copy()
    k = gaussian_kernel(ksize, sigma)
    r = len(k) // 2
    out = image.astype(np.float32)
    for axis in (0, 1):
        n = out.shape[axis]
        if n <= r:  # too small to mirror: nothing sensible to blur along this axis
            continue
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="reflect")
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * np.take(padded, np.arange(i, i + n), axis=axis)
        out = acc
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at exactly ``quality`` (1–100) with Pillow and decode again."""
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.array(Image.open(buf).convert("RGB"))


def gaussian_noise(image: np.ndarray, variance: float, rng=np.random) -> np.ndarray:
    """Add zero-mean Gaussian noise of ``variance`` (0–255 units, so std = sqrt(variance))."""
    noise = rng.normal(0.0, float(variance) ** 0.5, image.shape).astype(np.float32)
    return np.clip(image.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)


def box_filter(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Sum over a window of ``2*radius+1`` along ``axis`` (zeros outside), via cumulative sums."""
    a = np.moveaxis(a, axis, 0)
    n = a.shape[0]
    c = np.concatenate([np.zeros((1,) + a.shape[1:], a.dtype), np.cumsum(a, axis=0, dtype=a.dtype)])
    idx = np.arange(n)
    out = c[np.minimum(idx + radius + 1, n)] - c[np.maximum(idx - radius, 0)]
    return np.moveaxis(out, 0, axis)


def diffusion_fill(image: np.ndarray, box: Tuple[int, int, int, int]) -> np.ndarray:
    """Fill the window ``box`` = (y0, x0, y1, x1) from its surroundings (a simple inpainting).

    Normalised convolution: the pixels outside the window, box-filtered twice (≈ Gaussian) with a
    radius reaching past the window's middle, divided by the filtered "known" weight. It gives a
    smooth colour diffusion from the border inwards, like a blurred ``cv2.inpaint``, without OpenCV.
    """
    y0, x0, y1, x1 = box
    h, w = image.shape[:2]
    radius = max(y1 - y0, x1 - x0) // 2 + 2
    # work on a crop around the window: the far image does not influence the fill
    cy0, cx0 = max(0, y0 - 2 * radius), max(0, x0 - 2 * radius)
    cy1, cx1 = min(h, y1 + 2 * radius), min(w, x1 + 2 * radius)
    crop = image[cy0:cy1, cx0:cx1].astype(np.float32)
    known = np.ones(crop.shape[:2], np.float32)
    known[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = 0
    stack = np.concatenate([crop * known[..., None], known[..., None]], axis=2)
    for _ in range(2):
        for axis in (0, 1):
            stack = box_filter(stack, radius, axis)
    filled = stack[..., :3] / np.maximum(stack[..., 3:], 1e-6)
    out = image.copy()
    win = filled[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
    out[y0:y1, x0:x1] = np.clip(win + 0.5, 0, 255).astype(np.uint8)
    return out

