"""ObjectFormer (Wang et al., CVPR 2022; IMDL-BenCo's reproduction), registered as ``ObjectFormer``."""

from .object_former import ObjectFormer

__all__ = ["ObjectFormer"]
