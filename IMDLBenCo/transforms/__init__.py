"""Transforms: final geometry (pad/resize, edge mask), training augmentation, robustness wrappers.

All transforms are albumentations-style callables ``t(image=HxWx3 uint8, mask=HxW uint8) -> dict``
built on numpy and Pillow.
"""

from .geometry import OVERSIZE_CHOICES, dilate_cross, edge_mask, resize_pair, shrink_to_fit
from .functional import gaussian_blur, gaussian_kernel, gaussian_noise, jpeg_roundtrip
from .augment import (
    Compose,
    DualTransform,
    GaussianBlur,
    HorizontalFlip,
    ImageCompression,
    RandomBrightnessContrast,
    RandomCopyMove,
    RandomInpainting,
    RandomRotate90,
    RandomScale,
    VerticalFlip,
    default_train_transform,
)
from .robustness import AbstractTransformWrapper, GaussianBlurWrapper, GaussianNoiseWrapper, JpegCompressionWrapper

__all__ = [
    "OVERSIZE_CHOICES", "dilate_cross", "edge_mask", "resize_pair", "shrink_to_fit",
    "gaussian_blur", "gaussian_kernel", "gaussian_noise", "jpeg_roundtrip",
    "Compose", "DualTransform", "GaussianBlur", "HorizontalFlip", "ImageCompression",
    "RandomBrightnessContrast", "RandomCopyMove", "RandomInpainting", "RandomRotate90",
    "RandomScale", "VerticalFlip", "default_train_transform",
    "AbstractTransformWrapper", "GaussianBlurWrapper", "GaussianNoiseWrapper", "JpegCompressionWrapper",
]
