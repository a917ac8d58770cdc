"""``benco demo``: the whole pipeline end to end on generated data, and DemoNet's contract."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_demonet_output_contract():
    from IMDLBenCo.demo.model import DemoNet
    from IMDLBenCo.engine import check_model_output
    from IMDLBenCo.registry import MODELS

    assert MODELS.get("DemoNet") is DemoNet
    model = DemoNet(width=4)
    image = torch.randn(2, 3, 40, 48)
    mask = torch.zeros(2, 1, 40, 48)
    mask[0, :, 5:20, 10:30] = 1
    label = torch.tensor([1, 0])
    out = model(image=image, mask=mask, label=label)
    batch = {"image": image, "mask": mask, "label": label}
    check_model_output(out, batch, training=True)
    assert out["pred_mask"].shape == (2, 1, 40, 48) and out["pred_label"].shape == (2,)
    assert 0 <= out["pred_mask"].min() and out["pred_mask"].max() <= 1
    out["backward_loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_demo_quick_end_to_end(tmp_path):
    """The command README.md gives first: data → train → test → robustness → save → complexity → report."""
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "IMDLBenCo.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    trained, untrained = summary["trained_pixel_f1"], summary["untrained_pixel_f1"]
    # it learned something real on the held-out test split
    assert trained > untrained + 0.15, (trained, untrained)
    assert summary["trained"]["image_auc"] > 0.75
    # the last lines: key metrics, what the model is, then the report path
    tail = done.stdout.strip().splitlines()[-9:]
    assert tail[-1] == f"report: {out / 'report' / 'index.html'}"
    assert any(re.search(rf"pixel F1: trained {trained:.4f} vs untrained {untrained:.4f}", line) for line in tail)
    printed = " ".join(line.strip() for line in tail)
    assert "note: demo model: DemoNet trained" in printed and "not a detector for real photos" in printed
    # ... and so do its summary, every checkpoint it trained (benco predict can repeat it) and the report
    from IMDLBenCo.demo.notes import checkpoint_note

    assert summary["note"].startswith("demo model: DemoNet trained") and "JPEG" in summary["robustness_note"]
    for ckpt in (out / "train").glob("checkpoint-*.pth"):
        if ckpt.name != "checkpoint-resume.pth":
            assert checkpoint_note(ckpt) == summary["note"], ckpt

    # every stage left its files
    assert (out / "data" / "train.json").is_file() and (out / "data" / "test_datasets.json").is_file()
    assert (out / "train" / "checkpoint-best.pth").is_file()
    epochs = [json.loads(line) for line in (out / "train" / "log.txt").read_text().splitlines()]
    assert len(epochs) == summary["settings"]["epochs"] and "test_synth_val/pixel_f1" in epochs[-1]
    assert (out / "train" / "train_steps.jsonl").is_file() and (out / "train" / "metric_definitions.json").is_file()
    rows = json.loads((out / "test" / "summary.json").read_text())["rows"]
    assert {r["set"] for r in rows} == {"synth_test"} and len(rows) >= summary["settings"]["epochs"]
    robust = json.loads((out / "robust" / "robustness.json").read_text())
    assert {r["attack"] for r in robust["results"]} == {"GaussianBlur", "GaussianNoise", "JpegCompression"}
    test_entries = json.loads((out / "data" / "test.json").read_text())
    predictions = json.loads((out / "pred" / "predictions.json").read_text())
    assert len(predictions) == len(test_entries) == len(json.loads((out / "pred" / "pred_label.json").read_text()))
    assert len(list((out / "pred").rglob("*.png"))) == len(test_entries)
    assert json.loads((out / "complexity" / "complexity.json").read_text())["params"] > 1000

    # the report is built from the real run folders
    page = (out / "report" / "index.html").read_text()
    for needle in ("synth_test", "synth_val", "GaussianNoise", 'class="gallery"', "Model complexity", "Side by side",
                   "Read first", "not a detector for real photos", "4:2:0 chroma subsampling"):
        assert needle in page, needle
    for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', page):
        assert (out / "report" / src).is_file(), src
    if shutil.which("chromium"):
        from test_report import render_check

        result = render_check(out / "report" / "index.html", REPO_ROOT / "test-artifacts" / "demo_report.png", tmp_path)
        assert result["images"] and all(i["ok"] for i in result["images"]), result["images"]
        assert not result["errors"] and not result["console"], result


def test_demo_same_seed_same_metrics(tmp_path):
    from IMDLBenCo.demo.pipeline import DemoSettings, run_demo

    tiny = DemoSettings(n_images=40, image_size=32, epochs=2, batch_size=8, lr=5e-3, width=4,
                        blur=(0, 3), noise=(5,), jpeg=(70,))
    first = run_demo(tmp_path / "a", seed=7, settings=tiny)
    second = run_demo(tmp_path / "b", seed=7, settings=tiny)
    assert first["trained"] == second["trained"] and first["untrained"] == second["untrained"]
    assert json.loads((tmp_path / "a" / "robust" / "robustness.json").read_text())["results"] == \
        json.loads((tmp_path / "b" / "robust" / "robustness.json").read_text())["results"]


def test_note_written_into_every_checkpoint_keeps_the_best_link(tmp_path):
    import os

    from IMDLBenCo.demo.notes import add_note_to_checkpoints, checkpoint_note

    for epoch in range(3):
        torch.save({"model": {"w": torch.full((2,), float(epoch))}, "epoch": epoch}, tmp_path / f"checkpoint-{epoch}.pth")
    os.link(tmp_path / "checkpoint-1.pth", tmp_path / "checkpoint-best.pth")
    torch.save({"model": {}, "optimizer": {}}, tmp_path / "checkpoint-resume.pth")
    assert add_note_to_checkpoints(tmp_path, "demo model: a test") == 3
    for epoch in range(3):
        ckpt = torch.load(tmp_path / f"checkpoint-{epoch}.pth", weights_only=True)
        assert ckpt["note"] == "demo model: a test" and ckpt["epoch"] == epoch and ckpt["model"]["w"][0] == epoch
    assert os.path.samefile(tmp_path / "checkpoint-best.pth", tmp_path / "checkpoint-1.pth")
    assert checkpoint_note(tmp_path / "checkpoint-best.pth") == "demo model: a test"
    assert checkpoint_note(tmp_path / "checkpoint-resume.pth") is None  # the training state is left alone
    assert checkpoint_note(tmp_path / "no_such.pth") is None and checkpoint_note({"note": " "}) is None
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob("*.link"))


def test_report_shows_notes_first(tmp_path):
    from test_report import make_train_run

    from IMDLBenCo.report import build_report

    page = build_report([make_train_run(tmp_path / "train")], out=tmp_path / "rep",
                        notes=["demo model: <not> for real photos", ""]).read_text()
    box = page.split('<div class="notes"')[1].split("</div>")[0]
    assert "Demo model: &lt;not&gt; for real photos" in box and box.count("<li>") == 1
    assert page.index('class="notes"') < page.index('class="cards"')
    assert 'class="notes"' not in build_report([tmp_path / "train"], out=tmp_path / "rep2").read_text()
