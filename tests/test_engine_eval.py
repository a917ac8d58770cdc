"""test.py, test_robust.py, test_save_images.py and test_complexity.py on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from engine_support import MODEL, EngineTinyNet, MeanF1, make_json, make_mani
from PIL import Image


def _eval_args(tmp, data, ckpt, out="eval", **extra):
    args = ["--model", MODEL, "--test_data_path", str(data), "--checkpoint_path", str(ckpt),
            "--image_size", "32", "--test_batch_size", "2", "--num_workers", "0", "--device", "cpu",
            "--output_dir", str(tmp / out)]
    args.append("--if_padding" if extra.pop("padding", False) else "--if_resizing")
    for key, value in extra.items():
        args += [f"--{key}"] + ([] if value is True else [str(value)])
    return args


@pytest.fixture
def checkpoints(tmp_path):
    """A folder with checkpoint-0.pth, checkpoint-3.pth (different weights) and a stray file."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for epoch in (3, 0):
        torch.manual_seed(epoch)
        torch.save({"model": EngineTinyNet().state_dict(), "epoch": epoch}, folder / f"checkpoint-{epoch}.pth")
    torch.save(EngineTinyNet().state_dict(), folder / "checkpoint-best.pth")
    return folder


def test_test_main_checkpoints_times_sets(tmp_path, checkpoints):
    from IMDLBenCo.engine import test_main

    a = make_mani(tmp_path / "a", 5, seed=1)
    b = make_json(tmp_path, make_mani(tmp_path / "b", 3, seed=2), negatives=1)
    sets = tmp_path / "sets.json"
    sets.write_text(json.dumps({"A": str(a), "B": str(b)}))
    summary = test_main(_eval_args(tmp_path, sets, checkpoints), evaluators=[MeanF1()])
    rows = summary["rows"]
    assert [(r["epoch"], r["set"]) for r in rows] == [(0, "A"), (0, "B"), (3, "A"), (3, "B")]
    assert [r["count"] for r in rows] == [5, 4, 5, 4]
    assert rows[0]["mean_f1"] != rows[2]["mean_f1"]  # the two checkpoints really differ
    out = tmp_path / "eval"
    assert json.loads((out / "summary.json").read_text()) == summary
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,set,checkpoint,mean_f1") and len(csv_lines) == 5
    log = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 3]
    assert log[1]["test_A/mean_f1"] == rows[2]["mean_f1"] and "test_mean_f1" in log[0]
    assert list(out.glob("events.out.tfevents.*"))
    assert json.loads((out / "metric_definitions.json").read_text())["mean_f1"]


class ShiftWrapper:
    """A user-written attack wrapper: brightens the image by ``param``."""

    name = "Shift"

    def __init__(self, params):
        self.params = params

    def __iter__(self):
        for p in self.params:
            if p == 0:
                yield p, None
            else:
                yield p, (lambda image, mask, _p=p: {"image": np.clip(image.astype(int) + _p, 0, 255).astype(np.uint8),
                                                    "mask": mask})


def test_robustness_over_two_attacks(tmp_path, checkpoints):
    from IMDLBenCo.engine import test_robust_main
    from IMDLBenCo.transforms import JpegCompressionWrapper

    data = make_mani(tmp_path / "a", 4, seed=1)
    report = test_robust_main(_eval_args(tmp_path, data, checkpoints / "checkpoint-3.pth"),
                              evaluators=[MeanF1()], attacks=[JpegCompressionWrapper([0, 50]), ShiftWrapper([0, 120])])
    got = [(r["attack"], r["param"]) for r in report["results"]]
    assert got == [("JpegCompression", 0), ("JpegCompression", 50), ("Shift", 0), ("Shift", 120)]
    results = report["results"]
    assert results[0]["metrics"] == results[2]["metrics"]  # strength 0 = no attack, both times
    assert results[3]["metrics"]["mean_f1"] != results[2]["metrics"]["mean_f1"]
    assert all(r["metrics"]["count"] == 4 for r in results)
    saved = json.loads((tmp_path / "eval" / "robustness.json").read_text())
    assert saved["checkpoint"].endswith("checkpoint-3.pth") and saved["results"] == results


