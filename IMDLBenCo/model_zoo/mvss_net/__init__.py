"""MVSS-Net (Chen et al., ICCV 2021; Dong et al., TPAMI 2022), registered as ``MVSSNet``."""

from .mvss_net import MVSSNet

__all__ = ["MVSSNet"]
