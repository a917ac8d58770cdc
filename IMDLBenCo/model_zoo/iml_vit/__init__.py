"""IML-ViT (registered as ``IML_ViT``)."""

from .iml_vit import IML_ViT

__all__ = ["IML_ViT"]
