"""benco compare: a paired bootstrap of two test runs over the same images (issue 23)."""

from __future__ import annotations

import json

import pytest
import torch
from engine_support import MODEL, EngineTinyNet, MeanF1, base_args, make_mani


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from IMDLBenCo.engine import test_main, train_main
    from IMDLBenCo.evaluation import PixelF1

    tmp = tmp_path_factory.mktemp("compare")
    train = make_mani(tmp / "train", 12, seed=1)
    test = make_mani(tmp / "test", 24, seed=2)
    train_main(base_args(tmp, train, epochs=12, warmup_epochs=0, lr=0.05, batch_size=4), evaluators=[MeanF1()],
               train_transform=False)
    torch.manual_seed(3)
    (tmp / "untrained").mkdir()
    torch.save({"model": EngineTinyNet().state_dict()}, tmp / "untrained" / "weights.pth")
    out = {}
    for name, ckpt in (("trained", tmp / "out" / "checkpoint-11.pth"), ("untrained", tmp / "untrained" / "weights.pth"),
                       ("trained_again", tmp / "out" / "checkpoint-11.pth")):
        test_main(["--model", MODEL, "--checkpoint_path", str(ckpt), "--test_data_path", str(test), "--image_size", "32",
                   "--if_resizing", "--device", "cpu", "--num_workers", "0", "--output_dir", str(tmp / name),
                   "--bootstrap", "50"], evaluators=[PixelF1()])
        out[name] = tmp / name
    other = make_mani(tmp / "other", 5, seed=9)
    test_main(["--model", MODEL, "--checkpoint_path", str(tmp / "out" / "checkpoint-11.pth"), "--test_data_path",
               str(other), "--image_size", "32", "--if_resizing", "--device", "cpu", "--num_workers", "0",
               "--output_dir", str(tmp / "other_run"), "--bootstrap", "0"], evaluators=[PixelF1()])
    out["other"] = tmp / "other_run"
    return out


def test_a_run_against_itself_differs_by_nothing(runs):
    from IMDLBenCo.compare import compare_runs

    result = compare_runs(str(runs["trained"]), str(runs["trained_again"]), "pixel_f1", 500, 0)
    (s,) = result["sets"]
    assert s["difference"] == 0 and s["ci_low"] <= 0 <= s["ci_high"] and s["p_value"] == pytest.approx(1.0)
    assert s["images"] == 24


@pytest.mark.parametrize("metric", ["pixel_f1", "pixel_iou_pooled", "pixel_auc"])
def test_trained_against_untrained_is_significant(runs, metric):
    from IMDLBenCo.compare import compare_runs

    result = compare_runs(str(runs["untrained"]), str(runs["trained"]), metric, 1000, 0)
    (s,) = result["sets"]
    assert s["difference"] > 0 and s["ci_low"] > 0 and s["p_value"] < 0.05, s
    recorded = json.loads((runs["trained"] / "results.json").read_text())["records"][0]["metrics"]
    if metric in recorded:
        assert s["b"] == pytest.approx(recorded[metric]["value"], abs=1e-12)


def test_command_line_table_json_and_mismatched_data(runs, tmp_path, capsys):
    from IMDLBenCo.cli import main

    assert main(["compare", str(runs["untrained"]), str(runs["trained"]), "--json", str(tmp_path / "c.json"),
                 "--bootstrap", "200"]) == 0
    text = capsys.readouterr().out
    assert "B - A" in text and "B is better" in text
    assert json.loads((tmp_path / "c.json").read_text())["sets"][0]["set"] == "test_dataset"
    assert main(["compare", str(runs["trained"]), str(runs["other"])]) == 2
    assert "same data" in capsys.readouterr().err
    assert main(["compare", str(runs["trained"]), str(tmp_path)]) == 2
    assert "results.json" in capsys.readouterr().err
    assert main(["compare", str(runs["trained"]), str(runs["trained"]), "--metric", "nope"]) == 2
