"""Every zoo model folder and the backbones: README, recipe.json in the ARCHITECTURE.md format,
recipe options that the constructor accepts, and registry entries."""

import inspect
import json
import re
from pathlib import Path

import pytest

from IMDLBenCo.registry import MODELS

ROOT = Path(__file__).resolve().parents[1] / "IMDLBenCo"
ZOO_DIRS = sorted(p for p in (ROOT / "model_zoo").iterdir() if p.is_dir() and (p / "__init__.py").exists())
ENGINE_KEYS = {"if_padding", "if_resizing", "image_size", "edge_mask_width", "if_predict_label", "batch_size",
               "test_batch_size", "lr", "blr", "min_lr", "weight_decay", "warmup_epochs", "accum_iter", "epochs",
               "test_period", "seed", "if_not_amp", "find_unused_parameters", "no_model_eval", "num_workers",
               "data_path", "test_data_path", "clip_grad"}


def _recipes():
    out = []
    for d in ZOO_DIRS:
        if (d / "recipe.json").exists():
            out.append((d.name, json.loads((d / "recipe.json").read_text())))
    for rec in json.loads((ROOT / "modules" / "backbones" / "recipe.json").read_text()):
        out.append(("backbones", rec))
    return out


RECIPES = _recipes()


@pytest.mark.parametrize("folder", [d.name for d in ZOO_DIRS])
def test_zoo_folder_has_readme_and_recipe(folder):
    d = ROOT / "model_zoo" / folder
    readme = (d / "README.md").read_text()
    assert re.search(r"\b(19|20)\d\d\b", readme), f"{folder}/README.md: no paper year"
    for word in ("weight", "licen"):  # the pretrained file and its licence
        assert word in readme.lower(), f"{folder}/README.md does not mention {word!r}"
    assert (d / "recipe.json").exists()


@pytest.mark.parametrize("where,recipe", RECIPES, ids=[f"{w}:{r['model']}" for w, r in RECIPES])
def test_recipe_format_and_options(where, recipe):
    assert set(recipe) >= {"model", "nproc_per_node", "train", "test", "weights"}
    assert recipe["model"] in MODELS
    assert isinstance(recipe["nproc_per_node"], int) and recipe["nproc_per_node"] >= 1
    w = recipe["weights"]
    assert set(w) >= {"option", "file", "source"} and w["option"].startswith("--")
    params = set(inspect.signature(MODELS.get(recipe["model"])).parameters)
    assert w["option"][2:] in params
    for section in ("train", "test"):
        assert bool(recipe[section].get("if_padding")) != bool(recipe[section].get("if_resizing"))
        unknown = set(recipe[section]) - ENGINE_KEYS - params
        assert not unknown, f"{recipe['model']} {section}: options neither engine nor model: {unknown}"


def test_zoo_index_lists_every_model():
    text = (ROOT / "model_zoo" / "README.md").read_text()
    for _, recipe in RECIPES:
        assert recipe["model"] in text
