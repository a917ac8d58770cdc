"""``benco leaderboard``: tables, reported rows, text formats and the static site, from results.json
files written here by a helper that follows docs/results.md (schema imdlbenco.results/1); the site
is rendered in headless Chromium when it is installed."""

from __future__ import annotations

import csv
import hashlib
import html as htmlmod
import io
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from IMDLBenCo.cli import main as benco
from IMDLBenCo.errors import RunFolderError, UsageError
from IMDLBenCo.leaderboard import build_leaderboard, leaderboard_text, load_leaderboard, table_view
from IMDLBenCo.leaderboard.bootstrap import average_interval
from IMDLBenCo.leaderboard.published import PUBLISHED_DIR, load_names, load_published
from IMDLBenCo.leaderboard.tables import differences, robustness_comparisons

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_PUBLISHED = REPO_ROOT.parent / "shared" / "reference" / "published"
R = 200  # bootstrap resamples in the fixtures (the writer's default is 1000)
SELECTION = {"validation": "best on validation", "test_sets": "best on the test sets (optimistic)",
             "last_epoch": "last epoch", "fixed_epoch": "fixed epoch (not chosen)", "given": "given checkpoint"}
PER_IMAGE_COLUMNS = ["set", "epoch", "attack", "param", "name", "label", "pred_label", "pixel_f1", "pixel_iou",
                     "pixel_auc", "pixel_ap", "mask_area", "pred_area", "tp", "fp", "fn", "tn"]
CAT_SETS = {"CASIA1.0": "casia", "Columbia": "columbia", "NIST16_1024": "nist", "COVERAGE": "coverage"}


# ----------------------------------------------------------------------------------- fixtures
def _interval(values: np.ndarray, labels: np.ndarray, seed: int, resamples: int = R):
    """docs/results.md's bootstrap of a per-image metric: rows drawn with replacement, mean over the manipulated."""
    idx = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    v = np.where(labels == 1, values, np.nan)[idx]
    n = np.sum(~np.isnan(v), axis=1)
    stats = np.nansum(v, axis=1)[n > 0] / n[n > 0]  # resamples without a manipulated image left out
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def _pooled_interval(tp, fp, fn, seed: int, resamples: int = R):
    idx = np.random.default_rng(seed).integers(0, len(tp), size=(resamples, len(tp)))
    a, b, c = tp[idx].sum(1), fp[idx].sum(1), fn[idx].sum(1)
    stats = 2 * a / (2 * a + b + c)
    return tuple(float(x) for x in np.percentile(stats, [2.5, 97.5]))


def make_set(name: str, mean_f1: float, seed: int, n: int = 40, authentic: int = 6) -> dict[str, object]:
    """Per-image rows of one test set: ``n`` images, the last ``authentic`` of them authentic."""
    rng = np.random.default_rng(seed)
    labels = np.array([1] * (n - authentic) + [0] * authentic)
    f1 = np.clip(rng.normal(mean_f1, 0.15, n), 0.0, 1.0)
    f1[labels == 0] = np.nan
    tp = np.where(labels == 1, rng.integers(50, 400, n), 0).astype(float)
    fp = rng.integers(0, 200, n).astype(float)
    fn = np.where(labels == 1, rng.integers(0, 200, n), 0).astype(float)
    return {"name": name, "labels": labels, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "hash": "sha256:" + hashlib.sha256(name.encode()).hexdigest()}


