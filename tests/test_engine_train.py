"""Training: files of the run folder, checkpoints, resume, output checks, NaN handling."""

from __future__ import annotations

import json

import pytest
import torch
from engine_support import MODEL, MeanF1, base_args, make_mani, read_jsonl


@pytest.fixture
def data(tmp_path):
    train = make_mani(tmp_path / "train", 6, seed=1)
    test_a = make_mani(tmp_path / "test_a", 5, seed=2)
    test_b = make_mani(tmp_path / "test_b", 3, seed=3)
    sets = tmp_path / "test_datasets.json"
    sets.write_text(json.dumps({"setA": str(test_a), "setB": str(test_b)}))
    return train, sets


def test_two_epochs_write_the_run_folder(tmp_path, data, caplog):
    from IMDLBenCo.engine import load_checkpoint, train_main

    train, sets = data
    result = train_main(base_args(tmp_path, train, test_data_path=sets, test_period=1),
                        evaluators=[MeanF1()], train_transform=False)
    out = tmp_path / "out"
    log = read_jsonl(out / "log.txt")
    assert [r["epoch"] for r in log] == [0, 1]
    for record in log:
        assert {"train_lr", "train_seg_loss", "train_cls_loss", "test_mean_f1",
                "test_setA/mean_f1", "test_setB/mean_f1"} <= set(record)
        assert record["test_setA/count"] == 5 and record["test_setB/count"] == 3  # every image once
        assert record["test_mean_f1"] == pytest.approx((record["test_setA/mean_f1"] + record["test_setB/mean_f1"]) / 2)
    steps = read_jsonl(out / "train_steps.jsonl")
    assert steps and {"step", "epoch", "lr", "seg_loss"} <= set(steps[0])
    config = json.loads((out / "config.json").read_text())
    assert config["script"] == "train" and config["args"]["model"] == MODEL
    from IMDLBenCo import __version__

    assert config["env"]["IMDLBenCo"] == __version__ and config["env"]["world_size"] == 1
    assert json.loads((out / "metric_definitions.json").read_text())["mean_f1"]
    # numbered and best checkpoints: what testing needs; one full state: what resuming needs
    for name in ("checkpoint-0.pth", "checkpoint-1.pth", "checkpoint-best.pth"):
        ckpt = torch.load(out / name, weights_only=True)
        assert {"model", "epoch", "args", "best"} <= set(ckpt) and "optimizer" not in ckpt
    full = torch.load(out / "checkpoint-resume.pth", weights_only=True)
    assert {"model", "optimizer", "scaler", "scheduler", "epoch", "args", "best", "train_stats"} <= set(full)
    assert full["epoch"] == 1 and full["test_pending"] is True
    assert torch.load(out / "checkpoint-1.pth", weights_only=True)["epoch"] == 1
    # the best file is the numbered checkpoint of its epoch, hard-linked (no second copy)
    best_epoch = torch.load(out / "checkpoint-best.pth", weights_only=True)["epoch"]
    assert (out / "checkpoint-best.pth").stat().st_ino == (out / f"checkpoint-{best_epoch}.pth").stat().st_ino
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out), size_guidance={"images": 0, "scalars": 0}).Reload().Tags()
    assert {"lr", "train_loss/seg_loss", "train_loss/cls_loss", "test_setA/mean_f1", "test_setB/mean_f1",
            "test_mean/mean_f1"} <= set(events["scalars"])
    assert {"train/image", "train/mask", "train/pred_mask", "train/pred_mask_thresh_0.5", "train/logits",
            "test_setA/image", "test_setA/pred_mask"} <= set(events["images"])
    assert result["epoch"] == 1 and result["best"]["metric"] == "mean_f1"
    # the published form {"model": state_dict} and a bare state dict load too
    from engine_support import EngineTinyNet

    state = torch.load(out / "checkpoint-1.pth", weights_only=True)["model"]
    torch.save({"model": state}, tmp_path / "published.pth")
    torch.save(state, tmp_path / "bare.pth")
    for name in ("published.pth", "bare.pth"):
        net = EngineTinyNet()
        load_checkpoint(tmp_path / name, net)
        assert torch.equal(net.conv1.weight, state["conv1.weight"])
    # resuming with another --epochs warns that the cosine schedule moves
    caplog.set_level("WARNING", logger="IMDLBenCo")
    train_main(base_args(tmp_path / "more", train, resume=out / "checkpoint-1.pth", epochs=3),
               evaluators=[MeanF1()], train_transform=False)
    assert "changes from" in caplog.text
    assert [r["epoch"] for r in read_jsonl(tmp_path / "more" / "out" / "log.txt")] == [2]


