"""Transforms: final geometry (pad/resize, edge mask), ImageNet (de)normalisation, training
augmentation, robustness wrappers.

All transforms are albumentations-style callables ``t(image=HxWx3 uint8, mask=HxW uint8) -> dict``
built on numpy, Pillow and OpenCV.
"""

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
from .functional import (
                       gaussian_blur,
                       gaussian_kernel,
                       gaussian_noise,
                       inpaint_box,
                       jpeg_roundtrip,
                       jpeg_roundtrip_as_bgr,
)
from .geometry import (
                       OVERSIZE_CHOICES,
                       check_edge_width,
                       dilate_cross,
                       edge_mask,
                       edge_mask_tensor,
                       resize_image,
                       resize_mask,
                       resize_pair,
                       shrink_to_fit,
)
from .normalization import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize
from .robustness import AbstractTransformWrapper, GaussianBlurWrapper, GaussianNoiseWrapper, JpegCompressionWrapper

__all__ = [
    "OVERSIZE_CHOICES", "check_edge_width", "dilate_cross", "edge_mask", "edge_mask_tensor", "resize_image",
    "resize_mask", "resize_pair", "shrink_to_fit",
    "gaussian_blur", "gaussian_kernel", "gaussian_noise", "inpaint_box", "jpeg_roundtrip", "jpeg_roundtrip_as_bgr",
    "IMAGENET_MEAN", "IMAGENET_STD", "normalize", "denormalize",
    "Compose", "DualTransform", "GaussianBlur", "HorizontalFlip", "ImageCompression",
    "RandomBrightnessContrast", "RandomCopyMove", "RandomInpainting", "RandomRotate90",
    "RandomScale", "VerticalFlip", "default_train_transform",
    "AbstractTransformWrapper", "GaussianBlurWrapper", "GaussianNoiseWrapper", "JpegCompressionWrapper",
]
