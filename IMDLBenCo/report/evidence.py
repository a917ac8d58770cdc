"""The report's "results with evidence" part: what ``results.json`` says about a run.

Per record (checkpoint × test set × attack): every metric with its 95 % interval as ``value ±
half-width`` and ``[low, high]``, the label of how the checkpoint was chosen (the optimistic
choice on the test sets stands out), the checkpoint's sha256 and the dataset's content hash; an
error-bar plot of the headline metric per test set; the reliability diagrams (image and pixel
level) with their ECE and Brier score; and a link to ``per_image.csv`` (copied beside the page).
"""

from __future__ import annotations

import html
import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import runfolder

__all__ = ["read_results_file", "evidence_html", "interval_text", "plot_reliability", "plot_intervals"]

OPTIMISTIC = runfolder.SELECTION_LABELS["test_sets"]


def read_results_file(folder: Path) -> dict[str, Any] | None:
    """``results.json`` of a run folder (None when absent or of another schema)."""
    path = Path(folder) / runfolder.RESULTS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == runfolder.RESULTS_SCHEMA else None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def interval_text(entry: dict[str, Any]) -> tuple[str, str]:
    """``("0.5132 ± 0.0425", "[0.4711, 0.5560]")`` for a metric entry of a record ("" when absent)."""
    value, lo, hi = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
    shown = f"{value:.4f}" if _finite(value) else "nan"
    if not (_finite(lo) and _finite(hi)):
        return shown, ""
    return f"{shown} ± {(hi - lo) / 2:.4f}", f"[{lo:.4f}, {hi:.4f}]"


def _record_title(record: dict[str, Any]) -> str:
    parts = [str(record["dataset"].get("name"))]
    attack = record.get("attack")
    if attack:
        parts.append(f"{attack.get('name')} {attack.get('param')}")
    epoch = record["checkpoint"].get("epoch")
    if epoch is not None:
        parts.append(f"epoch {epoch}")
    return ", ".join(parts)


def _selection_badge(label: str) -> str:
    cls = "warn" if label == OPTIMISTIC else "ok"
    return f'<span class="badge {cls}">{html.escape(label)}</span>'


