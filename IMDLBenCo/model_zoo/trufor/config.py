"""TruFor's architecture settings and the reader of its YAML configuration file.

IMDL-BenCo builds TruFor from a yacs file (``configs/trufor.yaml``); we read the same file format
(plain YAML) into a small dataclass and ship our own copy, ``trufor.yaml`` next to this module.
Only the settings that change the network are read; every value TruFor does not implement is an
error that names the file and the key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["TruForConfig", "DEFAULT_CONFIG_PATH", "resolve_config_path", "load_config"]

#: the configuration shipped with the package (IMDL-BenCo's ``configs/trufor.yaml``)
DEFAULT_CONFIG_PATH = Path(__file__).with_name("trufor.yaml")


@dataclass(frozen=True)
class TruForConfig:
    """The settings of ``MODEL.EXTRA`` that matter, with IMDL-BenCo's values as defaults."""

    decoder_embed_dim: int = 512
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1
    num_classes: int = 2


def resolve_config_path(config_path: str | None) -> Path:
    """The file to read for ``config_path``.

    Empty / None, or a path that does not exist but is named ``trufor.yaml`` (IMDL-BenCo's run
    scripts pass ``./configs/trufor.yaml``, the copy its ``benco init`` writes), give the shipped
    configuration; any other path must exist.
    """
    if not config_path:
        return DEFAULT_CONFIG_PATH
    path = Path(os.path.expanduser(config_path))
    if path.is_file():
        return path
    if path.name == DEFAULT_CONFIG_PATH.name:
        logger.info("Trufor: %s not found; using the built-in %s", config_path, DEFAULT_CONFIG_PATH)
        return DEFAULT_CONFIG_PATH
    raise FileNotFoundError(
        f"Trufor: --config_path {config_path!r} does not exist; give a TruFor YAML file, or leave the "
        f"option empty (or name it 'trufor.yaml') for the built-in {DEFAULT_CONFIG_PATH}"
    )


def _section(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: {key} must be a mapping, got {type(value).__name__}")
    return value


def _expect(value: Any, allowed: tuple, key: str, where: str) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"{where}: {key} = {value!r} is not supported; TruFor implements {allowed[0]!r} only")


def load_config(config_path: str | None = None) -> TruForConfig:
    """Read a TruFor YAML file (IMDL-BenCo / official TruFor layout) into a :class:`TruForConfig`."""
    import yaml  # a dependency of timm; imported here so that importing the zoo stays light

    path = resolve_config_path(config_path)
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: not a readable YAML file ({err})") from err
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    model = _section(data, "MODEL", where)
    extra = _section(model, "EXTRA", where)
    dataset = _section(data, "DATASET", where)

    mods = model.get("MODS", ("RGB", "NP++"))
    if "RGB" not in str(mods) or "NP++" not in str(mods):
        raise ValueError(f"{where}: MODEL.MODS = {mods!r}; TruFor needs both 'RGB' and 'NP++'")
    _expect(extra.get("BACKBONE"), ("mit_b2",), "MODEL.EXTRA.BACKBONE", where)
    _expect(extra.get("DECODER"), ("MLPDecoder",), "MODEL.EXTRA.DECODER", where)
    _expect(extra.get("PREPRC"), ("imagenet",), "MODEL.EXTRA.PREPRC", where)
    _expect(extra.get("DETECTION"), ("confpool",), "MODEL.EXTRA.DETECTION", where)
    _expect(extra.get("CONF"), (True,), "MODEL.EXTRA.CONF", where)
    _expect(dataset.get("NUM_CLASSES"), (2,), "DATASET.NUM_CLASSES", where)
    if extra.get("CONF_BACKBONE"):
        raise ValueError(f"{where}: MODEL.EXTRA.CONF_BACKBONE (a separate confidence encoder) is not supported")
    for key, option in (("PRETRAINED", "--mit_b2_pretrain_weights"), ("NP_WEIGHTS", "--np_pretrain_weights")):
        if model.get(key) or extra.get(key):
            logger.warning("Trufor: %s sets %s, which is ignored; give the file with %s", where, key, option)

    defaults = TruForConfig()
    try:
        return TruForConfig(
            decoder_embed_dim=int(extra.get("DECODER_EMBED_DIM", defaults.decoder_embed_dim)),
            bn_eps=float(extra.get("BN_EPS", defaults.bn_eps)),
            bn_momentum=float(extra.get("BN_MOMENTUM", defaults.bn_momentum)),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: MODEL.EXTRA.DECODER_EMBED_DIM / BN_EPS / BN_MOMENTUM must be numbers ({err})") from err
