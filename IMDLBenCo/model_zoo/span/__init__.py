"""SPAN (Hu et al., ECCV 2020), registered as ``SPAN``; its feature extractor is ManTra-Net's."""

from .span import SPAN, PixelAttention

__all__ = ["SPAN", "PixelAttention"]
