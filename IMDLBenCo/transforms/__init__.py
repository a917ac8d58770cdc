"""Transforms: final geometry (pad/resize, edge mask), training augmentation, robustness wrappers."""

from .geometry import OVERSIZE_CHOICES, dilate_cross, edge_mask, resize_pair, shrink_to_fit

__all__ = ["OVERSIZE_CHOICES", "dilate_cross", "edge_mask", "resize_pair", "shrink_to_fit"]
