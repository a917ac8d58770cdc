"""Building blocks shared by the model zoo: feature extractors, encoders (MiT), backbones.

Importing this package registers the backbone factories (``resnet``, ``bayar_resnet``, ...) in
``IMDLBenCo.registry.MODELS``; the registry does it lazily on a missed name.
"""

import importlib

try:
    importlib.import_module(f"{__name__}.backbones")
except ModuleNotFoundError as _err:  # tolerated only while the backbones package is not written
    if _err.name != f"{__name__}.backbones":
        raise