def write_results(folder: Path, model: str, sets: Sequence[dict[str, object]], rule: str = "validation",
                  protocol: dict[str, object] | None = None, options: dict | None = None,
                  attacks: Sequence[tuple] = (), checkpoint: str = "checkpoint-7.pth", epoch: int = 7,
                  seed: int = 42, bootstrap: bool = True, created: str = "2026-12-07T10:00:00+00:00",
                  image_auc: float = 0.8) -> Path:
    """A run folder with results.json and per_image.csv as docs/results.md describes them.

    ``attacks``: (set dict, attack name, param, set dict of the attacked images) tuples."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    records: list[dict] = []
    items = [(s, None, None, s) for s in sets] + [(s, a, p, att) for s, a, p, att in attacks]
    for base, attack, param, data in items:
        labels, f1 = data["labels"], data["f1"]
        tp, fp, fn = data["tp"], data["fp"], data["fn"]
        attack_text = attack or ""
        param_text = "" if attack is None else ("" if param is None else str(param))
        for i in range(len(labels)):
            rows.append({"set": base["name"], "epoch": epoch, "attack": attack_text, "param": param_text,
                         "name": f"img{i:03d}.png", "label": int(labels[i]), "pred_label": 0.5,
                         "pixel_f1": "" if labels[i] == 0 else repr(float(f1[i])), "pixel_iou": "",
                         "pixel_auc": "", "pixel_ap": "", "mask_area": 0.1, "pred_area": 0.1,
                         "tp": int(tp[i]), "fp": int(fp[i]), "fn": int(fn[i]), "tn": 1000})
        value = float(np.nanmean(f1[labels == 1]))
        pooled = float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))
        lo, hi = _interval(f1, labels, seed) if bootstrap else (None, None)
        plo, phi = _pooled_interval(tp, fp, fn, seed) if bootstrap else (None, None)
        records.append({
            "checkpoint": {"path": f"/runs/{model}/{checkpoint}", "sha256": hashlib.sha256(f"{model}/{checkpoint}".encode()).hexdigest(),
                           "epoch": epoch, "rule": rule, "metric": "pixel_f1", "mode": "max",
                           "validation": {"source": "val_split", "fraction": 0.1, "files": "val_split.json"}
                           if rule == "validation" else None, "train_run": f"/runs/{model}"},
            "selection": SELECTION[rule],
            "dataset": {"name": base["name"], "path": f"/data/{base['name']}", "content_hash": base["hash"],
                        "images": len(labels), "manipulated": int(labels.sum()), "authentic": int((labels == 0).sum())},
            "attack": None if attack is None else {"name": attack, "param": param},
            "metrics": {"pixel_f1": {"value": value, "ci_low": lo, "ci_high": hi},
                        "pixel_f1_pooled": {"value": pooled, "ci_low": plo, "ci_high": phi},
                        "image_auc": {"value": image_auc, "ci_low": None, "ci_high": None}},
            "calibration": {"image": {"ece": 0.12, "brier": 0.18, "bins": []}, "pixel": {"ece": 0.05, "bins": []}},
            "per_image": {"file": "per_image.csv", "rows": {"set": base["name"], "epoch": epoch,
                                                             "attack": attack_text, "param": param_text}},
        })
    with open(folder / "per_image.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=PER_IMAGE_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    doc = {
        "schema": "imdlbenco.results/1", "created": created, "script": "test", "wall_time_s": 12.5,
        "software": {"IMDLBenCo": "0.3.0", "git_commit": "4f1c0de", "git_dirty": False, "python": "3.11.7",
                     "torch": "2.4.1", "platform": "Linux"},
        "model": {"name": model, "options": options or {}},
        "args": {"image_size": 512, "if_padding": True, "test_batch_size": 2},
        "preprocessing": {"mode": "padding", "image_size": 512, "edge_mask_width": None, "window_overlap": None},
        "precision": "float32", "device": "cpu", "processes": 1, "seed": seed,
        "bootstrap": {"resamples": R, "confidence": 0.95, "method": "percentile", "unit": "image", "seed": seed}
        if bootstrap else None,
        "metric_definitions": {"pixel_f1": "pixel F1 = 2TP/(2TP+FP+FN) per manipulated image, mean over manipulated",
                               "pixel_f1_pooled": "pixel F1 over the pooled pixels of all images",
                               "image_auc": "image-level ROC AUC over all images"},
        "protocol": protocol,
        "records": records,
    }
    (folder / "results.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return folder


def cat_sets(means: dict[str, float], seed: int) -> list[dict[str, object]]:
    return [make_set(name, means[key], seed + i) for i, (name, key) in enumerate(CAT_SETS.items())]


def protocol(model_id: str, set_name: str, name: str = "Protocol-CAT") -> dict:
    """The ``protocol`` key benco bench writes into a cell's results.json (a cell: one model entry × one set)."""
    return {"name": name, "file": "protocols/cat.yaml", "sha256": "ab" * 32, "cell": f"{model_id}/{set_name}",
            "model_id": model_id, "set": set_name, "provenance": "p0"}


def bench_cell(out: Path, model_id: str, model: str, data: dict[str, object], rule: str, attacks: Sequence[tuple] = (),
               name: str = "Protocol-CAT", **kwargs) -> Path:
    """A benco bench cell: stage folders test/ (and robust/) as the scripts write them, merged into the
    cell's own results.json with the protocol key and a "stages" list, per_image.csv concatenated."""
    cell = out / "cells" / model_id / str(data["name"])
    stages = {"test": write_results(cell / "test", model, [data], rule, **kwargs)}
    if attacks:
        stages["robust"] = write_results(cell / "robust", model, [], rule, attacks=attacks, **kwargs)
    parts = {s: json.loads((f / "results.json").read_text()) for s, f in stages.items()}
    merged = dict(parts["test"], script="bench", protocol=protocol(model_id, str(data["name"]), name),
                  stages={s: {"script": p["script"], "file": f"{s}/results.json", "args": p["args"]} for s, p in parts.items()},
                  records=[r for p in parts.values() for r in p["records"]])
    (cell / "results.json").write_text(json.dumps(merged), encoding="utf-8")
    lines = [(f / "per_image.csv").read_text().splitlines() for f in stages.values()]
    (cell / "per_image.csv").write_text("\n".join([lines[0][0]] + [x for part in lines for x in part[1:]]) + "\n")
    return cell


