"""IMDLBenCo: a benchmark and codebase for image manipulation detection and localization.

Importing the package is cheap: the registries are created here, while the model zoo, the
backbones and the datasets register themselves when first looked up (see ``registry.py``).
"""

from .registry import DATASETS, MODELS, POSTFUNCS
from .version import __version__, version_info

__all__ = ["__version__", "version_info", "MODELS", "DATASETS", "POSTFUNCS"]