def _assert_same_runs(full, resumed):
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in full]
    for a, b in zip(full, resumed):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("stop_at", ["before_test", "after_log"])
def test_resume_reproduces_the_next_epochs(tmp_path, data, monkeypatch, stop_at):
    """A run stopped after epoch 1's resume state was written (before its test, or after its log
    line) and resumed with --resume auto ends with the same log, checkpoints and best file as
    the uninterrupted run."""
    from IMDLBenCo.engine import train as train_module
    from IMDLBenCo.engine import train_main

    train, sets = data
    common = dict(test_data_path=sets, test_period=1, save_period=1, epochs=3)
    train_main(base_args(tmp_path / "a", train, **common), evaluators=[MeanF1()], train_transform=False)
    full = read_jsonl(tmp_path / "a" / "out" / "log.txt")

    class Killed(BaseException):
        pass

    original = train_module.Trainer._close_epoch

    def close_then_die(self, epoch, *args, **kwargs):
        if epoch == 1 and stop_at == "before_test":
            raise Killed
        record = original(self, epoch, *args, **kwargs)
        if epoch == 1:
            (self.args.output_dir and open(f"{self.args.output_dir}/log.txt", "a").write('{"epoch": 2, "trunc'))
            raise Killed
        return record

    monkeypatch.setattr(train_module.Trainer, "_close_epoch", close_then_die)
    with pytest.raises(Killed):
        train_main(base_args(tmp_path / "b", train, **common), evaluators=[MeanF1()], train_transform=False)
    monkeypatch.setattr(train_module.Trainer, "_close_epoch", original)
    killed = tmp_path / "b" / "out"
    train_main(base_args(tmp_path / "b", train, resume="auto", **common), evaluators=[MeanF1()],
               train_transform=False)
    _assert_same_runs(full, read_jsonl(killed / "log.txt"))
    for name in ("checkpoint-2.pth", "checkpoint-best.pth"):
        a2 = torch.load(tmp_path / "a" / "out" / name, weights_only=True)
        b2 = torch.load(killed / name, weights_only=True)
        assert a2["epoch"] == b2["epoch"]
        for key in a2["model"]:
            assert torch.allclose(a2["model"][key].float(), b2["model"][key].float(), rtol=1e-5, atol=1e-7), key


def test_stop_file_ends_the_run_after_the_epoch(tmp_path, data):
    from IMDLBenCo.engine import train_main

    train, sets = data
    out = tmp_path / "out"
    out.mkdir()
    (out / "STOP").touch()
    result = train_main(base_args(tmp_path, train, test_data_path=sets, test_period=5, epochs=4),
                        evaluators=[MeanF1()], train_transform=False)
    assert result["epoch"] == 0 and not (out / "STOP").exists()
    assert (out / "checkpoint-0.pth").is_file() and "test_mean_f1" in read_jsonl(out / "log.txt")[0]
    result = train_main(base_args(tmp_path, train, test_data_path=sets, test_period=5, epochs=4, resume="auto"),
                        evaluators=[MeanF1()], train_transform=False)
    assert result["epoch"] == 3 and [r["epoch"] for r in read_jsonl(out / "log.txt")] == [0, 1, 2, 3]


@pytest.mark.parametrize("broken, message", [
    ("logits", "look like logits"),
    ("label_b1", r"squeeze\(1\)"),
])
def test_bad_model_output_gets_a_clear_error(tmp_path, data, broken, message):
    from IMDLBenCo.engine import ModelOutputError, train_main

    train, _ = data
    with pytest.raises(ModelOutputError, match=message):
        train_main(base_args(tmp_path, train, broken=broken), evaluators=[MeanF1()], train_transform=False)


def test_nan_loss_stops_or_skips(tmp_path, data):
    from IMDLBenCo.engine import NonFiniteLossError, train_main

    train, _ = data
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, step 0.*seg_loss|epoch 0, step 0"):
        train_main(base_args(tmp_path, train, broken="nan"), train_transform=False)
    result = train_main(base_args(tmp_path / "skip", train, broken="nan", skip_nonfinite_loss=True, epochs=1),
                        train_transform=False)
    assert result["epoch"] == 0


