"""Command-line runs end with one message for mistakes in the input; Python calls still raise."""

import subprocess
import sys

import pytest

import IMDLBenCo.demo.model  # noqa: F401  (registers DemoNet, which some tests train)
from IMDLBenCo.datasets.io import DatasetError
from IMDLBenCo.engine.errors import _message, exit_cleanly_on_user_errors


def _failing_main(argv=None, **kwargs):
    raise DatasetError("/data/Tp/1.png: image is 4x4 but its mask is 5x5")


def test_explicit_argv_raises(monkeypatch):
    monkeypatch.delenv("IMDLBENCO_DEBUG", raising=False)
    with pytest.raises(DatasetError):
        exit_cleanly_on_user_errors(_failing_main)(["--model", "X"])


def test_command_line_run_exits_with_the_message(monkeypatch, capsys):
    monkeypatch.delenv("IMDLBENCO_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        exit_cleanly_on_user_errors(_failing_main)()
    assert info.value.code == 2  # every user error exits 2
    err = capsys.readouterr().err
    assert "error: /data/Tp/1.png: image is 4x4 but its mask is 5x5" in err
    assert "Traceback" not in err


def test_debug_variable_keeps_the_traceback(monkeypatch):
    monkeypatch.setenv("IMDLBENCO_DEBUG", "1")
    with pytest.raises(DatasetError):
        exit_cleanly_on_user_errors(_failing_main)()


def test_other_errors_are_not_hidden(monkeypatch):
    monkeypatch.delenv("IMDLBENCO_DEBUG", raising=False)

    def buggy(argv=None):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        exit_cleanly_on_user_errors(buggy)()


def test_worker_traceback_is_reduced_to_the_message():
    text = ("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
            '  File "x.py", line 1, in f\nIMDLBenCo.datasets.io.DatasetError: /d/Tp/a.png: unreadable\n')
    assert _message(DatasetError(text)) == "/d/Tp/a.png: unreadable"


def test_bad_dataset_through_train_script(tmp_path):
    """A size mismatch met inside a DataLoader worker ends the script with one message and status 1."""
    from PIL import Image

    root = tmp_path / "bad"
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    Image.new("RGB", (32, 32), (90, 20, 20)).save(root / "Tp" / "a.png")
    Image.new("L", (40, 32), 255).save(root / "Gt" / "a.png")
    script = tmp_path / "train.py"
    script.write_text("import IMDLBenCo.demo.model\nfrom IMDLBenCo.engine import train_main\n"
                      "if __name__ == '__main__':\n    train_main()\n")
    cmd = [sys.executable, str(script), "--model", "DemoNet", "--data_path", str(root), "--test_data_path", str(root),
           "--if_resizing", "--image_size", "32", "--epochs", "1", "--num_workers", "1",
           "--output_dir", str(tmp_path / "out"), "--skip_data_check"]  # so the worker meets the pair
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "a.png" in proc.stderr and "benco data check" in proc.stderr


def test_broken_pairs_are_refused_before_the_run(tmp_path):
    """Every broken pair is listed before training starts, not met later inside a worker."""
    from PIL import Image

    from IMDLBenCo.engine import train_main

    root = tmp_path / "bad"
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (90, 20, 20)).save(root / "Tp" / f"{i}.png")
        Image.new("L", (32 if i else 40, 32), 255).save(root / "Gt" / f"{i}.png")
    (root / "Tp" / "3.png").write_bytes(b"not an image")
    Image.new("L", (32, 32), 255).save(root / "Gt" / "3.png")
    argv = ["--model", "DemoNet", "--data_path", str(root), "--test_data_path", str(root), "--if_resizing",
            "--image_size", "32", "--epochs", "1", "--num_workers", "0", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(DatasetError) as info:
        train_main(argv)
    msg = str(info.value)
    assert "2 broken pair(s)" in msg and "0.png" in msg and "3.png" in msg and "size mismatch" in msg
    assert not (tmp_path / "out" / "checkpoint-0.pth").exists()


@pytest.mark.parametrize("script", ["train", "test"])
def test_coloured_mask_is_refused_in_training_and_testing(tmp_path, script):
    """A red-on-black mask (read as empty by IMDL-BenCo) stops the run with a message naming it."""
    import numpy as np
    from PIL import Image

    from IMDLBenCo.engine import test_main, train_main

    root = tmp_path / "red"
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    Image.new("RGB", (32, 32), (90, 20, 20)).save(root / "Tp" / "a.png")
    red = np.zeros((32, 32, 3), np.uint8)
    red[8:20, 8:20] = (255, 0, 0)
    Image.fromarray(red).save(root / "Gt" / "a.png")
    common = ["--model", "DemoNet", "--if_resizing", "--image_size", "32", "--num_workers", "0",
              "--output_dir", str(tmp_path / "out")]
    if script == "train":
        argv = common + ["--data_path", str(root), "--test_data_path", str(root), "--epochs", "1"]
        run = train_main
    else:
        import json

        import torch

        from IMDLBenCo.registry import MODELS

        (tmp_path / "sets.json").write_text(json.dumps({"red": str(root)}))
        (tmp_path / "ck").mkdir()
        torch.save({"model": MODELS.get("DemoNet")().state_dict()}, tmp_path / "ck" / "checkpoint-0.pth")
        argv = common + ["--test_data_json", str(tmp_path / "sets.json"), "--checkpoint_path", str(tmp_path / "ck")]
        run = test_main
    with pytest.raises(DatasetError, match=r"Gt/a\.png: .*coloured"):
        run(argv)
