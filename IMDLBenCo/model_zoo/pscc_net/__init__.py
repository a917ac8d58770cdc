"""PSCC-Net (Liu et al., IEEE TCSVT 2022), registered as ``PSCC_Net``."""

from .pscc_net import PSCC_Net, convert_official_checkpoints

__all__ = ["PSCC_Net", "convert_official_checkpoints"]
