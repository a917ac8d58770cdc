"""Final geometry of a sample: resize or top-left pad to the output size, and the edge mask.

These reproduce IMDL-BenCo 0.1.45's pipeline (parity fixtures ``data/*.npz``): images are resized
with OpenCV's bilinear interpolation (no antialiasing) and masks with OpenCV's nearest neighbour;
the edge band is computed on the mask at its own resolution, *before* pad/resize, with a cross
kernel, and then resized with the mask. All functions work on uint8 numpy arrays; OpenCV is
imported where it is used.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "resize_image",
    "resize_mask",
    "resize_pair",
    "shrink_to_fit",
    "edge_mask",
    "edge_mask_tensor",
    "check_edge_width",
    "dilate_cross",
    "OVERSIZE_CHOICES",
]

#: what padding does with an image larger than the output size
OVERSIZE_CHOICES = ("shrink", "error")

ImageLike = Image.Image | np.ndarray


def _cv2():
    import cv2

    return cv2


def resize_image(image: ImageLike, size_hw: tuple[int, int]) -> np.ndarray:
    """H×W×C uint8 image resized to ``size_hw`` = (H, W) with OpenCV's bilinear interpolation
    (``INTER_LINEAR``, no antialiasing: what IMDL-BenCo's albumentations ``Resize`` does).
    Returned unchanged (not copied) when it already has that size."""
    arr = np.asarray(image)
    h, w = int(size_hw[0]), int(size_hw[1])
    if arr.shape[:2] == (h, w):
        return arr
    return _cv2().resize(arr, (w, h), interpolation=_cv2().INTER_LINEAR)


def resize_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """H×W mask resized to ``size_hw`` with OpenCV's nearest neighbour (values kept)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if mask.shape[:2] == (h, w):
        return mask
    return _cv2().resize(np.ascontiguousarray(mask), (w, h), interpolation=_cv2().INTER_NEAREST)


def resize_pair(image: ImageLike, mask: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``image`` (bilinear) and ``mask`` (nearest, values kept) to ``size_hw`` = (H, W)."""
    return resize_image(image, size_hw), resize_mask(mask, size_hw)


def shrink_to_fit(hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) scaled down, aspect kept, so that it fits in ``out_hw``; unchanged when it fits."""
    h, w = int(hw[0]), int(hw[1])
    if h <= out_hw[0] and w <= out_hw[1]:
        return h, w
    scale = min(out_hw[0] / h, out_hw[1] / w)
    return max(1, min(out_hw[0], int(round(h * scale)))), max(1, min(out_hw[1], int(round(w * scale))))


def check_edge_width(width) -> int:
    """``width`` as an int, or one ValueError saying what an edge width must be."""
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 3 or width % 2 == 0:
        raise ValueError(
            f"edge mask width must be an odd number of pixels >= 3 (the size of IMDL-BenCo's cross kernel; "
            f"7 is the usual value), got {width!r}"
        )
    return int(width)


def dilate_cross(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a 2-D {0,1} uint8 array by a cross (plus sign) of the given radius;
    pixels outside the array count as 0."""
    if radius <= 0:
        return mask.copy()
    cv2 = _cv2()
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(np.ascontiguousarray(mask), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)


def edge_mask(mask: np.ndarray, width: int) -> np.ndarray:
    """uint8 {0,1} band around every 0/1 boundary of ``mask`` (H×W), IMDL-BenCo's rule.

    A pixel is in the band when both the manipulated region and the background reach it through
    a ``width``×``width`` cross (a plus sign of radius ``width // 2``): ``width // 2`` pixels on
    each side of a straight boundary, so ``--edge_mask_width 7`` gives a 6-pixel band. Pixels
    outside the image count as neither, so there is no band along the image border. An all-0 or
    all-1 mask gives all zeros. Computed at the mask's own resolution; the dataset then resizes
    it with the mask (so with ``--if_resizing`` the band scales with the image).
    """
    r = check_edge_width(width) // 2
    m = (mask > 0).view(np.uint8)
    return dilate_cross(m, r) & dilate_cross(1 - m, r)


def edge_mask_tensor(mask, width: int = 7):
    """:func:`edge_mask` for a torch mask ``(B, 1, H, W)`` (any values; > 0.5 is manipulated),
    computed with torch on the mask's device; float result of the same shape."""
    import torch
    import torch.nn.functional as F

    r = check_edge_width(width) // 2
    m = (mask > 0.5).float()
    k = 2 * r + 1
    cross = torch.zeros(1, 1, k, k, device=mask.device)
    cross[..., r, :] = 1
    cross[..., :, r] = 1
    inside = F.conv2d(m, cross, padding=r) > 0
    outside = F.conv2d(1 - m, cross, padding=r) > 0
    return (inside & outside).to(mask.dtype if mask.is_floating_point() else torch.float32)
