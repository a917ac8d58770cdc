"""TruFor (Guillaro et al., CVPR 2023), registered as ``Trufor``."""

from .trufor import Trufor, TruForNet

__all__ = ["Trufor", "TruForNet"]
