"""Small image functions on uint8 numpy arrays (H×W×3 images, H×W masks): numpy, Pillow, and
OpenCV where IMDL-BenCo's numbers depend on its exact arithmetic (blur, JPEG attack)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = [
    "gaussian_kernel", "gaussian_blur", "jpeg_roundtrip", "jpeg_roundtrip_as_bgr", "gaussian_noise",
    "inpaint_box", "diffusion_fill", "INPAINT_METHODS",
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


#: OpenCV's two inpainting methods, by name (IMDL-BenCo's RandomInpainting picks one at random)
INPAINT_METHODS = ("telea", "ns")


def inpaint_box(image: np.ndarray, box: tuple[int, int, int, int], method: str = "telea",
                radius: int = 3) -> np.ndarray:
    """Fill the window ``box`` = (y0, x0, y1, x1) of a uint8 H×W×3 image from its surroundings
    with OpenCV's inpainting (``cv2.inpaint``; ``method`` "telea" or "ns" (Navier–Stokes),
    ``radius`` the neighbourhood considered, 3 as in IMDL-BenCo). Pixels outside stay as they are."""
    if method not in INPAINT_METHODS:
        raise ValueError(f"inpainting method must be one of {INPAINT_METHODS}, got {method!r}")
    import cv2

    y0, x0, y1, x1 = box
    window = np.zeros(image.shape[:2], np.uint8)
    window[y0:y1, x0:x1] = 255
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    return cv2.inpaint(np.ascontiguousarray(image, dtype=np.uint8), window, float(radius), flag)


def diffusion_fill(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Fill ``box`` from its surroundings by OpenCV's Navier–Stokes inpainting (a diffusion);
    the name ``datasets.synth`` imports. See :func:`inpaint_box`."""
    return inpaint_box(image, box, method="ns")
