"""results.json / per_image.csv: provenance, intervals, calibration, checkpoint selection (issue 23)."""

from __future__ import annotations

import csv
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from engine_support import MODEL, base_args, make_json, make_mani, read_jsonl


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def data(tmp_path):
    train = make_mani(tmp_path / "train", 10, seed=1)
    test_mani = make_mani(tmp_path / "test_a", 7, seed=2)
    test_json = make_json(tmp_path, make_mani(tmp_path / "test_b", 4, seed=3), negatives=3)
    sets = tmp_path / "test_datasets.json"
    sets.write_text(json.dumps({"setA": str(test_mani), "setB": str(test_json)}))
    return train, sets


def _evaluators():
    from IMDLBenCo.evaluation import ImageAUC, ImageF1, PixelAUC, PixelF1, PixelIOU

    return [PixelF1(), PixelIOU(), PixelAUC(), ImageF1(), ImageAUC()]


def test_val_split_chooses_on_validation_and_tests_once(tmp_path, data):
    """--val_split: held-out files are never trained on, checkpoint-best.pth is chosen on them,
    the test sets are tested on that checkpoint only and results.json says so."""
    from IMDLBenCo.engine import train_main
    from IMDLBenCo.engine.builders import dataset_pairs

    train, sets = data
    out = tmp_path / "out"
    seen = []

    import IMDLBenCo.engine.train as train_module

    original = train_module.build_dataset

    def spy(path, *a, **k):
        ds = original(path, *a, **k)
        seen.append((str(path), [p[0] for p in dataset_pairs(ds)]))
        return ds

    train_module.build_dataset = spy
    try:
        result = train_main(base_args(tmp_path, train, test_data_path=sets, val_split=0.3, test_period=1,
                                      bootstrap=50), evaluators=_evaluators(), train_transform=False)
    finally:
        train_module.build_dataset = original
    split = json.loads((out / "val_split.json").read_text())
    held = set(split["held_out"])
    assert split["count"] == 3 == len(held)
    trained_on = set(seen[0][1])
    assert held and not (held & trained_on) and len(trained_on) == 7  # nothing held out is trained on
    log = read_jsonl(out / "log.txt")
    assert all("val_pixel_f1" in r and not any(k.startswith("test_") for k in r) for r in log)
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "imdlbenco.results/1" and results["script"] == "train"
    assert {r["dataset"]["name"] for r in results["records"]} == {"setA", "setB"}
    best = torch.load(out / "checkpoint-best.pth", weights_only=True)
    for record in results["records"]:
        assert record["selection"] == "best on validation"
        assert record["checkpoint"]["rule"] == "validation" and record["checkpoint"]["epoch"] == best["epoch"]
        assert record["checkpoint"]["sha256"] == _sha256(out / "checkpoint-best.pth")
        assert record["checkpoint"]["validation"]["source"] == "val_split"
    assert result["results"].endswith("results.json")


def test_resume_keeps_the_held_out_files(tmp_path, data):
    from IMDLBenCo.engine import train_main

    train, _ = data
    out = tmp_path / "out"
    train_main(base_args(tmp_path, train, val_split=0.3, epochs=1), evaluators=_evaluators()[:1], train_transform=False)
    first = json.loads((out / "val_split.json").read_text())["held_out"]
    train_main(base_args(tmp_path, train, val_split=0.3, epochs=2, resume="auto"), evaluators=_evaluators()[:1],
               train_transform=False)
    assert json.loads((out / "val_split.json").read_text())["held_out"] == first
    from IMDLBenCo.errors import UsageError

    with pytest.raises(UsageError, match="--val_split"):
        train_main(base_args(tmp_path, train, val_split=0.5, epochs=3, resume="auto"), evaluators=_evaluators()[:1],
                   train_transform=False)


