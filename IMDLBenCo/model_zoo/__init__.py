"""The model zoo: one sub-package per published model; importing this registers them all.

The registry imports this package lazily, on the first ``MODELS.get`` miss.
"""

import importlib

#: sub-packages, each registering its model(s) in ``MODELS`` (and post-functions in POSTFUNCS)
ZOO_PACKAGES = ["iml_vit", "mvss_net", "pscc_net", "mesorch", "cat_net", "trufor", "object_former", "sparse_vit",
                "mantra_net", "span", "mscdi_net", "dinov3_iml"]

for _name in ZOO_PACKAGES:
    importlib.import_module(f"{__name__}.{_name}")
