"""Bad input and faults: one clear message (or it works), never a hang, a wrong result or lost work.

Each case of the reliability campaign is here: arguments validated before any work, checkpoint
files that cannot be loaded, evaluator input errors, a full disk, bad model output on a later
batch, errors found while testing after an epoch, unclear dataset files. The distributed cases
(a failing rank) are in test_engine_dist.py; the kill-during-save loop in test_engine_train.py.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_support import MODEL, EngineTinyNet, MeanF1, base_args, make_mani, read_jsonl

from IMDLBenCo.registry import MODELS

REPO = Path(__file__).resolve().parents[1]


@MODELS.register_module(name="LateLogitsNet", force=True)
class LateLogitsNet(EngineTinyNet):
    """Returns logits as ``pred_mask`` from its second evaluation batch on (eval mode only)."""

    def __init__(self) -> None:
        super().__init__()
        self.eval_calls = 0

    def forward(self, image, mask, label, *args, **kwargs):
        out = super().forward(image, mask, label)
        if not self.training:
            self.eval_calls += 1
            if self.eval_calls >= 2:
                out["pred_mask"] = out["pred_mask"] * 40 - 20
            if self.eval_calls >= 3:
                out["pred_mask"] = out["pred_mask"] * float("nan")
        return out


@pytest.fixture
def data(tmp_path):
    return make_mani(tmp_path / "train", 4, seed=1)


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize("option, value, says", [
    ("lr", "-0.1", "--lr -0.1: must be a positive finite number"),
    ("lr", "nan", "--lr nan: must be a positive finite number"),
    ("blr", "-1", "--blr -1.0: must be a positive finite number"),
    ("image_size", "0", "--image_size 0: must be a positive number of pixels"),
    ("num_workers", "-1", "--num_workers -1: must be 0"),
    ("test_batch_size", "0", "--test_batch_size 0: must be 1 or more"),
    ("clip_grad", "-1", "--clip_grad -1.0: must be a positive finite gradient norm"),
    ("weight_decay", "-0.05", "--weight_decay -0.05: must be 0 or a positive"),
    ("warmup_epochs", "-1", "--warmup_epochs -1.0: must be 0 or a positive"),
    ("save_period", "-2", "--save_period -2: must be 0"),
    ("min_lr", "0.1", "--min_lr 0.1 is above --lr 0.01"),
    ("edge_mask_width", "6", "--edge_mask_width 6: must be an odd number of pixels >= 3"),
    ("device", "tpu", "--device tpu: unknown device"),
])
def test_bad_training_arguments_are_refused_before_any_work(tmp_path, data, capsys, option, value, says):
    from IMDLBenCo.engine import train_main

    argv = base_args(tmp_path, data) + [f"--{option}", value]
    with pytest.raises(SystemExit) as info:
        train_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("script", ["train", "test", "test_robust", "test_save_images", "test_complexity"])
def test_cuda_without_gpu_is_one_message(tmp_path, data, capsys, script):
    from IMDLBenCo import engine

    main = {"train": engine.train_main, "test": engine.test_main, "test_robust": engine.test_robust_main,
            "test_save_images": engine.save_images_main, "test_complexity": engine.complexity_main}[script]
    argv = ["--model", MODEL, "--if_resizing", "--image_size", "32", "--device", "cuda",
            "--output_dir", str(tmp_path / "o")]
    argv += {"train": ["--data_path", str(data)], "test_complexity": []}.get(
        script, ["--test_data_path", str(data), "--checkpoint_path", str(tmp_path / "c.pth")])
    with pytest.raises(SystemExit):
        main(argv)
    assert "--device cuda: PyTorch sees no CUDA device here; use --device cpu" in capsys.readouterr().err


def test_min_lr_above_the_lr_derived_from_blr(tmp_path, data):
    from IMDLBenCo.engine import train_main
    from IMDLBenCo.errors import UsageError

    argv = [a for a in base_args(tmp_path, data) if a not in ("--lr", "1e-2")]
    with pytest.raises(UsageError, match=r"--min_lr 0.5 is above the learning rate .* \(from --blr"):
        train_main(argv + ["--min_lr", "0.5"])


def test_model_options_without_model_say_that_model_is_missing(tmp_path, data, capsys):
    from IMDLBenCo.engine import train_main

    with pytest.raises(SystemExit):
        train_main(["--data_path", str(data), "--if_resizing", "--width", "3"])
    err = capsys.readouterr().err
    assert "--model is required" in err and "--width" in err and "unrecognized" not in err


def test_unknown_best_metric_is_refused_before_the_first_epoch(tmp_path, data):
    from IMDLBenCo.engine import train_main
    from IMDLBenCo.errors import UsageError

    with pytest.raises(UsageError, match=r"--best_metric 'pixel_f2' is not a metric .*mean_f1"):
        train_main(base_args(tmp_path, data, test_data_path=data, best_metric="pixel_f2"),
                   evaluators=[MeanF1()], train_transform=False)
    assert not (tmp_path / "out" / "checkpoint-0.pth").exists()  # refused before training


def test_compatibility_flags_say_they_are_ignored(capsys):
    from IMDLBenCo.engine import train_main

    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--world_size WORLD_SIZE accepted for IMDL-BenCo launchers and ignored" in text


# ------------------------------------------------------------------ lost work
def test_error_while_testing_after_an_epoch_keeps_that_epochs_checkpoint(tmp_path, data):
    """An unreadable test image met after epoch 0's training: the epoch's weights and resume
    state are on disk; fixing the image and --resume auto tests epoch 0 and goes on."""
    from PIL import Image

    from IMDLBenCo.engine import train_main
    from IMDLBenCo.errors import DatasetError

    test_set = make_mani(tmp_path / "test", 3, seed=2)
    good = (test_set / "Tp" / "img01.png").read_bytes()
    (test_set / "Tp" / "img01.png").write_bytes(good[:200])  # truncated: header fine, pixels missing
    argv = base_args(tmp_path, data, test_data_path=test_set, test_period=1, epochs=2)
    with pytest.raises(DatasetError, match="img01.png"):
        train_main(argv, evaluators=[MeanF1()], train_transform=False)
    out = tmp_path / "out"
    assert torch.load(out / "checkpoint-0.pth", weights_only=True)["epoch"] == 0
    assert torch.load(out / "checkpoint-resume.pth", weights_only=True)["test_pending"] is True
    (test_set / "Tp" / "img01.png").write_bytes(good)
    Image.open(test_set / "Tp" / "img01.png").load()
    result = train_main(argv + ["--resume", "auto"], evaluators=[MeanF1()], train_transform=False)
    log = read_jsonl(out / "log.txt")
    assert [r["epoch"] for r in log] == [0, 1] and all("test_mean_f1" in r for r in log)
    assert result["best"]["epoch"] in (0, 1) and (out / "checkpoint-best.pth").is_file()


def test_bad_output_on_a_later_test_batch_keeps_the_checkpoint(tmp_path, data):
    from IMDLBenCo.engine import ModelOutputError, train_main

    test_set = make_mani(tmp_path / "test", 6, seed=2)
    argv = base_args(tmp_path, data, test_data_path=test_set, test_period=1, epochs=1, test_batch_size=2)
    argv[argv.index(MODEL)] = "LateLogitsNet"
    with pytest.raises(ModelOutputError, match=r"batch 1 \(img02.png, img03.png\).*look like logits"):
        train_main(argv, evaluators=[MeanF1()], train_transform=False)
    assert (tmp_path / "out" / "checkpoint-0.pth").is_file()


@pytest.mark.parametrize("script", ["test", "test_save_images"])
def test_every_evaluation_batch_is_checked(tmp_path, script):
    from IMDLBenCo.engine import ModelOutputError, save_images_main, test_main

    data = make_mani(tmp_path / "d", 6, seed=3)
    ckpt = tmp_path / "checkpoint-0.pth"
    torch.save({"model": LateLogitsNet().state_dict()}, ckpt)
    argv = ["--model", "LateLogitsNet", "--test_data_path", str(data), "--checkpoint_path", str(ckpt),
            "--if_resizing", "--image_size", "32", "--test_batch_size", "2", "--num_workers", "0",
            "--output_dir", str(tmp_path / "o")]
    main = test_main if script == "test" else save_images_main
    with pytest.raises(ModelOutputError, match=r"batch 1 \(img02.png, img03.png\)"):
        main(argv, **({"evaluators": [MeanF1()]} if script == "test" else {}))


# ------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("content, says", [
    (b"this is a note, not weights\n", "it is a text file, not a PyTorch checkpoint (it begins with 'this is a note"),
    (b"", "the file is empty (0 bytes)"),
    (bytes(range(256)) * 4, "its first bytes are neither a zip archive"),
])
def test_unreadable_checkpoint_files(tmp_path, content, says):
    from IMDLBenCo.engine import load_checkpoint
    from IMDLBenCo.errors import CheckpointError

    path = tmp_path / "checkpoint-3.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, EngineTinyNet())
    assert says in str(info.value) and str(path) in str(info.value)
    assert "weights_only=False" not in str(info.value)  # no misleading hint


def test_truncated_and_pickled_checkpoints(tmp_path):
    import argparse

    from IMDLBenCo.engine import load_checkpoint
    from IMDLBenCo.errors import CheckpointError

    good = tmp_path / "good.pth"
    torch.save({"model": EngineTinyNet().state_dict()}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="damaged PyTorch checkpoint"):
        load_checkpoint(cut, EngineTinyNet())
    # IMDL-BenCo's own checkpoints keep their args as a Namespace: plain data, loaded safely
    pickled = tmp_path / "imdlbenco.pth"
    torch.save({"model": EngineTinyNet().state_dict(), "args": argparse.Namespace(lr=1)}, pickled)
    assert load_checkpoint(pickled, EngineTinyNet())["args"].lr == 1
    # anything that names code is refused, with what it names and no advice to load it unsafely
    code = tmp_path / "code.pth"
    torch.save({"model": EngineTinyNet().state_dict(), "hook": print}, code)
    with pytest.raises(CheckpointError, match=r"would call (builtins\.)?print.*Do not open it with weights_only=False"):
        load_checkpoint(code, EngineTinyNet())


def test_checkpoint_of_another_model_names_it(tmp_path):
    from IMDLBenCo.engine import load_checkpoint
    from IMDLBenCo.errors import CheckpointError

    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
    path = tmp_path / "checkpoint-1.pth"
    torch.save({"model": other.state_dict(), "args": {"model": "SomeOtherNet"}}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, EngineTinyNet())
    text = str(info.value)
    assert "does not fit EngineTinyNet" in text and "missing" in text and "unexpected" in text
    assert "written by a run of --model SomeOtherNet" in text
    wider = tmp_path / "wider.pth"
    torch.save({"model": EngineTinyNet(width=8).state_dict()}, wider)
    with pytest.raises(CheckpointError, match=r"with another shape .*conv1.weight \(8, 3, 3, 3\) vs \(4, 3, 3, 3\).*options"):
        load_checkpoint(wider, EngineTinyNet())


def test_checkpoint_errors_are_one_message_on_the_command_line(tmp_path):
    data = make_mani(tmp_path / "d", 2, seed=3)
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint-0.pth").write_text("oops\n")
    script = tmp_path / "test.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport engine_support\n"
                      "from IMDLBenCo.engine import test_main\ntest_main()\n")
    proc = subprocess.run([sys.executable, str(script), "--model", MODEL, "--test_data_path", str(data),
                           "--checkpoint_path", str(tmp_path / "ck"), "--if_resizing", "--image_size", "32",
                           "--num_workers", "0", "--output_dir", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert proc.returncode == 2
    assert "error: cannot load checkpoint" in proc.stderr and "text file" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ full disk
def test_full_disk_while_saving_a_checkpoint(tmp_path, data, monkeypatch):
    from IMDLBenCo.engine import train_main
    from IMDLBenCo.errors import OutputWriteError

    real_save = torch.save

    def save_until_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as handle:  # half of it reached the disk
            handle.truncate(Path(f).stat().st_size // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(OutputWriteError) as info:
        train_main(base_args(tmp_path, data, epochs=1), train_transform=False)
    text = str(info.value)
    assert "checkpoint-0.pth: No space left on device" in text and "needed" in text and "free" in text
    assert not [p.name for p in (tmp_path / "out").iterdir() if "tmp" in p.name or p.suffix == ".pth"]


def test_full_disk_while_writing_a_json_result(tmp_path, monkeypatch):
    from IMDLBenCo.engine import writers
    from IMDLBenCo.errors import OutputWriteError

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", no_space)
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(OutputWriteError, match=r"summary.json: No space left on device"):
        writers.write_json(target, {"rows": []})
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_stale_temporary_files_are_removed_at_start(tmp_path, data):
    from IMDLBenCo.engine import train_main

    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".checkpoint-3.pth.tmp-999999999"  # no such process
    stale.write_bytes(b"half")
    train_main(base_args(tmp_path, data, epochs=1), train_transform=False)
    assert not stale.exists()


# ------------------------------------------------------------------ evaluators
def test_evaluator_input_errors_are_user_errors():
    from IMDLBenCo.engine.errors import user_error_types
    from IMDLBenCo.evaluation import PixelF1

    ev = PixelF1()
    with pytest.raises(user_error_types()) as info:
        ev.update({"pred_mask": torch.rand(2, 1, 8, 8) * 5}, {"mask": torch.zeros(2, 1, 8, 8)})
    assert "PixelF1" in str(info.value) or "pixel" in str(info.value).lower()


# ------------------------------------------------------------------ dataset files
@pytest.mark.parametrize("content, says", [
    ([["a.png", "b.png", "c.png"]], "entry 0 is a list of 3 elements"),
    ([["a.png", "b.png"], []], "entry 1 is an empty list"),
    ([], "found an empty list: the file lists no entries"),
    ([["ManiDatset", "data/x"]], "neither a file (looked for"),
])
def test_unclear_json_datasets(tmp_path, content, says):
    from IMDLBenCo.datasets import dataset_from_path
    from IMDLBenCo.errors import DatasetError

    path = tmp_path / "set.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DatasetError) as info:
        dataset_from_path(str(path), is_resizing=True, output_size=32)
    assert says in str(info.value)
    if "ManiDatset" in json.dumps(content):
        assert 'Did you mean "ManiDataset"' in str(info.value)


def test_lowercase_negative_and_resolved_paths(tmp_path):
    from PIL import Image

    from IMDLBenCo.datasets import JsonDataset
    from IMDLBenCo.errors import DatasetError

    (tmp_path / "sub").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "au.png")
    (tmp_path / "set.json").write_text(json.dumps([["au.png", "negative"]]))
    sample = JsonDataset(str(tmp_path / "set.json"), is_resizing=True, output_size=16)[0]
    assert sample["label"].item() == 0 and sample["mask"].sum() == 0
    (tmp_path / "sub" / "rel.json").write_text(json.dumps([["imgs/a.png", "Negative"]]))
    with pytest.raises(DatasetError, match=str(tmp_path / "sub" / "imgs" / "a.png")):
        JsonDataset(str(tmp_path / "sub" / "rel.json"), is_resizing=True, output_size=16)


def test_data_check_fails_on_an_empty_dataset(tmp_path):
    (tmp_path / "empty" / "Tp").mkdir(parents=True)
    (tmp_path / "empty" / "Gt").mkdir()
    proc = subprocess.run([sys.executable, "-m", "IMDLBenCo.cli", "data", "check", str(tmp_path / "empty")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "the dataset is empty" in proc.stderr


# ------------------------------------------------------------------ offline weights
OFFLINE_MODEL = '''
import timm
import torch.nn as nn
from IMDLBenCo.registry import MODELS


@MODELS.register_module(force=True)
class AsksForWeights(nn.Module):
    def __init__(self, weights_file: str = ""):
        super().__init__()
        overlay = dict(file=weights_file) if weights_file else None
        self.backbone = timm.create_model("convnext_atto", pretrained=True, features_only=True,
                                          pretrained_cfg_overlay=overlay)
        self.head = nn.Conv2d(320, 1, 1)

    def forward(self, image, mask, label, *args, **kwargs):
        raise NotImplementedError
'''


def test_a_model_asking_for_a_download_gets_one_message_naming_its_line(tmp_path, monkeypatch):
    """The tutorial's timm.create_model(..., pretrained=True) offline: an error within seconds
    naming the user's file and line and the fix, not a minute of retries and a Hub message; the
    fix it names (a local file through pretrained_cfg_overlay) works."""
    import time

    import timm

    from IMDLBenCo.engine.builders import build_model
    from IMDLBenCo.errors import UsageError

    (tmp_path / "asks_model.py").write_text(OFFLINE_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("IMDLBENCO_ALLOW_DOWNLOADS", raising=False)
    import importlib

    module = importlib.import_module("asks_model")
    start = time.monotonic()

    with pytest.raises(UsageError) as info:
        build_model("AsksForWeights", {})
    assert time.monotonic() - start < 20
    text = str(info.value)
    assert f"{tmp_path / 'asks_model.py'}, line 12" in text and "pretrained=True" in text
    assert "pretrained=False" in text and "pretrained_cfg_overlay" in text and "IMDLBENCO_ALLOW_DOWNLOADS" in text
    weights = tmp_path / "atto.pth"
    torch.save(timm.create_model("convnext_atto").state_dict(), weights)
    model = build_model("AsksForWeights", {"weights_file": str(weights)})
    assert isinstance(model, module.AsksForWeights)
