"""The Case Three tutorial (reference/seed-case-three.txt), followed as a new user would.

`benco init` in an empty folder; the tutorial's ConvNeXt model written into mymodel.py
(timm, pretrained=False); a JsonDataset made with `benco data json` from real COVERAGE images
and a ManiDataset folder; the generated scripts and .sh launchers edited as the tutorial says
(model name, import line, dataset paths, --nproc_per_node=2, small sizes); then every .sh runs.
The fast variant uses convnext_atto at 64 px; the tutorial's convnext_tiny runs with --runslow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from engine_support import make_mani, read_jsonl, run_in_group

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

MYMODEL = '''
from IMDLBenCo.registry import MODELS
import torch.nn as nn
import torch
import torch.nn.functional as F
import timm


class ConvNeXtDecoder(nn.Module):
    """Adapted ConvNeXt feature decoder"""
    def __init__(self, encoder_channels=ENCODER_CHANNELS, decoder_channels=[256, 128, 64, 32]):
        super().__init__()
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(encoder_channels[-1], decoder_channels[0], kernel_size=4, stride=4),
            nn.GELU(),
            nn.ConvTranspose2d(decoder_channels[0], decoder_channels[1], kernel_size=4, stride=4),
            nn.GELU(),
            nn.Conv2d(decoder_channels[1], decoder_channels[2], kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(decoder_channels[2], decoder_channels[3], kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(decoder_channels[3], 1, kernel_size=1)
        )

    def forward(self, x):
        return self.decoder(x)


@MODELS.register_module()
class MyConvNeXt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = timm.create_model(
            "BACKBONE",
            pretrained=False,  # no download here; the tutorial uses pretrained=True
            features_only=True,
            out_indices=[3],
        )
        self.seg_decoder = ConvNeXtDecoder()
        self.cls_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(ENCODER_CHANNELS[-1], 1)
        )
        self.seg_loss = nn.BCEWithLogitsLoss()
        self.cls_loss = nn.BCEWithLogitsLoss()

    def forward(self, image, mask, label, *args, **kwargs):
        features = self.backbone(image)[0]
        seg_pred = self.seg_decoder(features)
        seg_pred = F.interpolate(seg_pred, size=mask.shape[2:], mode='bilinear', align_corners=False)
        cls_pred = self.cls_head(features).squeeze(-1)
        seg_loss = self.seg_loss(seg_pred, mask)
        cls_loss = self.cls_loss(cls_pred, label.float())
        combined_loss = seg_loss + cls_loss
        output_dict = {
            "backward_loss": combined_loss,
            "pred_mask": torch.sigmoid(seg_pred),
            "pred_label": torch.sigmoid(cls_pred),
            "visual_loss": {
                "total_loss": combined_loss,
                "seg_loss": seg_loss,
                "cls_loss": cls_loss
            },
            "visual_image": {
                "pred_mask": seg_pred,
            }
        }
        return output_dict
'''


def set_option(text: str, name: str, value: str) -> str:
    """Replace the value of ``--name`` on its own line of a launcher."""
    new, count = re.subn(rf"^(\s*--{name}) [^\\\n]*", lambda m: f"{m.group(1)} {value} ", text, flags=re.M)
    assert count == 1, (name, count)
    return new


def drop_option(text: str, name: str) -> str:
    new, count = re.subn(rf"\n\s*--{name}\b[^\n]*", "", text)
    assert count == 1, name
    return new


def edit_launcher(path: Path, nproc: int = 2, **options: str) -> None:
    text = path.read_text()
    text = text.replace("--model MyModel", "--model MyConvNeXt")
    text = drop_option(text, "MyModel_Customized_param")
    text = drop_option(text, "pre_trained_weights")
    if nproc == 2:
        text = text.replace("--nproc_per_node=1", "--nproc_per_node=2").replace("CUDA_VISIBLE_DEVICES=0 ", "CUDA_VISIBLE_DEVICES=0,1 ")
    for name, value in options.items():
        text = set_option(text, name, value)
    path.write_text(text)


def run(cmd, cwd: Path, timeout: float = 300) -> str:
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    return run_in_group(cmd, cwd, env, timeout)


def _logs(base: Path) -> str:
    return (base / "logs.log").read_text()[-3000:] + (base / "error.log").read_text()[-3000:]


def walkthrough(tmp_path: Path, coverage_dir: Path, backbone: str, channels: list, size: int, eval_nproc: int) -> None:
    project = tmp_path / "project"
    project.mkdir()
    run([str(VENV_BIN / "benco"), "init"], project)
    (project / "mymodel.py").write_text(
        MYMODEL.replace("BACKBONE", backbone).replace("ENCODER_CHANNELS", repr(channels)))
    # the tutorial's three import edits, literally; test_save_images.py and test_complexity.py
    # are not mentioned by it and must work unedited
    for script in ("train.py", "test.py", "test_robust.py"):
        path = project / script
        text = path.read_text()
        assert "from mymodel import MyModel " in text
        path.write_text(text.replace("from mymodel import MyModel ", "from mymodel import MyConvNeXt "))
    robust = project / "test_robust.py"
    text = robust.read_text()
    start, end = text.index("robustness_list = ["), text.index("]\n", text.index("JpegCompressionWrapper(")) + 2
    robust.write_text(text[:start] + "robustness_list = [\n    GaussianBlurWrapper([0, 3]),\n"
                      "    JpegCompressionWrapper([50]),\n]\n" + text[end:])

    # data: a ManiDataset folder and, with `benco data json`, a JsonDataset of real COVERAGE images
    train = make_mani(tmp_path / "data" / "train", 6, size=(60, 70), seed=1)
    test_mani = make_mani(tmp_path / "data" / "test", 3, size=(50, 60), seed=2)
    cov = tmp_path / "data" / "coverage"
    for sub in ("Tp", "Gt"):
        (cov / sub).mkdir(parents=True)
        for name in ("1t.png", "2t.png", "3t.png"):
            shutil.copy(coverage_dir / sub / name, cov / sub / name)
    run([str(VENV_BIN / "benco"), "data", "json", str(cov / "Tp"), str(cov / "Gt"), "-o", str(tmp_path / "data" / "coverage.json")], project)
    (project / "test_datasets.json").write_text(json.dumps(
        {"coverage": str(tmp_path / "data" / "coverage.json"), "synthetic": str(test_mani)}, indent=2))

    small = {"image_size": str(size), "num_workers": "0", "nproc": eval_nproc}
    edit_launcher(project / "train_mymodel.sh", data_path=f'"{train}"', test_data_path='"./test_datasets.json"',
                  epochs="2", batch_size="2", test_batch_size="2", accum_iter="2", lr="1e-3", warmup_epochs="1",
                  **{**small, "nproc": 2})
    edit_launcher(project / "test_mymodel.sh", test_batch_size="2", **small)
    edit_launcher(project / "test_robust_mymodel.sh", test_data_path=f'"{test_mani}"',
                  checkpoint_path='"./output_dir/checkpoint-1.pth"', **small)
    edit_launcher(project / "test_save_image_mymodel.sh", test_data_path=f'"{tmp_path / "data" / "coverage.json"}"',
                  checkpoint_path='"./output_dir/checkpoint-1.pth"', **small)
    text = (project / "test_complexity_mymodel.sh").read_text().replace("--model MyModel", "--model MyConvNeXt")
    text = set_option(drop_option(drop_option(text, "MyModel_Customized_param"), "pre_trained_weights"),
                      "image_size", str(size))
    (project / "test_complexity_mymodel.sh").write_text(text)

    run(["sh", "train_mymodel.sh"], project)
    out = project / "output_dir"
    log = read_jsonl(out / "log.txt")
    assert [r["epoch"] for r in log] == [0, 1], _logs(out)
    assert "test_pixel_f1" in log[0] and "test_coverage/pixel_f1" in log[1] and "train_seg_loss" in log[0]
    assert (out / "checkpoint-1.pth").is_file() and list(out.glob("events.out.tfevents.*"))
    assert "Traceback" not in (out / "error.log").read_text()

    run(["sh", "test_mymodel.sh"], project)
    summary = json.loads((project / "eval_dir" / "summary.json").read_text())
    assert {(r["epoch"], r["set"]) for r in summary["rows"]} == {(e, s) for e in (0, 1) for s in ("coverage", "synthetic")}

    run(["sh", "test_robust_mymodel.sh"], project)
    robustness = json.loads((project / "eval_robust_dir" / "robustness.json").read_text())
    assert [(r["attack"], r["param"]) for r in robustness["results"]] == [
        ("GaussianBlur", 0), ("GaussianBlur", 3), ("JpegCompression", 50)]

    run(["sh", "test_save_image_mymodel.sh"], project)
    preds = json.loads((project / "save_img_dir" / "predictions.json").read_text())
    assert sorted(p["name"] for p in preds) == ["1t.png", "2t.png", "3t.png"]
    from PIL import Image

    for p in preds:
        assert Image.open(project / "save_img_dir" / p["pred_path"]).size == Image.open(p["image_path"]).size
    assert len(json.loads((project / "save_img_dir" / "pred_label.json").read_text())) == 3

    run(["sh", "test_complexity_mymodel.sh"], project)
    complexity = json.loads((project / "complexity_dir" / "complexity.json").read_text())
    assert complexity["model"] == "MyConvNeXt" and complexity["params"] > 0 and complexity["flops"] > 0


@pytest.mark.dist
def test_walkthrough_fast(tmp_path, coverage_dir):
    """Training under 2 processes; the evaluation launchers with 1 (2-process evaluation is
    covered by test_engine_dist.py), to keep process start-ups few."""
    walkthrough(tmp_path, coverage_dir, "convnext_atto", [40, 80, 160, 320], 64, eval_nproc=1)


@pytest.mark.slow
@pytest.mark.dist
def test_walkthrough_convnext_tiny(tmp_path, coverage_dir):
    """The tutorial's convnext_tiny, every launcher with --nproc_per_node=2."""
    walkthrough(tmp_path, coverage_dir, "convnext_tiny", [96, 192, 384, 768], 128, eval_nproc=2)
