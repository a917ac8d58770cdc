"""Small image functions on uint8 numpy arrays (H×W×3 images, H×W masks): numpy, Pillow, and
OpenCV where IMDL-BenCo's numbers depend on its exact arithmetic (blur, JPEG attack)."""

from __future__ import annotations

import io
from typing import Tuple

import numpy as np
from PIL import Image

__all__ = [
    "gaussian_kernel", "gaussian_blur", "jpeg_roundtrip", "jpeg_roundtrip_as_bgr", "gaussian_noise",
    "box_filter", "diffusion_fill",
]


def gaussian_kernel(ksize: int, sigma: float = 0.0) -> np.ndarray:
    """1-D normalised Gaussian of odd size ``ksize`` as OpenCV builds it (``getGaussianKernel``):
    with ``sigma <= 0`` and ``ksize <= 7`` its fixed small kernels (3: 1/4, 1/2, 1/4), otherwise
    σ = ``0.3 * ((ksize - 1) * 0.5 - 1) + 0.8``."""
    ksize = int(ksize)
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd int, got {ksize}")
    import cv2

    return cv2.getGaussianKernel(ksize, float(sigma), cv2.CV_32F).ravel()


def gaussian_blur(image: np.ndarray, ksize: int, sigma: float = 0.0) -> np.ndarray:
    """OpenCV's Gaussian blur with a ``ksize``×``ksize`` kernel (σ derived from the size when
    ``sigma <= 0``), mirrored borders (reflect-101): IMDL-BenCo's blur, value for value."""
    ksize = int(ksize)
    if ksize <= 1:
        return image.copy()
    gaussian_kernel(ksize)  # validates the size
    import cv2

    return cv2.GaussianBlur(np.ascontiguousarray(image), (ksize, ksize), float(sigma))


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB image as JPEG at exactly ``quality`` (1–100) with Pillow and decode it again
    (a correct colour round trip)."""
    quality = _check_quality(quality)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.array(Image.open(buf).convert("RGB"))


def jpeg_roundtrip_as_bgr(image: np.ndarray, quality: int) -> np.ndarray:
    """IMDL-BenCo's JPEG attack: OpenCV encodes the RGB array *as if it were BGR* at ``quality``
    and decodes it again (so red and blue swap roles in the colour conversion). Kept to
    reproduce published robustness numbers; :func:`jpeg_roundtrip` is the correct round trip."""
    quality = _check_quality(quality)
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), (cv2.IMWRITE_JPEG_QUALITY, quality))
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode an array of shape {image.shape}")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def _check_quality(quality) -> int:
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    return quality


def gaussian_noise(image: np.ndarray, variance: float, rng=np.random, rounding: bool = False) -> np.ndarray:
    """Add zero-mean Gaussian noise of ``variance`` (0–255 units, so std = sqrt(variance)), drawn
    independently per pixel and channel, then clip to 0..255. The result is truncated to uint8 as
    in IMDL-BenCo (mean shift about -0.5); ``rounding=True`` rounds instead."""
    noise = rng.normal(0.0, float(variance) ** 0.5, image.shape)
    out = image.astype(np.float32) + noise
    if rounding:
        out += 0.5
    return np.clip(out, 0, 255).astype(np.uint8)


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