def make_bench(root: Path) -> Path:
    """A `benco bench --out`-like folder: Protocol-CAT cells of four model entries (one cell per model × set),
    robustness on CASIAv1 for Mesorch; DINOv3 was not tested on COVERAGE."""
    entries = [("Mesorch", "Mesorch", "validation", dict(casia=0.84, columbia=0.89, nist=0.39, coverage=0.58), 10, {}),
               ("Cat_Net", "Cat_Net", "test_sets", dict(casia=0.9, columbia=0.95, nist=0.5, coverage=0.6), 20, {}),
               ("PSCC_Net", "PSCC_Net", "validation", dict(casia=0.6, columbia=0.85, nist=0.3, coverage=0.4), 30, {}),
               ("DINOv3-B", "DINOv3_IML", "last_epoch", dict(casia=0.7, columbia=0.8, nist=0.3, coverage=0.5), 40,
                {"backbone": "vit_base_patch16_dinov3", "lora_rank": 64})]
    for model_id, model, rule, means, seed, options in entries:
        for data in cat_sets(means, seed):
            if model_id == "DINOv3-B" and data["name"] == "COVERAGE":
                continue
            attacks = []
            if model_id == "Mesorch" and data["name"] == "CASIA1.0":
                for attack, levels in (("GaussianBlur", [3, 7, 11, 15, 19, 23]),
                                       ("JpegCompression", [100, 90, 80, 70, 60, 50])):
                    for k, level in enumerate(levels):
                        attacks.append((data, attack, level, make_set(data["name"], 0.8 - 0.08 * k, 100 + k)))
            bench_cell(root, model_id, model, data, rule, attacks, options=options)
    return root


def _one_table(board, kind: str = "protocol"):
    tables = [t for t in board.tables if t.kind == kind]
    assert len(tables) == 1, [t.title for t in board.tables]
    return tables[0]


