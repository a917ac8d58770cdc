"""SparseViT (Su et al., AAAI 2025), registered as ``SparseViT`` (and its encoder as
``SparseViTBackbone``, as in IMDL-BenCo)."""

from .sparse_vit import SparseViT, SparseViTBackbone

__all__ = ["SparseViT", "SparseViTBackbone"]
