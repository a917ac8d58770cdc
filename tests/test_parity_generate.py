"""scripts/parity_generate.py (the fixture generator scripts/parity.sh runs against IMDL-BenCo
0.1.45): the parts that do not need the reference installed. Its table of model configurations
and its inputs must be the stored fixtures' (README §2, §3); synthetic sources are deterministic.
The reference-dependent parts run in `bash scripts/parity.sh`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from parity import INPUTS_DIR, MODELS_DIR, model_fixture_names

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("parity_generate", REPO / "scripts" / "parity_generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["parity_generate"] = module
    spec.loader.exec_module(module)
    return module


def test_model_table_is_the_stored_fixtures(gen):
    names = model_fixture_names()
    if not names:
        pytest.skip(f"no model fixtures in {MODELS_DIR}")
    assert set(names) <= set(gen.MODEL_CONFIGS)
    if not os.environ.get("IMDLBENCO_PARITY_DIR"):  # ../shared holds every fixture of README §3
        assert sorted(gen.MODEL_CONFIGS) == sorted(names)
    for name in names:
        fx = torch.load(MODELS_DIR / f"{name}.pt", weights_only=True)
        cfg = gen.MODEL_CONFIGS[name]
        assert json.loads(fx["kwargs_json"]) == cfg["kwargs"], name
        assert fx["input_file"] == cfg["input"], name
        assert fx["note"] == cfg.get("note", ""), name
        # a weight-file or config argument the generator substitutes is recorded in the kwargs
        assert set(cfg.get("weights", [])) | set(cfg.get("configs", [])) <= set(cfg["kwargs"]), name


def test_inputs_are_rebuilt_exactly(gen, tmp_path: Path):
    if not (DATASETS / "COVERAGE" / "Tp" / "1t.png").is_file() or not INPUTS_DIR.is_dir():
        pytest.skip("../shared/datasets or the stored inputs are not present")
    gen.make_inputs(DATASETS, tmp_path)
    for stored in sorted(INPUTS_DIR.glob("*.pt")):
        ours = torch.load(tmp_path / stored.name, weights_only=True)
        ref = torch.load(stored, weights_only=True)
        assert set(ours) == set(ref), stored.name
        for key in ref:
            assert ours[key].dtype == ref[key].dtype and torch.equal(ours[key], ref[key]), (stored.name, key)


def test_synthetic_sources_are_deterministic(gen, tmp_path: Path):
    def digest(root: Path) -> dict:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    gen.make_synthetic_sources(tmp_path / "a")
    gen.make_synthetic_sources(tmp_path / "b")
    files = digest(tmp_path / "a")
    assert files == digest(tmp_path / "b")
    # every source the data fixtures and inputs read, with a mask for each tampered image
    for _fid, folder, image, mask in gen.DATA_SOURCES:
        assert f"{folder}/{image}" in files
        assert mask is None or f"{folder}/{mask}" in files
    from PIL import Image

    for rel, size in gen.SOURCE_SIZES.items():
        folder = "MISC_samples" if "CASIA" in rel else "COVERAGE"
        assert Image.open(tmp_path / "a" / folder / rel).size == size


def test_generator_refuses_our_package(gen):
    """Both packages are called IMDLBenCo: run with this environment, it must stop, not regenerate
    fixtures from our own code."""
    with pytest.raises(SystemExit, match="not the reference"):
        gen.import_reference()
