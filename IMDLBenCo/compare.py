"""``benco compare RUN_A RUN_B``: is model B better than model A on the same images?

A paired bootstrap over the images both runs tested (docs/results.md): the records of the two run
folders are paired by test set, which must be the same data (equal dataset ``content_hash``),
and their ``per_image.csv`` rows by image name. Each resample draws the images with replacement
and computes the metric for A and for B on the *same* images; the difference B − A over the
resamples gives the 95 % percentile interval and a two-sided p-value (twice the smaller share of
differences on either side of 0, at most 1), with no assumption about its distribution.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import runfolder
from .errors import RunFolderError, UsageError

__all__ = ["compare_runs", "METRICS", "format_comparison"]


def _mean_defined(column: str) -> Callable[[Any, dict[str, Any]], Any]:
    def compute(weights: Any, cols: dict[str, Any]) -> Any:
        from .evaluation.bootstrap import weighted_mean

        return weighted_mean(weights, cols[column])
    return compute


def _pooled(formula: Callable[[Any, Any, Any, Any], Any]) -> Callable[[Any, dict[str, Any]], Any]:
    def compute(weights: Any, cols: dict[str, Any]) -> Any:
        import numpy as np

        from .evaluation.bootstrap import weighted_sums

        tp, fp, fn, tn = weighted_sums(weights, np.stack([cols[k] for k in ("tp", "fp", "fn", "tn")], 1)).T
        with np.errstate(invalid="ignore", divide="ignore"):
            return formula(tp, fp, fn, tn)
    return compute


def _image(kind: str) -> Callable[[Any, dict[str, Any]], Any]:
    def compute(weights: Any, cols: dict[str, Any]) -> Any:
        import numpy as np

        from .evaluation.bootstrap import weighted_binary_ap, weighted_binary_auc

        scores, labels = cols["pred_label"], cols["label"] > 0
        if np.isnan(scores).any():
            raise UsageError("an image-level metric needs pred_label for every image; one of the runs has none "
                             "(give the model a label head, or test with --label_from_mask max)")
        if kind == "auc":
            return weighted_binary_auc(weights, scores, labels)
        if kind == "ap":
            return weighted_binary_ap(weights, scores, labels)
        hit = scores > 0.5
        w = weights.astype(np.float64)
        tp, fp, fn = w @ (hit & labels), w @ (hit & ~labels), w @ (~hit & labels)
        tn = w.sum(1) - tp - fp - fn
        with np.errstate(invalid="ignore", divide="ignore"):
            if kind == "f1":
                return np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
            return (tp + tn) / w.sum(1)
    return compute


#: metrics that can be recomputed from per_image.csv (threshold 0.5, as the default evaluators)
METRICS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "pixel_f1": _mean_defined("pixel_f1"),
    "pixel_iou": _mean_defined("pixel_iou"),
    "pixel_auc": _mean_defined("pixel_auc"),
    "pixel_ap": _mean_defined("pixel_ap"),
    "pixel_f1_pooled": _pooled(lambda tp, fp, fn, tn: _div(2 * tp, 2 * tp + fp + fn)),
    "pixel_iou_pooled": _pooled(lambda tp, fp, fn, tn: _div(tp, tp + fp + fn)),
    "image_auc": _image("auc"),
    "image_ap": _image("ap"),
    "image_f1": _image("f1"),
    "image_accuracy": _image("accuracy"),
}


def _div(a: Any, b: Any) -> Any:
    import numpy as np

    return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def _load(run: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    from .engine.results import read_results

    results = read_results(run)
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    csv_path = folder / runfolder.PER_IMAGE
    if not csv_path.is_file():
        raise RunFolderError(f"{folder}: no {runfolder.PER_IMAGE} beside results.json (the per-image rows a paired "
                             f"comparison needs)")
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return results, rows


def _clean_records(results: dict[str, Any], run: str) -> dict[str, dict[str, Any]]:
    """One record per test set: clean images; among several checkpoints the chosen one, else the
    latest epoch."""
    by_set: dict[str, list[dict[str, Any]]] = {}
    for record in results.get("records", []):
        if record.get("attack"):
            continue
        by_set.setdefault(record["dataset"]["name"], []).append(record)
    chosen = {}
    for name, records in by_set.items():
        preferred = [r for r in records if r["checkpoint"].get("rule") in ("validation", "test_sets", "given")]
        pool = preferred or records
        chosen[name] = max(pool, key=lambda r: -1 if r["checkpoint"].get("epoch") is None else r["checkpoint"]["epoch"])
    if not chosen:
        raise RunFolderError(f"{run}: results.json has no record of clean (unattacked) images to compare")
    return chosen


def _columns(rows: Sequence[dict[str, str]], keys: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    selected = {r["name"]: r for r in rows if all(str(r.get(k, "")) == str(v) for k, v in keys.items())}
    missing = [n for n in names if n not in selected]
    if missing:
        raise RunFolderError(f"per_image.csv lacks rows for {len(missing)} image(s), e.g. {missing[0]}")

    def col(name: str) -> Any:
        return np.array([float(selected[n][name]) if selected[n].get(name, "") != "" else np.nan for n in names])

    return {c: col(c) for c in ("label", "pred_label", "pixel_f1", "pixel_iou", "pixel_auc", "pixel_ap", "tp", "fp",
                                "fn", "tn")}


def compare_runs(run_a: str, run_b: str, metric: str = "pixel_f1", resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, Any]:
    """The paired comparison of two run folders, per shared test set (see the module docstring)."""
    import numpy as np

    from .evaluation.bootstrap import index_chunks, percentile_interval, resample_weights

    if metric not in METRICS:
        raise UsageError(f"--metric {metric}: not one that per_image.csv determines; choose one of {sorted(METRICS)}")
    if resamples < 10:
        raise UsageError(f"--bootstrap {resamples}: give at least 10 resamples")
    (res_a, rows_a), (res_b, rows_b) = _load(run_a), _load(run_b)
    rec_a, rec_b = _clean_records(res_a, run_a), _clean_records(res_b, run_b)
    shared = [s for s in rec_a if s in rec_b]
    if not shared:
        raise UsageError(f"{run_a} tested {sorted(rec_a)}, {run_b} tested {sorted(rec_b)}: no test set in common")
    out: dict[str, Any] = {"metric": metric, "run_a": str(run_a), "run_b": str(run_b), "resamples": resamples,
                           "seed": seed, "confidence": confidence, "sets": []}
    for name in shared:
        a, b = rec_a[name], rec_b[name]
        ha, hb = a["dataset"].get("content_hash"), b["dataset"].get("content_hash")
        if not ha or ha != hb:
            raise UsageError(f"test set {name!r}: the runs did not test the same data (content hash {ha} in {run_a}, "
                             f"{hb} in {run_b}); a paired comparison needs the same images")
        keys_a, keys_b = a["per_image"]["rows"], b["per_image"]["rows"]
        names_a = [r["name"] for r in rows_a if all(str(r.get(k, "")) == str(v) for k, v in keys_a.items())]
        names_b = {r["name"] for r in rows_b if all(str(r.get(k, "")) == str(v) for k, v in keys_b.items())}
        names = [n for n in names_a if n in names_b]
        if not names:
            raise UsageError(f"test set {name!r}: no image name appears in both runs' per_image.csv")
        cols_a, cols_b = _columns(rows_a, keys_a, names), _columns(rows_b, keys_b, names)
        full = np.ones((1, len(names)), np.int64)
        value_a = float(METRICS[metric](full, cols_a)[0])
        value_b = float(METRICS[metric](full, cols_b)[0])
        diffs = []
        for indices in index_chunks(len(names), resamples, seed):
            w = resample_weights(indices, len(names))
            diffs.append(METRICS[metric](w, cols_b) - METRICS[metric](w, cols_a))
        d = np.concatenate(diffs)
        d = d[np.isfinite(d)]
        lo, hi = percentile_interval(d, confidence)
        p = min(1.0, 2 * min(float((d <= 0).mean()), float((d >= 0).mean()))) if d.size else None
        out["sets"].append({"set": name, "images": len(names), "content_hash": ha, "a": value_a, "b": value_b,
                            "difference": value_b - value_a, "ci_low": lo, "ci_high": hi, "p_value": p,
                            "p_value_floor": 1.0 / max(d.size, 1),
                            "selection_a": a.get("selection"), "selection_b": b.get("selection")})
    return out


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as a text table with a one-line reading per set."""
    metric = result["metric"]
    lines = [f"{metric}: B - A with a {round(100 * result['confidence'])} % paired bootstrap interval "
             f"({result['resamples']} resamples of the images both runs tested)",
             f"  A = {result['run_a']}", f"  B = {result['run_b']}", ""]
    header = f"{'set':<20} {'images':>6} {'A':>8} {'B':>8} {'B - A':>8}  {'interval':<21} {'p':>8}"
    lines += [header, "-" * len(header)]
    for s in result["sets"]:
        interval = "-" if s["ci_low"] is None else f"[{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]"
        p = "-" if s["p_value"] is None else (f"<{s['p_value_floor']:.0e}" if s["p_value"] == 0 else f"{s['p_value']:.4f}")
        lines.append(f"{s['set']:<20} {s['images']:>6} {_f(s['a'])} {_f(s['b'])} {s['difference']:>+8.4f}  "
                     f"{interval:<21} {p:>8}")
    for s in result["sets"]:
        if s["ci_low"] is not None and (s["ci_low"] > 0 or s["ci_high"] < 0):
            better = "B" if s["ci_low"] > 0 else "A"
            lines.append(f"{s['set']}: {better} is better on {metric} (the interval excludes 0).")
        elif s["ci_low"] is not None:
            lines.append(f"{s['set']}: no difference shown (the interval contains 0).")
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return f"{value:>8.4f}" if value is not None and not math.isnan(value) else f"{'nan':>8}"


def write_json(path: str, result: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
