"""The run scripts `benco init model_zoo` writes train and test every zoo model for one epoch.

A user edits the dataset paths in the generated launchers and runs them. Here the edits are made
the same way (dataset paths to a generated dataset, the weight-file placeholders dropped since no
weights are available offline) plus what makes a CPU run short: 64-px inputs, one epoch, batches of
2, one process. The launchers themselves run (`sh runs/train_<model>.sh` under torchrun), then
`sh runs/test_<model>.sh` on the checkpoint they wrote. Slow (about a minute per model on 2 cores):
`pytest --runslow tests/test_zoo_scripts.py`; PSCC_Net, the cheapest, always runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from IMDLBenCo.cli import init as init_cmd
from IMDLBenCo.cli import main

REPO = Path(__file__).resolve().parents[1]
MODELS = sorted(recipe["model"] for _, recipe in init_cmd.find_recipes("model_zoo"))
CHEAP = {"PSCC_Net"}

#: what a 64-px CPU run needs besides --image_size (model options tied to the input size)
SMALL = {
    "PSCC_Net": {"input_size": "64"},
    "IML_ViT": {"input_size": "64"},
    "ObjectFormer": {"input_size": "64"},
    "SparseViT": {"img_size": "64", "s_blocks3": "8 16 32 8", "s_blocks4": "8 16"},
    "MSCDI_Net": {"image_size": "256"},  # its GLCA windows need sides that are multiples of 256
}
_SIZES = {"image_size": "64", "test_batch_size": "2", "num_workers": "0"}
_TRAIN = {"epochs": "1", "batch_size": "2", "accum_iter": "1", "warmup_epochs": "0", "test_period": "1"}


def _shrink(text: str, data: Path, model: str, kind: str) -> str:
    """The edits: dataset paths, no weight placeholders, small sizes, one process."""
    text = re.sub(r'--data_path "[^"]*"', f'--data_path "{data / "train"}"', text)
    text = re.sub(r'--test_data_(path|json) "[^"]*"', r'--test_data_\1 "./test_datasets.json"', text)
    text = re.sub(r"--nproc_per_node=\d+", "--nproc_per_node=1", text)
    # a weight option whose value is still the /path/to/ placeholder: drop the line (random start)
    text = re.sub(r"\n\s+--\w+ \"?/path/to/[^\n]*\\", "", text)
    for name, value in {**_SIZES, **(_TRAIN if kind == "train" else {}), **SMALL.get(model, {})}.items():
        if re.search(rf"--{name} [^\n\\]+", text):
            text = re.sub(rf"--{name} [^\n\\]+", f"--{name} {value} ", text)
        else:
            text = text.replace("    --output_dir", f"    --{name} {value} \\\n    --output_dir", 1)
    return text


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from IMDLBenCo.datasets import synth

    root = tmp_path_factory.mktemp("zoo_project")
    info = synth.make_synthetic_dataset(str(root / "data"), n=6, size=64, seed=0)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["init", "model_zoo", "--yes"]) == 0
    finally:
        os.chdir(cwd)
    (root / "test_datasets.json").write_text(json.dumps({"synthetic": info["splits"]["test"]}))
    return root, Path(info["splits"]["train"]).parent


def _run(project_dir: Path, script: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # torchrun of this environment
    return subprocess.run(["sh", script], cwd=project_dir, capture_output=True, text=True, timeout=1500, env=env)


@pytest.mark.parametrize("model", [pytest.param(m, marks=() if m in CHEAP else pytest.mark.slow) for m in MODELS])
def test_generated_scripts_train_and_test_one_epoch(project, model):
    root, data = project
    for kind in ("train", "test"):
        launcher = root / "runs" / f"{kind}_{model}.sh"
        launcher.write_text(_shrink(launcher.read_text(), data, model, kind))
        proc = _run(root, f"runs/{kind}_{model}.sh")
        assert proc.returncode == 0, f"{launcher.name} failed:\n{proc.stderr[-3000:]}"
    out = root / f"output_dir_{model}"
    assert (out / "checkpoint-0.pth").is_file()
    rows = json.loads((root / f"eval_dir_{model}" / "summary.json").read_text())["rows"]
    assert rows and all(0.0 <= r["pixel_f1"] <= 1.0 for r in rows)
