"""Mesorch (Zhu et al., AAAI 2025), registered as ``Mesorch``."""

from .mesorch import Mesorch

__all__ = ["Mesorch"]