# ----------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("content, expected", [
    ({"schema": "imdlbenco.results/2", "records": [], "model": {"name": "X"}}, "imdlbenco.results/2"),
    ({"records": []}, "None"),
    ("[1, 2]", "expected a JSON object"),
    ("{not json", "not valid JSON"),
])
def test_unknown_schema_and_broken_files_are_refused_with_one_message(tmp_path, capsys, content, expected):
    write_results(tmp_path / "good", "Mesorch", [make_set("COVERAGE", 0.5, 1)])
    bad = tmp_path / "bad" / "results.json"
    bad.parent.mkdir()
    bad.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(RunFolderError, match=re.escape(expected)) as err:
        load_leaderboard([tmp_path])
    assert str(bad) in str(err.value)
    assert benco(["leaderboard", str(tmp_path), "--format", "md"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("benco leaderboard: ") and str(bad) in lines[0]
    assert captured.out == ""


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(records={"a": 1}), "'records' must be a list"),
    (lambda d: d.update(model={"options": {}}), "'model.name' is missing"),
    (lambda d: d["records"][0].pop("dataset"), "records[0]: 'dataset.name' is missing"),
    (lambda d: d["records"][0].update(metrics=[0.5]), "records[0]: 'metrics' must be an object"),
    (lambda d: d["records"][0].update(attack="GaussianBlur"), "records[0]: 'attack' must be null"),
    (lambda d: d["records"].__setitem__(0, "COVERAGE"), "records[0]: expected an object"),
])
def test_malformed_records_are_refused_naming_the_key(tmp_path, capsys, change, expected):
    run = write_results(tmp_path / "run", "Mesorch", [make_set("COVERAGE", 0.5, 1)])
    doc = json.loads((run / "results.json").read_text())
    change(doc)
    (run / "results.json").write_text(json.dumps(doc))
    assert benco(["leaderboard", str(run), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(run / "results.json") in err and "Traceback" not in err
    assert not (tmp_path / "site").exists()


def test_missing_evidence_and_missing_values_still_give_a_leaderboard(tmp_path):
    """No per_image.csv, bootstrap off, a NaN value: shown as such, the average has no interval and says why."""
    a = write_results(tmp_path / "a", "Mesorch", [make_set("COVERAGE", 0.5, 1), make_set("Columbia", 0.6, 2)])
    (a / "per_image.csv").unlink()
    write_results(tmp_path / "b", "Trufor", [make_set("COVERAGE", 0.5, 3), make_set("Columbia", 0.6, 4)],
                  bootstrap=False)
    c = write_results(tmp_path / "c", "SPAN", [make_set("COVERAGE", 0.5, 5), make_set("Columbia", 0.6, 6)])
    doc = json.loads((c / "results.json").read_text())
    doc["records"][1]["metrics"]["pixel_f1"] = {"value": float("nan"), "ci_low": None, "ci_high": None}
    doc["records"][1]["warning"] = "no manipulated image in this set"
    (c / "results.json").write_text(json.dumps(doc))  # NaN as JSON writes it
    board = load_leaderboard([tmp_path])
    view = {r.label: r for r in table_view(_one_table(board, "adhoc"), "pixel_f1")}
    assert view["Mesorch"].rank == 1 and not view["Mesorch"].avg.has_interval
    assert "no per_image.csv" in view["Mesorch"].avg.note
    assert view["Trufor"].avg.note == "bootstrap was off for these runs"
    assert not any(c.has_interval for c in view["Trufor"].cells)
    columbia = [c.name for c in _one_table(board, "adhoc").columns].index("Columbia")
    assert view["SPAN"].group == "incomplete" and "no finite pixel_f1" in view["SPAN"].cells[columbia].note
    index = build_leaderboard([tmp_path], out=tmp_path / "site")
    pages = {p.name: p.read_text() for p in (index.parent / "models").glob("*.html")}
    mesorch = next(t for n, t in pages.items() if "mesorch" in n)
    assert "per_image file <code>per_image.csv</code> was not found" in mesorch
    assert "no manipulated image in this set" in next(t for n, t in pages.items() if "span" in n)


def test_missing_inputs_are_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for args, words in (([str(tmp_path / "nope")], "no such file"), ([str(tmp_path / "empty")], "no results.json")):
        assert benco(["leaderboard", *args, "--format", "csv"]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    write_results(tmp_path / "run", "Mesorch", [make_set("COVERAGE", 0.5, 1)])
    with pytest.raises(UsageError, match="pixel_f1_pooled"):  # the message lists the metrics there are
        load_leaderboard([tmp_path / "run"], metric="pixel_iou")


def test_discovers_results_recursively_and_groups_protocol_cells(tmp_path):
    bench = make_bench(tmp_path / "bench")
    board = load_leaderboard([bench])
    # 15 cells; their stage files (test/, robust/results.json) are read through the merged file only
    assert len(board.files) == 15 and all(f.path.parent.parent.parent.name == "cells" for f in board.files)
    assert len(board.records) == 15 + 12
    table = _one_table(board)
    # one row per model entry, gathering its cells (one per set)
    assert sorted(row.entry for row in table.rows) == ["Cat_Net", "DINOv3-B", "Mesorch", "PSCC_Net"]
    assert all(not row.superseded for row in table.rows)
    assert table.title == "Protocol-CAT"
    # set names of the folders meet the published names; the published column order is used
    assert [c.name for c in table.columns] == ["CASIAv1", "Columbia", "NIST16", "Coverage"]
    assert [c.raw_names for c in table.columns][0] == ["CASIA1.0"]
    # a results.json file given directly works too
    single = load_leaderboard([bench / "cells" / "Mesorch" / "CASIA1.0" / "results.json"])
    assert len(single.tables[0].rows) == 1 and len(single.records) == 13


def test_ranking_groups_optimistic_and_incomplete_rows(tmp_path):
    board = load_leaderboard([make_bench(tmp_path / "bench")])
    table = _one_table(board)
    view = table_view(table, "pixel_f1")
    by_model = {r.label: r for r in view}
    # Cat_Net has the highest numbers but chose its checkpoint on the test sets: flagged, not ranked
    assert by_model["Cat_Net"].optimistic and by_model["Cat_Net"].rank is None
    assert by_model["Cat_Net"].avg.value > by_model["Mesorch"].avg.value
    assert by_model["Mesorch"].rank == 1 and by_model["PSCC_Net"].rank == 2
    # DINOv3 misses NIST16... (3 of 4 sets): shown, not ranked
    assert by_model["DINOv3_IML"].group == "incomplete" and by_model["DINOv3_IML"].rank is None
    assert [r.group for r in view] == ["ranked", "ranked", "optimistic", "incomplete"]
    # the average is the mean of the per-set values, and the selection label rides along
    mesorch = by_model["Mesorch"]
    assert mesorch.avg.value == pytest.approx(np.mean([c.value for c in mesorch.cells]))
    assert mesorch.selection == "best on validation"
    assert all(c.has_interval and c.low < c.value < c.high for c in mesorch.cells)
    assert mesorch.avg.has_interval and mesorch.avg.low < mesorch.avg.value < mesorch.avg.high
    # the average's interval is narrower than the per-set ones (four sets of images, averaged)
    assert mesorch.avg.high - mesorch.avg.low < min(c.high - c.low for c in mesorch.cells)
    # ranked by another metric: image_auc has no per-image column, so its average gets no interval
    auc = {r.label: r for r in table_view(table, "image_auc")}
    assert auc["Mesorch"].avg.value == pytest.approx(0.8) and not auc["Mesorch"].avg.has_interval


def test_average_interval_follows_the_documented_bootstrap(tmp_path):
    """One set: the stratified bootstrap is the documented one, so it gives the record's own interval;
    pooled metrics too. A per_image.csv that does not reproduce its record gives no interval."""
    run = write_results(tmp_path / "run", "Mesorch", [make_set("COVERAGE", 0.5, 3, n=57, authentic=9)], seed=7)
    board = load_leaderboard([run])
    record = board.records[0]
    for metric in ("pixel_f1", "pixel_f1_pooled"):
        interval, why = average_interval([record], metric, R, 7)
        assert why == "" and interval == pytest.approx(record.value(metric)[1:], abs=1e-12)
    interval, why = average_interval([record], "image_auc", R, 7)
    assert interval is None and "image_auc" in why
    # corrupt one manipulated image's value
    text = (run / "per_image.csv").read_text().splitlines()
    parts = text[1].split(",")
    parts[7] = "0.0" if parts[7] != "0.0" else "1.0"
    (run / "per_image.csv").write_text("\n".join([text[0], ",".join(parts), *text[2:]]) + "\n")
    from IMDLBenCo.leaderboard import bootstrap
    bootstrap.CACHE._rows.clear()
    interval, why = average_interval([record], "pixel_f1", R, 7)
    assert interval is None and "does not match" in why


def test_reported_rows_differences_and_name_mapping(tmp_path):
    board = load_leaderboard([make_bench(tmp_path / "bench")])
    table = _one_table(board)
    assert {t.file for t in table.reported} == {"protocol_cat.json", "protocol_cat_cotransformers.json",
                                                "robustness_casiav1_cat.json"}
    assert "protocol_mvss.json" in {t.file for t in board.unmatched}
    # reported rows are never in the main view by default
    assert {r.kind for r in table_view(table, "pixel_f1")} == {"reproduced"}
    diffs = {(d.row.model, d.table.file): d for d in differences(table)}
    mesorch = next(r for r in table.rows if r.model == "Mesorch")
    casia = table.columns[0]
    d = diffs[("Mesorch", "protocol_cat.json")]
    ours = mesorch.clean[casia.key].value("pixel_f1")[0]
    assert d.reported.method == "Mesorch" and d.cells[casia.key] == pytest.approx(ours - 0.840)
    ours_avg = np.mean([mesorch.clean[c.key].value("pixel_f1")[0] for c in table.columns])
    assert d.avg == pytest.approx(ours_avg - np.mean([0.840, 0.890, 0.392, 0.586]))
    # the Co-Transformers table lists the same four sets (plus AutoSplice): differences over the four
    d2 = diffs[("Mesorch", "protocol_cat_cotransformers.json")]
    assert d2.cells[casia.key] == pytest.approx(ours - 0.8398) and d2.avg_sets == 4
    # registered names meet published ones: Cat_Net → CAT-Net, PSCC_Net → PSCC-Net; DINOv3 by its options
    assert diffs[("Cat_Net", "protocol_cat.json")].reported.method == "CAT-Net"
    assert diffs[("PSCC_Net", "protocol_cat.json")].reported.method == "PSCC-Net"
    dino = diffs[("DINOv3_IML", "protocol_cat.json")]
    assert dino.reported.method == "DINOv3 ViT-B LoRA r64" and dino.avg is None  # NIST16 missing: no average
    names = load_names()
    assert names.methods("DINOv3_IML", {}) == ["DINOv3 ViT-L LoRA r32", "DINOv3 ViT-L r32"]  # the defaults
    assert names.methods("DINOv3_IML", {"backbone": "vit_small_patch16_dinov3", "lora_rank": 32}) == ["DINOv3 ViT-S LoRA r32"]
    assert names.methods("MyNet") == ["MyNet"]
    for raw, canonical in (("CASIA1.0", "CASIAv1"), ("casiav1", "CASIAv1"), ("NIST16_1024", "NIST16"),
                           ("IMD_20_1024", "IMD2020"), ("COVERAGE", "Coverage"), ("Korus", "Korus")):
        assert names.canonical_set(raw) == canonical


def test_include_reported_ranks_them_together(tmp_path):
    board = load_leaderboard([make_bench(tmp_path / "bench")])
    table = _one_table(board)
    view = table_view(table, "pixel_f1", include_reported=True)
    reported = [r for r in view if r.kind == "reported"]
    assert len(reported) == 9 + 7  # both Protocol-CAT tables
    ranked = sorted((r for r in view if r.rank is not None), key=lambda r: r.rank)
    assert ranked[0].label == "DINOv3 ViT-L LoRA r32" and ranked[0].avg.value == pytest.approx(0.847)  # as printed
    assert any(r.kind == "reproduced" for r in ranked)
    cot = next(r for r in reported if r.label == "Co-Transformers")
    assert cot.avg.value == pytest.approx(np.mean([0.6543, 0.9561, 0.4551, 0.8548]))  # over our 4 sets, recomputed
    # ranked by another metric, reported rows (pixel F1 only) stay out
    assert {r.kind for r in table_view(table, "image_auc", include_reported=True)} == {"reproduced"}


def test_robustness_against_the_published_levels(tmp_path):
    board = load_leaderboard([make_bench(tmp_path / "bench")])
    table = _one_table(board)
    comps = robustness_comparisons(table, board.names)
    assert len(comps) == 1 and comps[0].row.model == "Mesorch" and comps[0].reported.method == "Mesorch"
    blur_avg, blur_worst, found, wanted = comps[0].values["gaussian_blur"]
    mesorch = comps[0].row
    points = {p: rec.value("pixel_f1")[0] for p, rec in mesorch.attacked[(table.columns[0].key, "GaussianBlur")].items()}
    assert found == wanted and blur_avg == pytest.approx(np.mean([points[str(k)] for k in (3, 7, 11, 15, 19, 23)]))
    assert blur_worst == pytest.approx(points["23"])
    assert comps[0].values["jpeg"][0] is not None and "gaussian_noise" not in comps[0].values


def test_adhoc_tables_keep_different_contents_apart(tmp_path):
    a = make_set("COVERAGE", 0.5, 1)
    b = make_set("COVERAGE", 0.5, 2)
    b["hash"] = "sha256:" + "f" * 64  # same name, other files
    write_results(tmp_path / "r1", "Mesorch", [a, make_set("Columbia", 0.7, 3)])
    write_results(tmp_path / "r2", "PSCC_Net", [a, make_set("Columbia", 0.6, 4)])
    write_results(tmp_path / "r3", "Trufor", [b])
    board = load_leaderboard([tmp_path])
    adhoc = [t for t in board.tables if t.kind == "adhoc"]
    assert len(adhoc) == 2
    both = next(t for t in adhoc if len(t.columns) == 2)
    assert sorted(r.model for r in both.rows) == ["Mesorch", "PSCC_Net"]
    assert not any(t.reported for t in adhoc)  # reported rows belong to protocols
    # a model tested twice on the same checkpoint: one row, the newest record shown, the other kept as superseded
    write_results(tmp_path / "r4", "Trufor", [b], created="2027-01-01T00:00:00+00:00")
    board = load_leaderboard([tmp_path])
    trufor = next(r for t in board.tables for r in t.rows if r.model == "Trufor")
    assert len(trufor.superseded) == 1 and trufor.clean[("Coverage", b["hash"])].created.startswith("2027")


def test_epochs_of_one_run_are_rows_told_apart_by_checkpoint(tmp_path):
    """test.py over a folder of checkpoints: one record per epoch, rule fixed_epoch, in one results.json."""
    run = write_results(tmp_path / "e5", "IML_ViT", [make_set("COVERAGE", 0.4, 1)], "fixed_epoch",
                        checkpoint="checkpoint-5.pth", epoch=5)
    other = write_results(tmp_path / "e9", "IML_ViT", [make_set("COVERAGE", 0.5, 2)], "fixed_epoch",
                          checkpoint="checkpoint-9.pth", epoch=9)
    doc = json.loads((run / "results.json").read_text())
    doc["records"] += json.loads((other / "results.json").read_text())["records"]
    (run / "results.json").write_text(json.dumps(doc))
    with open(run / "per_image.csv", "a") as f:
        f.write("".join((other / "per_image.csv").read_text().splitlines(True)[1:]))
    shutil.rmtree(other)
    board = load_leaderboard([run])
    view = table_view(_one_table(board, "adhoc"), "pixel_f1")
    assert [r.entry for r in view] == ["e5 · checkpoint-9.pth", "e5 · checkpoint-5.pth"]
    assert [r.rank for r in view] == [1, 2] and all(r.selection == "fixed epoch (not chosen)" for r in view)
    assert all(r.cells[0].has_interval and r.avg.has_interval for r in view)


def test_site_with_reported_rows_ranked(tmp_path):
    index = build_leaderboard([make_bench(tmp_path / "bench")], out=tmp_path / "site", include_reported=True)
    page = index.read_text()
    ranked = page.split('<tbody class="group-ranked">', 1)[1].split("</tbody>", 1)[0]
    assert ranked.count('data-kind="reported"') == 16 and ranked.count('data-kind="reproduced"') == 2
    assert '<span class="badge reported">reported</span>' in ranked and 'class="reported-section"' not in page


# ----------------------------------------------------------------------------------- text formats
def test_markdown_csv_and_latex(tmp_path, capsys):
    bench = make_bench(tmp_path / "bench")
    md = leaderboard_text([bench], fmt="md")
    assert "### Protocol-CAT: pixel_f1" in md
    mesorch_line = next(line for line in md.splitlines() if line.startswith("| 1 | Mesorch"))
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", mesorch_line)
    assert "(optimistic)" in next(line for line in md.splitlines() if "Cat_Net" in line and line.startswith("| –"))
    reported = md.split("Reported by their authors", 1)[1].split("Reproduced − reported", 1)[0]
    assert "| MVSS-Net | Irennnne/DINOv3-IML" in reported and "Mesorch" in reported
    assert "(reported)" not in md.split("Reported by their authors", 1)[0]  # apart from the ranked rows
    # the Co-Transformers average printed by the source covers AutoSplice too: ours is the mean over these sets
    assert next(line for line in reported.splitlines() if "Co-Transformers |" in line).endswith("0.730* |")
    md_all = leaderboard_text([bench], fmt="md", include_reported=True)
    assert "| MVSS-Net (reported) |" in md_all and "Reported by their authors" not in md_all

    assert benco(["leaderboard", str(bench), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    mesorch = [r for r in rows if r["model"] == "Mesorch" and r["kind"] == "reproduced"]
    assert [r["set"] for r in mesorch] == ["CASIAv1", "Columbia", "NIST16", "Coverage", "average"]
    assert all(r["rank"] == "1" and r["ci_low"] for r in mesorch)
    assert any(r["kind"] == "reported" and r["model"] == "TruFor" and r["set"] == "NIST16" and float(r["value"]) == 0.348
               for r in rows)
    assert any(r["kind"] == "difference" for r in rows)

    out = tmp_path / "table.tex"
    assert benco(["leaderboard", str(bench), "--format", "latex", "--out", str(out), "--digits", "2"]) == 0
    tex = out.read_text()
    assert tex.count("\\begin{tabular}") == 1 and "\\toprule" in tex and "DINOv3\\_IML" in tex
    assert re.search(r"\d\.\d{2}\\,\{\\scriptsize\[\d\.\d{2}, \d\.\d{2}\]\}", tex)
    assert "reported in Irennnne/DINOv3-IML README.md (arXiv 2604.16083), not reproduced" in tex
    assert "reported in ProgrameThinking/Co-Transformers" in tex


# ----------------------------------------------------------------------------------- the site
def _hrefs(page: str) -> list[str]:
    return [htmlmod.unescape(h) for h in re.findall(r'\shref="([^"#]+)', page)]


def test_site_files_links_and_replacement(tmp_path, capsys):
    bench = make_bench(tmp_path / "bench")
    site = tmp_path / "site"
    assert benco(["leaderboard", str(bench), "--out", str(site)]) == 0
    assert "leaderboard:" in capsys.readouterr().out
    index = (site / "index.html").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', index) and "<script src" not in index
    # every link of every page leads to a file of the site (per_image.csv copies included)
    pages = [site / "index.html"] + sorted((site / "models").glob("*.html"))
    assert len(pages) == 5
    linked = set()
    for p in pages:
        for href in _hrefs(p.read_text(encoding="utf-8")):
            target = (p.parent / href).resolve()
            assert target.is_file(), (p.name, href)
            linked.add(target.name)
    assert "per_image.csv" in linked and "results.source.json" in linked
    mesorch_page = next(p for p in pages if "mesorch" in p.name).read_text(encoding="utf-8")
    for text in ("checkpoint sha256", "4f1c0de", "best on validation", "content", "float32", "wall time",
                 "image ECE", "Metric definitions", "<svg", "GaussianBlur", "Reproduced − reported"):
        assert text in mesorch_page, text
    summary = json.loads((site / "leaderboard.json").read_text())
    assert summary["schema"] == "imdlbenco.leaderboard/1" and summary["tables"][0]["rows"][0]["model"] == "Mesorch"
    # the site holds no results.json: running over a folder that contains it counts nothing twice
    assert not list(site.rglob("results.json"))
    # written again: replaced; a folder that is not a site is refused
    build_leaderboard([bench], out=site, metric="pixel_f1_pooled")
    assert json.loads((site / "leaderboard.json").read_text())["metric"] == "pixel_f1_pooled"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    assert benco(["leaderboard", str(bench), "--out", str(foreign)]) == 2
    assert "not a leaderboard site" in capsys.readouterr().err and (foreign / "thesis.tex").exists()
    assert not list(tmp_path.glob(".site.*")) and not list(tmp_path.glob(".foreign.*"))


def test_cli_help_lists_leaderboard(capsys):
    with pytest.raises(SystemExit):
        benco(["--help"])
    assert "leaderboard" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        benco(["leaderboard", "--help"])
    out = capsys.readouterr().out
    assert "--include-reported" in out and "--format" in out


def test_published_tables_are_the_reference_copies():
    names = load_names()
    tables = load_published(names)
    assert {t.file for t in tables} == {"protocol_cat.json", "protocol_cat_cotransformers.json", "protocol_mvss.json",
                                        "robustness_casiav1_cat.json"}
    assert all(t.source and t.rows for t in tables)
    assert "Source:" in (PUBLISHED_DIR / "README.md").read_text()
    if not SHARED_PUBLISHED.is_dir():
        pytest.skip("../shared/reference/published is not here")
    for path in SHARED_PUBLISHED.glob("*.json"):
        assert json.loads(path.read_text()) == json.loads((PUBLISHED_DIR / path.name).read_text()), path.name


# ----------------------------------------------------------------------------------- headless Chromium
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian: apt-get install -y --no-install-recommends chromium)")


def _chromium_cmd(exe: str, profile: Path) -> list[str]:
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-extensions", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


def _dump(url: str, tmp_path: Path, name: str) -> tuple:
    done = subprocess.run(_chromium_cmd(_chromium(), tmp_path / f"profile-{name}") + ["--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert 'data-ready="1"' in done.stdout, f"the page's script did not run (rc {done.returncode}): {done.stderr[-2000:]}"
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


def _rows_of(dom: str, table_id: str) -> list[str]:
    table = dom.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr class="[^"]*" data-group="[^"]*"[^>]*>(.*?)</tr>', table, re.S)


def _models(rows: Sequence[str]) -> list[str]:
    return [re.search(r'<td data-s="([^"]*)"', r).group(1) for r in rows]


def test_site_renders_in_headless_chromium(tmp_path):
    bench = make_bench(tmp_path / "bench")
    index = build_leaderboard([bench], out=tmp_path / "site")
    url = index.as_uri()
    dom, console = _dump(url, tmp_path, "plain")
    assert not console, console
    rows = _rows_of(dom, "lb-protocol-cat")
    assert _models(rows) == ["mesorch", "pscc_net", "cat_net", "dinov3_iml"]
    # intervals under the values, the optimistic flag, the reported tables in their own section
    assert len(re.findall(r'<span class="ci">\[\d\.\d{3}, \d\.\d{3}\]</span>', rows[0])) == 5  # 4 sets + average
    assert "⚠ optimistic" in rows[2]
    reported = dom.split('class="reported-section"', 1)[1].split("</section>", 1)[0]
    for method in ("MVSS-Net", "DINOv3 ViT-L LoRA r32", "Co-Transformers"):
        assert f"<td>{method}</td>" in reported
    assert "Robustness curves" in dom and dom.count("<svg") >= 2
    assert "showing 4 of 4 rows" in dom
    # sorted by the page's script: average ascending (within each group), then filtered by text
    dom, console = _dump(url + "?sort=avg&dir=asc", tmp_path, "sorted")
    assert not console, console
    assert _models(_rows_of(dom, "lb-protocol-cat")) == ["pscc_net", "mesorch", "cat_net", "dinov3_iml"]
    assert 'aria-sort="ascending"' in dom
    dom, _ = _dump(url + "?sort=set-nist16&dir=desc&optimistic=0&q=net", tmp_path, "filtered")
    visible = [r for r in re.findall(r'<tr class="([^"]*)" data-group', dom.split('id="lb-protocol-cat"')[1].split("</table>")[0])
               if "hidden" not in r]
    assert len(visible) == 1 and "showing 1 of 4 rows" in dom  # PSCC_Net only: Cat_Net is optimistic
    dom, _ = _dump(url + "?reported=0", tmp_path, "noreported")
    assert re.search(r'class="reported-section hidden"', dom)
    # a model page renders too
    model_page = sorted((tmp_path / "site" / "models").glob("*mesorch*.html"))[0]
    dom, console = _dump(model_page.as_uri(), tmp_path, "model")
    assert not console and "Result card" in dom
    # a picture of the page, for people
    shot = REPO_ROOT / "test-artifacts" / "leaderboard_screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    if shot.exists():
        shot.unlink()
    subprocess.run(_chromium_cmd(_chromium(), tmp_path / "profile-shot") + ["--window-size=1400,2000",
                   f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000