def test_check_model_output_messages():
    from IMDLBenCo.engine import ModelOutputError, check_model_output

    batch = {"image": torch.zeros(2, 3, 8, 8), "mask": torch.zeros(2, 1, 8, 8)}
    good = {"pred_mask": torch.rand(2, 1, 8, 8), "pred_label": torch.rand(2)}
    check_model_output(good, batch, training=False)
    with pytest.raises(ModelOutputError, match="backward_loss' is missing"):
        check_model_output(good, batch, training=True)
    with pytest.raises(ModelOutputError, match=r"expected \(B, 1, H, W\)"):
        check_model_output({"pred_mask": torch.rand(2, 8, 8), "pred_label": None}, batch, training=False)
    with pytest.raises(ModelOutputError, match="mask is"):
        check_model_output({"pred_mask": torch.rand(2, 1, 4, 4)}, batch, training=False)
    with pytest.raises(ModelOutputError, match="at least one"):
        check_model_output({"pred_mask": None}, batch, training=False)
    with pytest.raises(ModelOutputError, match=r"expected \(2,\)"):
        check_model_output({"pred_label": torch.rand(())}, batch, training=False)


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the engine catches it."""


def _kill_during_writes(monkeypatch, kill_at: int, phase: str):
    """Make the ``kill_at``-th checkpoint write "die": leaving its temporary file (``tmp``) or
    right after renaming it (``renamed``). The files on disk are then what a SIGKILL at that
    moment leaves (the temporary file is not cleaned up, the target is old or new)."""
    from IMDLBenCo.engine import checkpoint as checkpoint_module
    from IMDLBenCo.engine import fileio

    original = fileio.atomic_write
    count = {"n": 0}

    def dying_write(path, write, needed=None):
        if not str(path).endswith(".pth"):
            return original(path, write, needed)
        count["n"] += 1
        if count["n"] != kill_at:
            return original(path, write, needed)
        if phase == "tmp":
            tmp = fileio.temporary_name(path)
            write(tmp)
            if tmp.stat().st_nlink == 1:  # a hard link is made at once; a written file can be cut short
                with open(tmp, "r+b") as f:
                    f.truncate(max(tmp.stat().st_size // 2, 1))
            raise _Killed
        original(path, write, needed)
        raise _Killed

    monkeypatch.setattr(fileio, "atomic_write", dying_write)
    monkeypatch.setattr(checkpoint_module, "atomic_write", dying_write)
    return count


def test_a_kill_during_any_checkpoint_write_resumes_to_the_same_run(tmp_path, data, monkeypatch):
    """Kill (simulated, see _kill_during_writes) during each checkpoint write of a 3-epoch run,
    then --resume auto: the log, the numbered checkpoints and checkpoint-best.pth end as in the
    run that was never interrupted, and no temporary file is left."""
    from IMDLBenCo.engine import train_main

    train, sets = data
    common = dict(test_data_path=sets, test_period=1, save_period=1, epochs=3)
    train_main(base_args(tmp_path / "ref", train, **common), evaluators=[MeanF1()], train_transform=False)
    ref = tmp_path / "ref" / "out"
    full = read_jsonl(ref / "log.txt")
    n_writes = None
    kill_at = 1
    while n_writes is None or kill_at <= n_writes:
        for phase in ("tmp", "renamed"):
            run = tmp_path / f"k{kill_at}{phase}"
            with monkeypatch.context() as m:
                count = _kill_during_writes(m, kill_at, phase)
                try:
                    train_main(base_args(run, train, **common), evaluators=[MeanF1()], train_transform=False)
                    n_writes = count["n"]  # no kill: kill_at is past the last write
                    continue
                except _Killed:
                    pass
            out = run / "out"
            train_main(base_args(run, train, resume="auto", **common), evaluators=[MeanF1()], train_transform=False)
            where = f"killed at write {kill_at} ({phase})"
            _assert_same_runs(full, read_jsonl(out / "log.txt"))
            assert not [p.name for p in out.iterdir() if ".tmp-" in p.name], where
            for name in ("checkpoint-0.pth", "checkpoint-1.pth", "checkpoint-2.pth", "checkpoint-best.pth"):
                a = torch.load(ref / name, weights_only=True)
                b = torch.load(out / name, weights_only=True)
                assert a["epoch"] == b["epoch"], (where, name)
                for key in a["model"]:
                    assert torch.allclose(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-7), (where, name, key)
        kill_at += 1
    assert n_writes is not None and n_writes >= 8  # 3 numbered + 3 resume states + best files


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from engine_support import MeanF1
from IMDLBenCo.engine import checkpoint, fileio, train_main

original = fileio.atomic_write
seen = [0]

def write_then_die(path, write, needed=None):
    if str(path).endswith("checkpoint-resume.pth"):
        seen[0] += 1
        if seen[0] == 2:  # epoch 1's full state: half written, then SIGKILL
            tmp = fileio.temporary_name(path)
            write(tmp)
            with open(tmp, "r+b") as f:
                f.truncate(tmp.stat().st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    return original(path, write, needed)

fileio.atomic_write = checkpoint.atomic_write = write_then_die
train_main({argv!r}, evaluators=[MeanF1()], train_transform=False)
"""


