"""CAT-Net's network configuration: the built-in ``CAT_full`` and reading a user's YAML/JSON file.

IMDL-BenCo builds ``Cat_Net`` from a YAML file (``--cfg_file ./configs/CAT_full.yaml``, copied
by ``benco init model_zoo``) in the CAT-Net authors' layout (``MODEL.EXTRA.STAGE1`` ...). We ship
the same configuration as a Python dict, so ``--cfg_file CAT_full.yaml`` (or any path whose file
name is ``CAT_full.yaml`` / ``CAT_full``, e.g. IMDL-BenCo's ``./configs/CAT_full.yaml`` when that
file does not exist) needs no file and no YAML library. An existing file is read instead: a
``.json`` file with the standard library, a ``.yaml``/``.yml`` file with PyYAML when installed.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["StageSpec", "CatNetConfig", "CAT_FULL", "BUILTIN_CONFIGS", "load_config"]

#: the network part of CAT-Net's ``experiments/CAT_full.yaml`` (identical in IMDL-BenCo 0.1.45);
#: the authors' training settings (SGD, lr 0.005, ...) are not used by this codebase
CAT_FULL: dict[str, Any] = {
    "DATASET": {"NUM_CLASSES": 2},
    "TRAIN": {"IGNORE_LABEL": -1},
    "MODEL": {
        "PRETRAINED_RGB": "",
        "PRETRAINED_DCT": "",
        "EXTRA": {
            "FINAL_CONV_KERNEL": 1,
            "STAGE1": {"NUM_MODULES": 1, "NUM_BRANCHES": 1, "BLOCK": "BOTTLENECK",
                       "NUM_BLOCKS": [4], "NUM_CHANNELS": [64]},
            "STAGE2": {"NUM_MODULES": 1, "NUM_BRANCHES": 2, "BLOCK": "BASIC",
                       "NUM_BLOCKS": [4, 4], "NUM_CHANNELS": [48, 96]},
            "STAGE3": {"NUM_MODULES": 4, "NUM_BRANCHES": 3, "BLOCK": "BASIC",
                       "NUM_BLOCKS": [4, 4, 4], "NUM_CHANNELS": [48, 96, 192]},
            "STAGE4": {"NUM_MODULES": 3, "NUM_BRANCHES": 4, "BLOCK": "BASIC",
                       "NUM_BLOCKS": [4, 4, 4, 4], "NUM_CHANNELS": [48, 96, 192, 384]},
            "DC_STAGE3": {"NUM_MODULES": 3, "NUM_BRANCHES": 2, "BLOCK": "BASIC",
                          "NUM_BLOCKS": [4, 4], "NUM_CHANNELS": [96, 192]},
            "DC_STAGE4": {"NUM_MODULES": 2, "NUM_BRANCHES": 3, "BLOCK": "BASIC",
                          "NUM_BLOCKS": [4, 4, 4], "NUM_CHANNELS": [96, 192, 384]},
            # the fusion stage: branch i takes RGB branch i and DCT branch i-1 concatenated
            "STAGE5": {"NUM_MODULES": 1, "NUM_BRANCHES": 4, "BLOCK": "BASIC",
                       "NUM_BLOCKS": [4, 4, 4, 4], "NUM_CHANNELS": [24, 48, 96, 192]},
        },
    },
}

BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {"CAT_full": CAT_FULL}

_STAGES = ("STAGE1", "STAGE2", "STAGE3", "STAGE4", "DC_STAGE3", "DC_STAGE4", "STAGE5")
_BLOCKS = ("BASIC", "BOTTLENECK")


@dataclass(frozen=True)
class StageSpec:
    """One HRNet stage: ``modules`` multi-resolution modules of ``len(channels)`` branches."""

    modules: int
    block: str
    blocks: list[int]
    channels: list[int]


@dataclass(frozen=True)
class CatNetConfig:
    stages: dict[str, StageSpec]
    num_classes: int
    ignore_label: int
    final_conv_kernel: int
    pretrained_rgb: str
    pretrained_dct: str
    source: str  # "built-in CAT_full" or the file read


def _builtin_name(cfg_file: str) -> str | None:
    stem = os.path.basename(str(cfg_file))
    for ext in (".yaml", ".yml", ".json"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    return stem if stem in BUILTIN_CONFIGS else None


def _read_file(path: str) -> dict[str, Any]:
    if path.lower().endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    else:
        try:
            import yaml  # optional: only for users' own YAML files
        except ImportError as err:
            raise ImportError(
                f"cfg_file {path!r}: reading a YAML file needs PyYAML (pip install pyyaml); or pass "
                f"'CAT_full.yaml' for the built-in configuration, or a .json file with the same keys"
            ) from err
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    if not isinstance(data, Mapping):
        raise ValueError(f"cfg_file {path!r}: expected a mapping with MODEL.EXTRA (CAT-Net's layout), "
                         f"found {type(data).__name__}")
    return dict(data)


def _get(data: Mapping[str, Any], dotted: str, where: str, default: Any = ...) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not ...:
                return default
            raise ValueError(f"{where}: key {dotted} is missing; a CAT-Net configuration needs "
                             f"MODEL.EXTRA.{{{', '.join(_STAGES)}, FINAL_CONV_KERNEL}} and DATASET.NUM_CLASSES "
                             f"(see IMDLBenCo/model_zoo/cat_net/config.py, CAT_FULL)")
        node = node[part]
    return node


def _stage(data: Mapping[str, Any], name: str, where: str) -> StageSpec:
    raw = _get(data, f"MODEL.EXTRA.{name}", where)
    block = str(_get(raw, "BLOCK", f"{where} MODEL.EXTRA.{name}"))
    if block not in _BLOCKS:
        raise ValueError(f"{where}: MODEL.EXTRA.{name}.BLOCK is {block!r}; expected one of {_BLOCKS}")
    blocks = [int(b) for b in _get(raw, "NUM_BLOCKS", f"{where} MODEL.EXTRA.{name}")]
    channels = [int(c) for c in _get(raw, "NUM_CHANNELS", f"{where} MODEL.EXTRA.{name}")]
    if len(blocks) != len(channels):
        raise ValueError(f"{where}: MODEL.EXTRA.{name} has {len(blocks)} NUM_BLOCKS but {len(channels)} "
                         f"NUM_CHANNELS; give one of each per branch")
    return StageSpec(modules=int(_get(raw, "NUM_MODULES", f"{where} MODEL.EXTRA.{name}")), block=block,
                     blocks=blocks, channels=channels)


def load_config(cfg_file: str) -> CatNetConfig:
    """The configuration named by ``cfg_file``: an existing YAML/JSON file, else a built-in name.

    Raises ``FileNotFoundError`` naming the argument when it is neither.
    """
    cfg_file = str(cfg_file)
    if os.path.isfile(cfg_file):
        data, where = _read_file(cfg_file), cfg_file
    else:
        name = _builtin_name(cfg_file)
        if name is None:
            raise FileNotFoundError(
                f"Cat_Net --cfg_file {cfg_file!r}: no such file, and not a built-in configuration "
                f"({', '.join(n + '.yaml' for n in BUILTIN_CONFIGS)}); pass 'CAT_full.yaml' or the path of a "
                f"CAT-Net YAML/JSON configuration"
            )
        data, where = copy.deepcopy(BUILTIN_CONFIGS[name]), f"built-in {name}"
    stages = {name: _stage(data, name, where) for name in _STAGES}
    kernel = int(_get(data, "MODEL.EXTRA.FINAL_CONV_KERNEL", where))
    if kernel not in (1, 3):
        raise ValueError(f"{where}: MODEL.EXTRA.FINAL_CONV_KERNEL is {kernel}; expected 1 or 3")
    return CatNetConfig(
        stages=stages,
        num_classes=int(_get(data, "DATASET.NUM_CLASSES", where)),
        ignore_label=int(_get(data, "TRAIN.IGNORE_LABEL", where, default=-1)),
        final_conv_kernel=kernel,
        pretrained_rgb=str(_get(data, "MODEL.PRETRAINED_RGB", where, default="") or ""),
        pretrained_dct=str(_get(data, "MODEL.PRETRAINED_DCT", where, default="") or ""),
        source=where,
    )