def plot_intervals(records: Sequence[dict[str, Any]], metric: str, path: Path) -> Path | None:
    """The metric per clean test set with its 95 % interval as error bars."""
    from .plots import _figure, _save

    rows = [(_record_title(r), r["metrics"][metric]) for r in records
            if not r.get("attack") and metric in r.get("metrics", {}) and _finite(r["metrics"][metric].get("value"))]
    if not rows:
        return None
    fig, (ax,) = _figure(1, (6.4, 0.6 + 0.45 * len(rows)))
    for i, (_, e) in enumerate(rows):
        lo, hi = e.get("ci_low"), e.get("ci_high")
        err = [[e["value"] - lo], [hi - e["value"]]] if _finite(lo) and _finite(hi) else None
        ax.errorbar(e["value"], i, xerr=err, fmt="o", color="#2f6fd6", capsize=4)
    ax.set_yticks(range(len(rows)), [t for t, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (95 % bootstrap interval)")
    return _save(fig, path)


def plot_reliability(calibration: dict[str, Any], path: Path) -> Path | None:
    """Reliability diagrams: fraction positive against mean confidence per bin (image, pixel),
    with the diagonal of perfect calibration and each bin's share as bars."""
    from .plots import _figure, _save

    kinds = [(k, calibration[k]) for k in ("image", "pixel") if calibration.get(k)]
    if not kinds:
        return None
    fig, axes = _figure(len(kinds), (3.4 * len(kinds), 3.4))
    for ax, (kind, cal) in zip(axes, kinds):
        bins = cal.get("bins") or []
        total = sum(b["count"] for b in bins) or 1
        centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
        ax.bar(centres, [b["count"] / total for b in bins], width=1 / max(len(bins), 1), color="#d9dee8",
               label="share of the " + ("images" if kind == "image" else "pixels"))
        xs = [b["mean_confidence"] for b in bins if b["count"]]
        ys = [b["fraction_positive"] for b in bins if b["count"]]
        ax.plot([0, 1], [0, 1], "--", color="#888888", linewidth=1)
        ax.plot(xs, ys, "o-", color="#c2410c", label="fraction manipulated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        extra = f", Brier {cal['brier']:.3f}" if _finite(cal.get("brier")) else ""
        ax.set_title(f"{kind}: ECE {cal['ece']:.3f}{extra}" if _finite(cal.get("ece")) else kind)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("fraction manipulated")
        ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)


def evidence_html(results: dict[str, Any], folder: Path, asset: Callable[[str], Path], src: Callable[[Path], str],
                  prefix: str, definitions: dict[str, str]) -> str:
    """The HTML of the evidence part for one run folder's ``results.json``."""
    records = results.get("records") or []
    if not records:
        return ""
    out: list[str] = ["<h3>Results with evidence <span class=\"muted\">(results.json)</span></h3>"]
    boot = results.get("bootstrap")
    out.append('<p class="muted">' + (
        f"± is half the 95 % percentile bootstrap interval over images ({boot['resamples']} resamples, seed "
        f"{boot['seed']}); the interval is in brackets." if boot else "bootstrap intervals were turned off (--bootstrap 0)."
    ) + "</p>")
    per_image = Path(folder) / runfolder.PER_IMAGE
    if per_image.is_file():
        copy = asset(f"{prefix}_per_image").with_suffix(".csv")
        shutil.copyfile(per_image, copy)
        out.append(f'<p><a href="{src(copy)}">per_image.csv</a> <span class="muted">(every image of every record: '
                   f"label, score, pixel F1/IoU/AUC/AP, areas, pixel counts; any aggregate can be recomputed from "
                   f"it)</span></p>")
    for record in records:
        title = html.escape(_record_title(record))
        ck, ds = record["checkpoint"], record["dataset"]
        out.append(f"<h4>{title} {_selection_badge(str(record.get('selection', '')))}</h4>")
        if record.get("selection") == OPTIMISTIC:
            out.append('<p class="warn-text">This checkpoint was chosen on the test sets themselves: its numbers are '
                       "optimistic. Train with --val_split or --val_data_path to choose on validation.</p>")
        rows = []
        for key, entry in record.get("metrics", {}).items():
            shown, bracket = interval_text(entry)
            rows.append(f"<tr><td><code>{html.escape(key)}</code></td><td class=\"num\">{html.escape(shown)}</td>"
                        f"<td class=\"num muted\">{html.escape(bracket)}</td>"
                        f"<td class=\"def\">{html.escape(definitions.get(key, ''))}</td></tr>")
        out.append('<div class="scroll"><table><thead><tr><th>metric</th><th>value ± 95 % half-width</th>'
                   f"<th>interval</th><th>definition</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
        out.append(
            '<p class="muted">checkpoint ' + html.escape(str(ck.get("path"))) + " (sha256 "
            + html.escape(str(ck.get("sha256"))[:16]) + "…); dataset " + html.escape(str(ds.get("path")))
            + f" ({ds.get('images')} images: {ds.get('manipulated')} manipulated, {ds.get('authentic')} authentic; "
            + "content " + html.escape(str(ds.get("content_hash"))[:23]) + "…)</p>")
        if record.get("warning"):
            out.append(f'<p class="warn-text">{html.escape(str(record["warning"]))}</p>')
    clean = [r for r in records if not r.get("attack")]
    headline = next(iter(clean[0]["metrics"])) if clean and clean[0].get("metrics") else None
    if headline and len(clean) > 1:
        path = plot_intervals(clean, headline, asset(f"{prefix}_intervals"))
        if path is not None:
            out.append(f'<img class="plot" src="{src(path)}" alt="{html.escape(headline)} with intervals">')
    for record in clean[:4]:
        path = plot_reliability(record.get("calibration") or {}, asset(f"{prefix}_reliability"))
        if path is not None:
            out.append(f"<p>Reliability, {html.escape(_record_title(record))} <span class=\"muted\">(points on the "
                       f"diagonal: predicted probabilities match the observed frequency)</span></p>"
                       f'<img class="plot" src="{src(path)}" alt="reliability diagram">')
    return "\n".join(out)