def test_without_validation_the_selection_is_labelled_optimistic(tmp_path, data):
    from IMDLBenCo.engine import test_main, train_main

    train, sets = data
    out = tmp_path / "out"
    train_main(base_args(tmp_path, train, test_data_path=sets, test_period=1), evaluators=_evaluators()[:1],
               train_transform=False)
    assert not (out / "results.json").exists()  # the reference recipe: no held-out choice to report
    evald = tmp_path / "eval"
    test_main(["--model", MODEL, "--checkpoint_path", str(out / "checkpoint-best.pth"), "--test_data_path", str(sets),
               "--image_size", "32", "--if_resizing", "--device", "cpu", "--num_workers", "0", "--output_dir",
               str(evald), "--bootstrap", "0"], evaluators=_evaluators()[:1])
    results = json.loads((evald / "results.json").read_text())
    assert {r["selection"] for r in results["records"]} == {"best on the test sets (optimistic)"}
    assert results["bootstrap"] is None
    assert all(v["ci_low"] is None for r in results["records"] for v in r["metrics"].values())
    # a numbered checkpoint tested as it is, and a bare state dict
    test_main(["--model", MODEL, "--checkpoint_path", str(out), "--test_data_path", str(sets), "--image_size", "32",
               "--if_resizing", "--device", "cpu", "--num_workers", "0", "--output_dir", str(tmp_path / "e2"),
               "--bootstrap", "0"], evaluators=_evaluators()[:1])
    labels = {r["selection"] for r in json.loads((tmp_path / "e2" / "results.json").read_text())["records"]}
    assert labels <= {"fixed epoch (not chosen)", "last epoch"} and "last epoch" in labels
    torch.save(torch.load(out / "checkpoint-best.pth", weights_only=True)["model"], tmp_path / "bare.pth")
    test_main(["--model", MODEL, "--checkpoint_path", str(tmp_path / "bare.pth"), "--test_data_path", str(sets),
               "--image_size", "32", "--if_resizing", "--device", "cpu", "--num_workers", "0", "--output_dir",
               str(tmp_path / "e3"), "--bootstrap", "0"], evaluators=_evaluators()[:1])
    records = json.loads((tmp_path / "e3" / "results.json").read_text())["records"]
    assert {r["selection"] for r in records} == {"given checkpoint"}


@pytest.fixture(scope="module")
def tested(tmp_path_factory):
    """One trained checkpoint tested with five evaluators (results.json, per_image.csv)."""
    from IMDLBenCo.engine import test_main, train_main

    tmp = tmp_path_factory.mktemp("tested")
    train = make_mani(tmp / "train", 8, seed=1)
    test_json = make_json(tmp, make_mani(tmp / "test_b", 6, seed=3), negatives=4)
    train_main(base_args(tmp, train, epochs=2), evaluators=_evaluators()[:1], train_transform=False)
    ckpt = tmp / "out" / "checkpoint-1.pth"
    evald = tmp / "eval"
    summary = test_main(["--model", MODEL, "--checkpoint_path", str(ckpt), "--test_data_path", str(test_json),
                         "--image_size", "32", "--if_padding", "--device", "cpu", "--num_workers", "0",
                         "--output_dir", str(evald), "--bootstrap", "200", "--seed", "5"], evaluators=_evaluators())
    return tmp, evald, ckpt, test_json, summary


def test_results_json_carries_the_provenance(tested):
    from IMDLBenCo import __version__
    from IMDLBenCo.datasets.identity import path_content_hash

    tmp, evald, ckpt, test_json, _ = tested
    results = json.loads((evald / "results.json").read_text())
    assert results["software"]["IMDLBenCo"] == __version__ and results["software"]["torch"] == torch.__version__
    assert results["model"]["name"] == MODEL and results["args"]["image_size"] == 32
    assert results["preprocessing"] == {"mode": "padding", "image_size": 32, "edge_mask_width": None,
                                        "window_overlap": None}
    assert results["precision"] == "float32" and results["processes"] == 1 and results["seed"] == 5
    assert results["bootstrap"]["resamples"] == 200 and results["wall_time_s"] > 0
    assert set(results["metric_definitions"]) >= {"pixel_f1", "image_auc"}
    (record,) = results["records"]
    assert record["checkpoint"]["sha256"] == _sha256(ckpt) and record["checkpoint"]["epoch"] == 1
    assert record["dataset"]["content_hash"] == path_content_hash(str(test_json))["content_hash"]
    assert (record["dataset"]["images"], record["dataset"]["manipulated"], record["dataset"]["authentic"]) == (10, 6, 4)
    for key, value in record["metrics"].items():
        if value["ci_low"] is not None:
            assert value["ci_low"] <= value["value"] + 1e-12 and value["value"] <= value["ci_high"] + 1e-12, key
    assert record["metrics"]["pixel_f1"]["ci_low"] is not None and record["metrics"]["image_auc"]["ci_low"] is not None


