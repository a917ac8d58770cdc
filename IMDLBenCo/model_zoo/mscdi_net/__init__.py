"""MSCDI-Net (multi-scale cross-domain interaction network, GLCA-SegFormer backbone), registered as
``MSCDI_Net``."""

from .mscdi_net import MSCDI_Net

__all__ = ["MSCDI_Net"]
