"""Read the IMDL-BenCo state-dict manifests (../shared/reference/zoo_state_dicts/<name>.json).

Shared by the zoo tests: ``load_manifest(name)`` gives keys/shapes/params and
``manifest_state_dict(name)`` a zero-filled state dict with the reference keys, shapes and dtypes,
for strict-load tests. Tests skip when the reference folder is not present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MANIFEST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "zoo_state_dicts"


@dataclass
class Manifest:
    name: str
    params: int
    trainable_params: int
    input_size: int
    constructor_args: dict
    keys: list[str]
    shapes: dict[str, list[int]]
    dtypes: dict[str, str]
    frozen: list[str] = field(default_factory=list)


def manifest_path(name: str) -> Path:
    return MANIFEST_DIR / f"{name}.json"


def load_manifest(name: str) -> Manifest:
    """The manifest of registered model ``name``; skips the test when it is not available."""
    path = manifest_path(name)
    if not path.is_file():
        pytest.skip(f"reference manifest {path} not found")
    d = json.loads(path.read_text())
    entries = d["state_dict"]
    return Manifest(
        name=d["model"],
        params=int(d["params"]),
        trainable_params=int(d["trainable_params"]),
        input_size=int(d["input_size"]) if d.get("input_size") not in (None, "—") else 0,
        constructor_args=d.get("constructor_args") or {},
        keys=[e[0] for e in entries],
        shapes={e[0]: list(e[1]) for e in entries},
        dtypes={e[0]: e[2] for e in entries},
        frozen=list(d.get("frozen_params") or []),
    )


def manifest_state_dict(name: str):
    """Zero tensors with the manifest's keys, shapes and dtypes (``{"model": ...}`` not wrapped)."""
    import torch

    man = load_manifest(name)
    return {k: torch.zeros(man.shapes[k], dtype=getattr(torch, man.dtypes[k])) for k in man.keys}


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_params_close(model, name: str, rel: float = 0.005) -> None:
    """Parameter count of ``model`` within ``rel`` of the manifest's."""
    man = load_manifest(name)
    got = count_params(model)
    assert abs(got - man.params) <= rel * man.params, f"{name}: {got} params, reference {man.params}"