def test_a_real_sigkill_while_saving_then_resume(tmp_path, data):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from IMDLBenCo.engine import train_main

    train, sets = data
    common = dict(test_data_path=sets, test_period=1, epochs=3)
    train_main(base_args(tmp_path / "ref", train, **common), evaluators=[MeanF1()], train_transform=False)
    argv = [str(a) for a in base_args(tmp_path / "run", train, **common)]
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN.format(tests=str(Path(__file__).parent), argv=argv))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    out = tmp_path / "run" / "out"
    assert [p for p in out.iterdir() if ".tmp-" in p.name]  # the kill left the temporary file
    train_main(base_args(tmp_path / "run", train, resume="auto", **common), evaluators=[MeanF1()],
               train_transform=False)
    _assert_same_runs(read_jsonl(tmp_path / "ref" / "out" / "log.txt"), read_jsonl(out / "log.txt"))
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # removed at start


def test_models_choose_what_their_checkpoints_hold(tmp_path, data):
    """A frozen-backbone model stores only its trainable part (checkpoint_state_dict) and declares
    the rest optional when loading; the engine's checkpoints and load_checkpoint follow it."""
    from engine_support import EngineTinyNet

    from IMDLBenCo.engine import load_checkpoint, train_main
    from IMDLBenCo.registry import MODELS

    @MODELS.register_module(name="FrozenStemNet", force=True)
    class FrozenStemNet(EngineTinyNet):
        def __init__(self) -> None:
            super().__init__()
            self.conv1.requires_grad_(False)  # "loaded from its own weight file"
            self.absent_seen = []

        def checkpoint_state_dict(self):
            return {k: v for k, v in self.state_dict().items() if not k.startswith("conv1.")}

        def optional_checkpoint_keys(self):
            return [k for k in self.state_dict() if k.startswith("conv1.")]

        def checkpoint_keys_absent(self, keys):
            self.absent_seen = list(keys)

    train, _ = data
    argv = base_args(tmp_path, train, epochs=1)
    argv[argv.index("EngineTinyNet")] = "FrozenStemNet"
    train_main(argv, train_transform=False)
    ckpt = torch.load(tmp_path / "out" / "checkpoint-0.pth", weights_only=True)
    assert not any(k.startswith("conv1.") for k in ckpt["model"]) and "conv2.weight" in ckpt["model"]
    fresh = FrozenStemNet()
    load_checkpoint(tmp_path / "out" / "checkpoint-0.pth", fresh)
    assert fresh.absent_seen == ["conv1.weight", "conv1.bias"]
    assert torch.equal(fresh.conv2.weight, ckpt["model"]["conv2.weight"])


def test_config_file_with_command_line_override(tmp_path, data):
    """--config run.yaml sets script and model options; flags on the command line override it;
    config.json records the resolved values; an unknown key is one message naming it."""
    from IMDLBenCo.engine import train_main

    train, sets = data
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: {MODEL}\ndata_path: {train}\nif_resizing: true\nimage_size: 32\nepochs: 2\n"
                   "lr: 0.01\nbatch_size: 2\naccum_iter: 1\nnum_workers: 0\nwidth: 6\n")
    out = tmp_path / "out"
    result = train_main(["--config", str(cfg), "--epochs", "1", "--output_dir", str(out)], train_transform=False)
    assert result["epoch"] == 0  # the command line's --epochs 1 won over the file's 2
    config = json.loads((out / "config.json").read_text())
    assert config["args"]["epochs"] == 1 and config["args"]["lr"] == 0.01 and config["args"]["config"] == str(cfg)
    assert config["model_kwargs"]["width"] == 6
    ckpt = torch.load(out / "checkpoint-0.pth", weights_only=True)
    assert ckpt["model"]["conv1.weight"].shape[0] == 6  # the model option from the file reached the model
    (tmp_path / "bad.yaml").write_text(f"model: {MODEL}\nlrr: 0.1\n")
    with pytest.raises(SystemExit):
        train_main(["--config", str(tmp_path / "bad.yaml"), "--data_path", str(train), "--if_resizing"])