@pytest.mark.parametrize("padding", [False, True])
def test_save_images_with_masks(tmp_path, checkpoints, padding):
    from IMDLBenCo.engine import save_images_main

    data = make_mani(tmp_path / "a", 3, seed=1)
    result = save_images_main(_eval_args(tmp_path, data, checkpoints / "checkpoint-3.pth", padding=padding))
    out = tmp_path / "eval"
    preds = json.loads((out / "predictions.json").read_text())
    assert [p["name"] for p in preds] == ["img00.png", "img01.png", "img02.png"]
    for p in preds:
        saved = Image.open(out / p["pred_path"])
        original = Image.open(p["image_path"])
        assert saved.mode == "L" and saved.size == original.size  # 8-bit, at the original size
        assert p["label"] == 1 and 0.0 <= p["pred_label"] <= 1.0
    assert json.loads((out / "pred_label.json").read_text()) == {p["name"]: p["pred_label"] for p in preds}
    assert result["predictions"] == preds


def test_save_images_without_ground_truth(tmp_path, checkpoints):
    from IMDLBenCo.engine import save_images_main

    folder = tmp_path / "photos"
    (folder / "x").mkdir(parents=True)
    (folder / "y").mkdir()
    rng = np.random.default_rng(0)
    for sub, size in (("x", (30, 50)), ("y", (44, 20))):  # the same file name in two folders
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(folder / sub / "same.jpg")
    Image.fromarray(rng.integers(0, 256, (25, 25, 3), dtype=np.uint8)).save(folder / "x" / "same.png")
    save_images_main(_eval_args(tmp_path, folder, checkpoints / "checkpoint-0.pth"))
    out = tmp_path / "eval"
    preds = json.loads((out / "predictions.json").read_text())
    paths = [p["pred_path"] for p in preds]
    assert len(set(paths)) == 3 and all((out / p).is_file() for p in paths)
    for p in preds:
        assert p["label"] is None and p["mask_path"] is None
        assert Image.open(out / p["pred_path"]).size == Image.open(p["image_path"]).size


def test_complexity(tmp_path):
    from IMDLBenCo.engine import complexity_main

    args = ["--model", MODEL, "--image_size", "32", "--if_resizing", "--device", "cpu",
            "--output_dir", str(tmp_path / "cx"), "--width", "8"]
    report = complexity_main(args)
    params = sum(p.numel() for p in EngineTinyNet(width=8).parameters())
    assert report["params"] == params
    # conv1 (3→8, 3×3) + conv2 (8→1, 3×3) on 32×32, 2 FLOPs per multiply-add
    assert report["flops"] == 2 * 32 * 32 * (8 * 3 * 9 + 1 * 8 * 9)
    assert report["macs"] == report["flops"] // 2
    assert json.loads((tmp_path / "cx" / "complexity.json").read_text()) == report


def test_evaluation_mode_uses_local_batch_statistics_for_syncbn():
    """--no_model_eval keeps train mode; SyncBatchNorm then must not wait for other ranks."""
    from IMDLBenCo.engine.builders import evaluation_mode

    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))
    bn = model[0]
    assert isinstance(bn, torch.nn.SyncBatchNorm)
    model.eval()
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    with evaluation_mode(model, keep_train_mode=True) as net:
        assert net.training and "forward" in vars(bn)
        y = net(x)
    assert "forward" not in vars(bn) and not model.training  # restored
    expected = torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, training=True)
    assert torch.allclose(y, expected, atol=1e-5)
    with evaluation_mode(model, keep_train_mode=False) as net:
        assert not net.training


def test_checkpoints_are_found_in_epoch_order_not_name_order(tmp_path):
    from IMDLBenCo.engine.checkpoint import find_checkpoints, latest_checkpoint
    from IMDLBenCo.engine.evaluate_checkpoints import checkpoints_to_test

    for name in ("checkpoint-10.pth", "checkpoint-2.pth", "checkpoint-best.pth", "checkpoint-3.pth.tmp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "checkpoint-7.pth").mkdir()  # a folder, not a checkpoint
    numbered, others = find_checkpoints(tmp_path)
    assert numbered == [(2, tmp_path / "checkpoint-2.pth"), (10, tmp_path / "checkpoint-10.pth")]
    assert others == [tmp_path / "checkpoint-best.pth"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10.pth" and latest_checkpoint(tmp_path / "no") is None
    assert checkpoints_to_test(str(tmp_path / "checkpoint-best.pth")) == [(0, tmp_path / "checkpoint-best.pth")]
    (tmp_path / "checkpoint-2.pth").unlink()
    (tmp_path / "checkpoint-10.pth").unlink()
    with pytest.raises(FileNotFoundError, match=r"--checkpoint_path .*checkpoint-best\.pth"):
        checkpoints_to_test(str(tmp_path))
