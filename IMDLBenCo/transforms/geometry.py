"""Final geometry of a sample: resize or top-left pad to the output size, and the edge mask.

All functions work on uint8 numpy arrays / Pillow images, so a dataset item costs one decode,
one resize or pad, and one uint8 → tensor copy.
"""

from __future__ import annotations

import logging
from typing import Tuple, Union

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["resize_pair", "shrink_to_fit", "edge_mask", "dilate_cross", "OVERSIZE_CHOICES"]

#: what padding does with an image larger than the output size
OVERSIZE_CHOICES = ("shrink", "error")

ImageLike = Union[Image.Image, np.ndarray]


def _as_pil(image: ImageLike) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.fromarray(image)


def resize_pair(image: ImageLike, mask: np.ndarray, size_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Resize ``image`` (bilinear) and ``mask`` (nearest, values kept) to ``size_hw`` = (H, W)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    img = _as_pil(image)
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    if mask.shape[:2] != (h, w):
        mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
    return np.asarray(img), mask


def shrink_to_fit(hw: Tuple[int, int], out_hw: Tuple[int, int]) -> Tuple[int, int]:
    """(H, W) scaled down, aspect kept, so that it fits in ``out_hw``; unchanged when it fits."""
    h, w = int(hw[0]), int(hw[1])
    if h <= out_hw[0] and w <= out_hw[1]:
        return h, w
    scale = min(out_hw[0] / h, out_hw[1] / w)
    return max(1, min(out_hw[0], int(round(h * scale)))), max(1, min(out_hw[1], int(round(w * scale))))


def dilate_cross(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a 2-D {0,1} uint8 array by a cross (plus sign) of the given radius."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    out = mask.copy()
    for r in range(1, radius + 1):
        if r < w:
            np.maximum(out[:, r:], mask[:, :-r], out=out[:, r:])
            np.maximum(out[:, :-r], mask[:, r:], out=out[:, :-r])
        if r < h:
            np.maximum(out[r:, :], mask[:-r, :], out=out[r:, :])
            np.maximum(out[:-r, :], mask[r:, :], out=out[:-r, :])
    return out


def edge_mask(mask: np.ndarray, width: int) -> np.ndarray:
    """uint8 {0,1} band of ``width`` pixels straddling every 0/1 boundary of ``mask`` (H×W).

    ``ceil(width/2)`` pixels lie inside the manipulated region and ``floor(width/2)`` outside, so a
    straight boundary gives a band exactly ``width`` pixels wide (distances measured along rows and
    columns, like IMDL-BenCo's cross-shaped kernel). An all-0 or all-1 mask gives all zeros.
    """
    if width is None or int(width) < 1:
        raise ValueError(f"edge_width must be a positive number of pixels, got {width!r}")
    width = int(width)
    m = (mask > 0).view(np.uint8) if mask.dtype != np.uint8 else (mask > 0).view(np.uint8)
    inside = (width + 1) // 2
    outside = width // 2
    inv = 1 - m
    band = m & dilate_cross(inv, inside)
    if outside:
        band |= inv & dilate_cross(m, outside)
    return band