def test_per_image_csv_reproduces_the_aggregates(tested):
    _, evald, _, _, _ = tested
    results = json.loads((evald / "results.json").read_text())
    metrics = results["records"][0]["metrics"]
    rows = _read_csv(evald / "per_image.csv")
    assert len(rows) == 10 and {r["set"] for r in rows} == {"test_dataset"}
    manipulated = [r for r in rows if int(r["tp"]) + int(r["fn"]) > 0]
    assert math.fsum(float(r["pixel_f1"]) for r in manipulated) / len(manipulated) == metrics["pixel_f1"]["value"]
    assert math.fsum(float(r["pixel_iou"]) for r in manipulated) / len(manipulated) == pytest.approx(
        metrics["pixel_iou"]["value"], abs=1e-15)
    auc = [float(r["pixel_auc"]) for r in manipulated if r["pixel_auc"]]
    assert math.fsum(auc) / len(auc) == pytest.approx(metrics["pixel_auc"]["value"], abs=1e-15)
    tp, fp, fn = (sum(int(r[k]) for r in rows) for k in ("tp", "fp", "fn"))
    assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(metrics["pixel_f1_pooled"]["value"], abs=1e-15)
    from sklearn.metrics import roc_auc_score

    labels = [int(r["label"]) for r in rows]
    scores = [float(r["pred_label"]) for r in rows]
    assert roc_auc_score(labels, scores) == pytest.approx(metrics["image_auc"]["value"], abs=1e-12)


def test_calibration_equals_a_direct_computation(tested):
    _, evald, _, _, _ = tested
    results = json.loads((evald / "results.json").read_text())
    cal = results["records"][0]["calibration"]
    rows = _read_csv(evald / "per_image.csv")
    s = np.array([float(r["pred_label"]) for r in rows])
    y = np.array([int(r["label"]) for r in rows], dtype=float)
    bins = np.minimum((s * 15).astype(int), 14)
    ece = sum(abs(s[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum() / len(s)
              for b in range(15) if (bins == b).any())
    assert cal["image"]["ece"] == pytest.approx(ece, abs=1e-12)
    assert cal["image"]["brier"] == pytest.approx(float(((s - y) ** 2).mean()), abs=1e-12)
    assert len(cal["pixel"]["bins"]) == 15 and 0 <= cal["pixel"]["ece"] <= 1
    assert sum(b["count"] for b in cal["pixel"]["bins"]) == sum(
        int(r["tp"]) + int(r["fp"]) + int(r["fn"]) + int(r["tn"]) for r in rows)


def test_summary_csv_has_interval_columns(tested):
    _, evald, _, _, _ = tested
    rows = _read_csv(evald / "summary.csv")
    assert {"pixel_f1_ci_low", "pixel_f1_ci_high", "selection"} <= set(rows[0])
    assert float(rows[0]["pixel_f1_ci_low"]) <= float(rows[0]["pixel_f1"]) <= float(rows[0]["pixel_f1_ci_high"])


def test_robustness_writes_a_record_per_attack(tested, tmp_path):
    from IMDLBenCo.engine import test_robust_main
    from IMDLBenCo.evaluation import PixelF1
    from IMDLBenCo.transforms import GaussianBlurWrapper

    _, _, ckpt, test_json, _ = tested
    out = tmp_path / "robust"
    test_robust_main(["--model", MODEL, "--checkpoint_path", str(ckpt), "--test_data_path", str(test_json),
                      "--image_size", "32", "--if_resizing", "--device", "cpu", "--num_workers", "0", "--output_dir",
                      str(out), "--bootstrap", "20"], evaluators=[PixelF1()], attacks=[GaussianBlurWrapper([0, 3])])
    results = json.loads((out / "results.json").read_text())
    assert [r["attack"] for r in results["records"]] == [{"name": "GaussianBlur", "param": 0},
                                                         {"name": "GaussianBlur", "param": 3}]
    assert len({r["dataset"]["content_hash"] for r in results["records"]}) == 1
    rows = _read_csv(out / "per_image.csv")
    assert {(r["attack"], r["param"]) for r in rows} == {("GaussianBlur", "0"), ("GaussianBlur", "3")}


def test_constant_predictions_are_warned_about(tmp_path, caplog):
    from IMDLBenCo.engine.evaluate import measure
    from IMDLBenCo.engine.runtime import setup_runtime
    from IMDLBenCo.evaluation import PixelF1

    class Constant(torch.nn.Module):
        def forward(self, image, mask, label, **kw):
            return {"backward_loss": torch.zeros(()), "pred_mask": torch.full_like(mask, 0.53), "pred_label": None,
                    "visual_loss": {}, "visual_image": {}}

    batches = [{"image": torch.rand(2, 3, 8, 8), "mask": (torch.rand(2, 1, 8, 8) > 0.5).float(),
                "label": torch.ones(2, dtype=torch.long), "name": [f"a{i}", f"b{i}"]} for i in range(2)]
    m = measure(Constant(), batches, [PixelF1()], setup_runtime("cpu"), per_image=True)
    assert m.warning and "0.53" in m.warning and "every pixel" in m.warning
