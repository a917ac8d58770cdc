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
    for name in ("checkpoint-0.pth", "checkpoint-1.pth", "checkpoint-best.pth"):
        ckpt = torch.load(out / name, weights_only=True)
        assert {"model", "optimizer", "scaler", "scheduler", "epoch", "args", "best"} <= set(ckpt)
    assert torch.load(out / "checkpoint-1.pth", weights_only=True)["epoch"] == 1
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
    assert "jumps from" in caplog.text
    assert [r["epoch"] for r in read_jsonl(tmp_path / "more" / "out" / "log.txt")] == [2]


def test_resume_reproduces_the_next_epochs(tmp_path, data):
    import shutil

    from IMDLBenCo.engine import train_main

    train, sets = data
    common = dict(test_data_path=sets, test_period=1, save_period=1, epochs=3)
    train_main(base_args(tmp_path / "a", train, **common), evaluators=[MeanF1()], train_transform=False)
    full = read_jsonl(tmp_path / "a" / "out" / "log.txt")
    # the "killed" run: stopped after logging epoch 1, before writing checkpoint-1
    killed = tmp_path / "b" / "out"
    killed.mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "out" / "checkpoint-0.pth", killed)
    (killed / "log.txt").write_text("".join(json.dumps(r) + "\n" for r in full[:2]) + '{"epoch": 2, "trunc')
    train_main(base_args(tmp_path / "b", train, resume="auto", **common), evaluators=[MeanF1()],
               train_transform=False)
    resumed = read_jsonl(killed / "log.txt")
    assert [r["epoch"] for r in resumed] == [0, 1, 2]  # epoch 1 once, the cut line gone
    for a, b in zip(full, resumed):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    a2 = torch.load(tmp_path / "a" / "out" / "checkpoint-2.pth", weights_only=True)["model"]
    b2 = torch.load(killed / "checkpoint-2.pth", weights_only=True)["model"]
    for key in a2:
        assert torch.allclose(a2[key].float(), b2[key].float(), rtol=1e-5, atol=1e-7), key


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
