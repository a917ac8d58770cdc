"""Backbone models registered in ``MODELS``: ``resnet``, ``vit``, ``vit16``, ``swin``, ``segformer``,
``unet``, ``convnext``, each also with an extractor input head (``bayar_``, ``srm_``, ``sobel_``,
``dct_``, ``fft_`` prefixes, e.g. ``bayar_resnet``, ``srm_vit``).

Every factory takes keyword options only (``encoder_name``, ``image_size`` where the encoder needs
it, ``if_predict_label``, ``pretrained_path``, ...); see each family class for details.
"""

from ...registry import MODELS
from .base import BackboneModel, deconv_stack, register_family, widen_conv
from .families import (
    ConvNeXtBackbone,
    ResNetBackbone,
    SegFormerBackbone,
    SwinBackbone,
    UNetBackbone,
    ViT16Backbone,
    ViTBackbone,
)

__all__ = ["BackboneModel", "BACKBONE_FAMILIES", "EXTRACTOR_PREFIXES", "BACKBONE_NAMES", "deconv_stack",
           "widen_conv", "ResNetBackbone", "ViTBackbone", "ViT16Backbone", "SwinBackbone", "SegFormerBackbone",
           "UNetBackbone", "ConvNeXtBackbone"]

#: registered family name -> class
BACKBONE_FAMILIES = {
    "resnet": ResNetBackbone,
    "vit": ViTBackbone,
    "vit16": ViT16Backbone,
    "swin": SwinBackbone,
    "segformer": SegFormerBackbone,
    "unet": UNetBackbone,
    "convnext": ConvNeXtBackbone,
}
EXTRACTOR_PREFIXES = ("fft", "dct", "sobel", "bayar", "srm")

BACKBONE_NAMES = []
for _family, _cls in BACKBONE_FAMILIES.items():
    if _family not in MODELS._module_dict:  # re-import (e.g. importlib.reload) must not fail
        BACKBONE_NAMES += register_family(MODELS, _family, _cls, EXTRACTOR_PREFIXES)
