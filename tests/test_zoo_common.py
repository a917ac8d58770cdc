"""Every zoo model folder and the backbones: README, recipe.json in the ARCHITECTURE.md format,
recipe options that the constructor accepts, and registry entries."""

import inspect
import json
import re
from pathlib import Path

import pytest

from IMDLBenCo import runoptions
from IMDLBenCo.registry import MODELS

ROOT = Path(__file__).resolve().parents[1] / "IMDLBenCo"
ZOO_DIRS = sorted(p for p in (ROOT / "model_zoo").iterdir() if p.is_dir() and (p / "__init__.py").exists())
#: every option of the scripts (the table in IMDLBenCo/runoptions.py)
ENGINE_KEYS = runoptions.names()


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


E2E = {
    "segformer": ["--encoder_name", "mit_b0", "--if_predict_label", "--if_resizing"],
    "IML_ViT": ["--input_size", "64", "--embed_dim", "192", "--fpn_channels", "32", "--mlp_embeding_dim", "32",
                "--edge_mask_width", "3", "--if_padding"],
}


@pytest.mark.parametrize("name", sorted(E2E))
def test_one_epoch_through_the_training_entry(name, tmp_path):
    """A backbone and IML_ViT train one epoch and get tested by the engine, on 64-px synthetic data."""
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth
    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=64, seed=0)
    res = engine.train_main([
        "--model", name, "--data_path", info["splits"]["train"], "--test_data_path", info["splits"]["test"],
        "--output_dir", str(tmp_path / "out"), "--epochs", "1", "--batch_size", "2", "--test_batch_size", "2",
        "--image_size", "64", "--accum_iter", "1", "--warmup_epochs", "0", "--num_workers", "0",
        "--device", "cpu", "--test_period", "1", *E2E[name]], train_transform=False)
    losses = {k: v for k, v in res.items() if k.startswith("train_") and k.endswith("loss")}
    assert losses and all(v == v and abs(v) < 1e3 for v in losses.values())
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    assert (tmp_path / "out" / "checkpoint-0.pth").exists()
