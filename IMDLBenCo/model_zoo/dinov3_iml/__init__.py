"""DINOv3-IML (Yu et al., arXiv 2026): frozen DINOv3/DINOv2 ViT + LoRA, registered as ``DINOv3_IML``."""

from .dinov3_iml import DINOv3_IML

__all__ = ["DINOv3_IML"]
