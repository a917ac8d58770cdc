"""Assemble the static HTML report from one or several run folders.

The page is self-contained: inline CSS, no scripts, no fonts or anything else fetched; every
picture is a PNG file in an assets folder next to the HTML and referenced by a relative path,
so the report opens from ``file://`` and can be zipped or copied as one folder.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import runoptions
from ..outputs import is_positive
from .runs import RunFolder, load_run

__all__ = ["build_report", "report_paths", "lower_is_better", "format_value"]

logger = logging.getLogger(__name__)

#: arguments shown up front in each run's configuration table (all others are folded away), and
#: those accepted for IMDL-BenCo's launchers and ignored (never shown as if they meant something):
#: both flags of the option table (IMDLBenCo/runoptions.py)
KEY_ARGS = runoptions.report_keys()
IGNORED_ARGS = runoptions.ignored_options()
NAN_NOTE = "undefined on this set (see the definition)"

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:18px 24px 60px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:20px;margin:34px 0 8px;padding-top:10px;border-top:2px solid #d6dae2}
h3{font-size:16px;margin:20px 0 6px}.muted{color:#667085;font-size:13px}
nav a{margin-right:14px;font-size:14px;color:#2455c3;text-decoration:none}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #dfe3ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.def{color:#475467;max-width:560px}.best{font-weight:700;color:#0b7a3b}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}.card{background:#fff;border:1px solid #dfe3ea;border-radius:6px;padding:8px 14px}
.card .v{font-size:22px;font-weight:700}.card .k{font-size:12px;color:#667085}
img.plot{max-width:100%;background:#fff;border:1px solid #dfe3ea;margin:4px 0}
.gallery{width:100%;table-layout:fixed}.gallery td{text-align:center;overflow-wrap:anywhere}
.gallery th.info,.gallery td.info{width:18%;text-align:left}
.gallery img{max-width:100%;height:auto;max-height:224px;display:block;margin:auto;border:1px solid #98a2b3}
.gallery .cap{font-size:11px;color:#667085}.nan{color:#98a2b3}
.tag{display:inline-block;padding:1px 6px;border-radius:4px;font-size:12px;color:#fff}
.tag.worst{background:#c0392b}.tag.best{background:#1e8449}.tag.authentic{background:#5d6d7e}.tag.sample{background:#2455c3}
.ok{color:#0b7a3b;font-weight:600}.bad{color:#c0392b;font-weight:600}
details{margin:6px 0}summary{cursor:pointer;color:#2455c3;font-size:14px}
code{background:#eef1f6;padding:0 4px;border-radius:3px}.scroll{overflow-x:auto;max-width:100%}
.notes{background:#fff8e1;border:1px solid #f0c36d;border-radius:6px;padding:8px 14px;margin:10px 0;font-size:14px}
.notes ul{margin:4px 0 0;padding-left:20px}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle}
.badge.ok{background:#dcfce7;color:#166534}.badge.warn{background:#fde68a;color:#92400e}
.warn-text{color:#92400e;background:#fffbeb;border-left:3px solid #f59e0b;padding:4px 8px;font-size:13px}
h4{font-size:14px;margin:14px 0 4px}
"""


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is the better one (false alarms, losses, errors)."""
    m = metric.lower()
    return any(word in m for word in ("fpr", "false_positive", "loss", "error", "eer"))


def is_quality_metric(metric: str) -> bool:
    """Whether ``metric`` ranks models: not a diagnostic (an error bound) or a count, which the
    report shows but never colours as the best."""
    m = metric.lower()
    return not (m.endswith("error_bound") or m in ("count", "n", "images") or m.endswith("_count"))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _num_cell(value: Any, cls: str = "num") -> str:
    """A table cell for a metric value; NaN says why it is there."""
    if _is_nan(value):
        return f'<td class="{cls} nan" title="{NAN_NOTE}">nan <span class="muted">({NAN_NOTE})</span></td>'
    return f'<td class="{cls}">{format_value(value)}</td>'


def format_value(value: Any) -> str:
    """Short, aligned text for a number (metrics to 4 decimals, counts with separators)."""
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == int(value) and abs(value) >= 1000:
            return f"{int(value):,}"
        if 1e-3 <= abs(value) < 1e4 or value == 0:
            return f"{value:.4f}"
        return f"{value:.3g}"
    return html.escape(str(value))


def _human(n: Any, unit: str = "") -> str:
    if not isinstance(n, (int, float)):
        return html.escape(str(n))
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".strip()


def report_paths(out: os.PathLike | None, runs: Sequence[Path]) -> tuple[Path, Path]:
    """``(html file, assets folder)`` for ``-o OUT``: a ``.html`` file or a folder (→ ``index.html``)."""
    if out is None:
        folder = runs[0] / "report" if len(runs) == 1 else Path.cwd() / "benco_report"
        return folder / "index.html", folder / "assets"
    out = Path(out)
    if out.suffix.lower() in (".html", ".htm"):
        return out, out.with_name(out.stem + "_files")
    return out / "index.html", out / "assets"


class _Page:
    """Collects HTML parts and writes assets with unique names."""

    def __init__(self, html_path: Path, assets: Path) -> None:
        self.html_path = html_path
        self.assets = assets
        self.parts: list[str] = []
        self.nav: list[tuple[str, str]] = []
        self._ids: dict[str, int] = {}

    def asset(self, stem: str) -> Path:
        count = self._ids.get(stem, 0)
        self._ids[stem] = count + 1
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)
        return self.assets / (f"{safe}.png" if count == 0 else f"{safe}_{count}.png")

    def src(self, path: Path) -> str:
        return html.escape(Path(os.path.relpath(path, self.html_path.parent)).as_posix(), quote=True)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def img(self, path: Path | None, alt: str, cls: str = "plot") -> None:
        if path is not None:
            self.add(f'<img class="{cls}" src="{self.src(path)}" alt="{html.escape(alt, quote=True)}">')

    def section(self, anchor: str, title: str) -> None:
        self.nav.append((anchor, title))
        self.add(f'<h2 id="{html.escape(anchor, quote=True)}">{html.escape(title)}</h2>')


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "", first_header_class: str = "") -> str:
    """``rows`` are already-escaped cell HTML; a cell may start with ``<td`` to carry its own class."""
    head = "".join(f'<th class="{first_header_class}">{html.escape(h)}</th>' if i == 0 and first_header_class
                   else f"<th>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    # wide tables (many metrics) scroll inside their box instead of widening the page
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _kv_table(data: dict[str, Any]) -> str:
    return _table(["key", "value"], ([html.escape(str(k)), html.escape(_plain(v))] for k, v in data.items()))


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return str(value)


def _natural_sorted(names: Iterable[str]) -> list[str]:
    """checkpoint-2 before checkpoint-10."""
    import re

    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def _definition(metric: str, run: RunFolder, definitions: dict[str, str]) -> str:
    text = run.definitions.get(metric) or definitions.get(metric)
    return html.escape(text) if text else '<span class="muted">no definition recorded (metric_definitions.json)</span>'


def _run_label(run: RunFolder, runs: Sequence[RunFolder]) -> str:
    names = [r.name for r in runs]
    label = run.name if names.count(run.name) == 1 else str(run.path)
    return label


#: what a script's metrics are measured on, for column labels
_SCRIPT_FILES = {"train": "train.py", "test": "test.py", "test_robust": "test_robust.py",
                 "test_save_images": "test_save_images.py", "test_complexity": "test_complexity.py",
                 "test_cam": "test_cam.py"}


def _checkpoint_words(run: RunFolder, last: bool = True) -> str:
    """``checkpoint-best.pth of train/``, ``last checkpoint of train/ (epoch 11)`` (a folder: the table shows
    its last epoch; ``checkpoints of train/`` with ``last=False``), or '' (the run's --checkpoint_path)."""
    value = run.args.get("checkpoint_path")
    if not value and run.robustness:
        value = run.robustness.get("checkpoint")
    if not isinstance(value, str) or not value:
        return ""
    path = Path(value)
    is_folder = str(value).endswith(("/", os.sep)) or path.is_dir() or not path.suffix
    folder = _short_folder(path if is_folder else path.parent, run)
    if is_folder:
        if not last:
            return f"checkpoints of {folder}/"
        epochs = [epoch for metrics in run.headline_metrics().values() for epoch, _ in metrics.values()]
        last = f" (epoch {int(max(epochs))})" if epochs else ""
        return f"last checkpoint of {folder}/{last}"
    return f"{path.name} of {folder}/" if folder else path.name


def _short_folder(folder: Path, run: RunFolder) -> str:
    """``folder`` relative to the folder that holds the run (``train``, ``untrained/weights``), else its name."""
    try:
        return Path(os.path.relpath(folder.resolve(), run.path.resolve().parent)).as_posix() \
            if folder.resolve().is_relative_to(run.path.resolve().parent) else folder.name
    except (OSError, ValueError):
        return folder.name


def tested_label(run: RunFolder, with_sets: bool = True) -> str:
    """What a run's metrics measure, for table columns: the script, the split and the checkpoint.

    ``train.py: validation during training (synth_val)``, ``test.py: synth_test, last checkpoint of
    train/ (epoch 11)``, ``test_robust.py: clean synth_test, checkpoint-best.pth of train/``; the folder name
    alone said "train" for what was the training run's validation split. ``with_sets=False`` leaves
    the set names out and names a folder's checkpoints, not its last one (for a plot over epochs,
    whose legend adds the set names itself).
    """
    sets = ", ".join(sorted(run.headline_metrics())) or "?"
    script = _SCRIPT_FILES.get(run.script, run.script)
    if run.script == "train":
        return f"{script}: validation during training" + (f" ({sets})" if with_sets else "")
    checkpoint = _checkpoint_words(run, last=with_sets)
    what = (f"clean {sets}" if run.script == "test_robust" else sets) if with_sets else \
        ("clean images" if run.script == "test_robust" else "")
    return ", ".join(part for part in (f"{script}: {what}" if what else script, checkpoint) if part)


def _column_labels(runs: Sequence[RunFolder], with_sets: bool = True) -> list[str]:
    """:func:`tested_label` of each run, with the folder added where two would read the same."""
    labels = [tested_label(r, with_sets) for r in runs]
    return [f"{label} [{_run_label(run, runs)}]" if labels.count(label) > 1 else label
            for label, run in zip(labels, runs)]


def _path_key(path: str) -> str:
    return os.path.normcase(os.path.abspath(str(path)))


def _set_names_by_path(runs: Sequence[RunFolder]) -> dict[str, str]:
    """``{dataset path: test set name}`` from the test_datasets.json files the runs used, so that a
    run given the same dataset by path (a robustness test) shows it under the same name."""
    import json

    names: dict[str, str] = {}
    for run in runs:
        for key in ("test_data_json", "test_data_path"):
            value = run.args.get(key)
            if not isinstance(value, str) or not value.endswith(".json") or not os.path.isfile(value):
                continue
            try:
                data = json.loads(Path(value).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                base = os.path.dirname(os.path.abspath(value))
                for name, path in data.items():
                    if isinstance(path, str):
                        names.setdefault(_path_key(path if os.path.isabs(path) else os.path.join(base, path)), str(name))
    return names


# ---------------------------------------------------------------------------- sections
def _config_section(page: _Page, run: RunFolder) -> None:
    cfg = run.config
    if not cfg:
        page.add('<p class="muted">no config.json in this folder</p>')
        return
    args = run.args
    shown = {k: args[k] for k in KEY_ARGS if k in args and args[k] not in (None, "", False)}
    page.add("<h3>Configuration</h3>")
    meta = {"script": cfg.get("script", "?"), "started": cfg.get("started", "?"), **shown}
    env = cfg.get("env") if isinstance(cfg.get("env"), dict) else {}
    if "world_size" in env:  # the processes that ran (the --world_size flag is ignored)
        meta["processes"] = env["world_size"]
    if env.get("device"):
        meta["device"] = env["device"]
    page.add(_kv_table(meta))
    if args:
        listed = {k: v for k, v in args.items() if k not in IGNORED_ARGS}
        page.add(f"<details><summary>all {len(listed)} arguments</summary>{_kv_table(listed)}"
                 f'<p class="muted">not listed: {", ".join(IGNORED_ARGS)} (accepted for IMDL-BenCo launchers, '
                 f"ignored; see processes)</p></details>")
    if cfg.get("model_kwargs"):
        page.add(f"<details><summary>model constructor arguments</summary>{_kv_table(cfg['model_kwargs'])}</details>")
    env = cfg.get("env")
    if isinstance(env, dict) and env:
        page.add(f"<details><summary>environment</summary>{_kv_table(env)}</details>")
    elif isinstance(env, list) and env:
        page.add(f"<details><summary>environment</summary>{_kv_table({str(e[0]): e[1] for e in env if isinstance(e, (list, tuple)) and len(e) == 2})}</details>")


def _metrics_section(page: _Page, run: RunFolder, definitions: dict[str, str], prefix: str) -> None:
    table = run.metrics_over_epochs()
    if not table:
        return
    page.add("<h3>Metrics per test set</h3>")
    for set_name, metrics in table.items():
        rows = []
        for metric, series in sorted(metrics.items()):
            last_epoch, last = series[-1]
            finite = [p for p in series if not _is_nan(p[1])]
            if finite:
                pick = min if lower_is_better(metric) else max
                best_epoch, best = pick(finite, key=lambda s: (s[1], -s[0]) if pick is max else (s[1], s[0]))
                best_cell = f'<td class="num">{format_value(best)} <span class="muted">(epoch {int(best_epoch)})</span></td>'
            else:
                best_cell = _num_cell(float("nan"))
            rows.append([
                f"<code>{html.escape(metric)}</code>",
                _num_cell(last),
                best_cell,
                f'<td class="def">{_definition(metric, run, definitions)}</td>',
            ])
        last_epoch = max(s[-1][0] for s in metrics.values())
        page.add(f"<h3>{html.escape(set_name)} <span class=\"muted\">(last evaluated epoch {int(last_epoch)})</span></h3>")
        page.add(_table(["metric", "last", "best", "definition"], rows))
        if max(len(s) for s in metrics.values()) > 1:
            from .plots import plot_metrics_over_epochs

            page.img(plot_metrics_over_epochs(set_name, metrics, page.asset(f"{prefix}_metrics_{set_name}")), f"metrics over epochs, {set_name}")


def _evidence_section(page: _Page, run: RunFolder, definitions: dict[str, str], prefix: str) -> None:
    """Intervals, selection label, calibration and per-image rows from the run's results.json."""
    from .evidence import evidence_html, read_results_file

    results = read_results_file(run.path)
    if results is not None:
        page.add(evidence_html(results, run.path, page.asset, page.src, prefix, definitions))


def _training_section(page: _Page, run: RunFolder, prefix: str) -> None:
    if not run.steps and not any(k.startswith("train_") for r in run.epochs for k in r):
        return
    from .plots import plot_training

    page.add(f'<h3 id="{prefix}-training">Training</h3>')
    last = run.epochs[-1] if run.epochs else {}
    cards = []
    if run.steps:
        cards.append(("steps logged", f"{len(run.steps):,}"))
    if "epoch" in last:
        cards.append(("epochs", str(int(last["epoch"]) + 1)))
    for key in run.loss_keys()[:3]:
        value = run.steps[-1].get(key)
        if isinstance(value, (int, float)):
            cards.append((f"last {key}", format_value(float(value))))
    if cards:
        page.add('<div class="cards">' + "".join(f'<div class="card"><div class="v">{v}</div><div class="k">{html.escape(k)}</div></div>' for k, v in cards) + "</div>")
    page.img(plot_training(run, page.asset(f"{prefix}_training")), "training losses and learning rate")
    if run.checkpoints:
        page.add(f'<p class="muted">checkpoints: {html.escape(", ".join(_natural_sorted(run.checkpoints)))}</p>')


def _clean_results(results: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """``{set: metrics}`` of the clean image (strength 0 / None of any attack) per test set."""
    clean: dict[str, dict[str, Any]] = {}
    for r in results:
        if isinstance(r, dict) and r.get("param") in (None, 0):
            clean.setdefault(str(r.get("set", "")), dict(r.get("metrics") or {}))
    return clean


def _robustness_section(page: _Page, run: RunFolder, definitions: dict[str, str], prefix: str,
                        set_names: dict[str, str]) -> None:
    rob = run.robustness
    if not rob:
        return
    from .plots import plot_robustness

    results = [r for r in rob.get("results", []) if isinstance(r, dict)]
    clean = _clean_results(results)
    dataset = str(rob.get("dataset", "?"))
    named = set_names.get(_path_key(dataset))
    page.add("<h3>Robustness</h3>")
    page.add(f'<p class="muted">checkpoint <code>{html.escape(str(rob.get("checkpoint", "?")))}</code> on '
             f'<code>{html.escape(dataset)}</code>{f" (test set {html.escape(named)})" if named else ""}; '
             "every attack is compared with the clean image (its column, and the dashed lines)</p>")
    by_attack: dict[tuple[str, str], list[dict]] = {}
    for result in results:
        if result.get("param") in (None, 0):
            continue
        by_attack.setdefault((str(result.get("set", "")), str(result.get("attack", "?"))), []).append(result)
    metrics = sorted({m for r in results for m in (r.get("metrics") or {})})
    for (set_name, attack), rows_of in by_attack.items():
        base = clean.get(set_name) or next(iter(clean.values()), {})
        strengths = sorted(rows_of, key=lambda r: float(r.get("param") or 0))
        # metrics down, strengths across: a handful of strengths fit the page, many metrics would not
        header = ["metric", "clean"] + [html.escape(str(r.get("param"))) for r in strengths]
        rows = []
        for m in metrics:
            rows.append([f"<code>{html.escape(m)}</code>", _num_cell(base.get(m))]
                        + [_num_cell((r.get("metrics") or {}).get(m)) for r in strengths])
        title = f"{set_name} · {attack}" if set_name else attack
        page.add(f"<h3>{html.escape(title)}</h3>")
        page.add(_table(header, rows))
        page.img(plot_robustness(attack, strengths, page.asset(f"{prefix}_robust_{title}"), clean=base),
                 f"metrics against {attack} strength")
    if metrics:
        rows = [[f"<code>{html.escape(m)}</code>", f'<td class="def">{_definition(m, run, definitions)}</td>'] for m in metrics]
        page.add("<details><summary>metric definitions</summary>" + _table(["metric", "definition"], rows) + "</details>")


def _gallery_section(page: _Page, run: RunFolder, prefix: str, n_samples: int, threshold: float) -> None:
    if not run.predictions or n_samples <= 0:
        return
    from .gallery import score_predictions, select_samples, write_gallery

    items = score_predictions(run, threshold=threshold)
    scored = [i.f1 for i in items if i.f1 is not None]
    chosen = select_samples(items, n_samples)
    write_gallery(chosen, page.assets, prefix, threshold=threshold)
    page.add(f'<h3 id="{prefix}-gallery">Predictions</h3>')
    with_label = [i for i in items if i.label is not None and i.pred_label is not None]
    summary = [f"{len(items)} predictions"]
    if scored:
        summary.append(f"mean per-image pixel F1 over {len(scored)} manipulated images with masks: {sum(scored) / len(scored):.4f} (threshold {threshold})")
    if with_label:
        correct = sum(int(is_positive(i.pred_label, threshold)) == i.label for i in with_label)
        summary.append(f"image-level accuracy {correct / len(with_label):.4f} ({correct}/{len(with_label)})")
    page.add(f'<p class="muted">{html.escape("; ".join(summary))}. Worst and best by per-image pixel F1 computed from the saved masks; authentic images ranked by false-alarm area.</p>')
    kinds = [("image", "image"), ("gt", "ground truth"), ("pred", "prediction"), ("bin", "thresholded")]
    with_cam = any("cam" in (item.files or {}) for item in chosen)
    cam_caption = _cam_caption(run)
    if with_cam:
        kinds.append(("cam", "class activation"))
        page.add(f'<p class="muted">class-activation maps ({html.escape(cam_caption)}): the heat map of the '
                 f'layer\'s contribution to the target, blended over the image (red high, blue low); written by '
                 f'<code>benco cam</code> / <code>test_cam.py</code> into <code>cam/</code>.</p>')
    rows = []
    for item in chosen:
        cells = []
        for kind, alt in kinds:
            f = (item.files or {}).get(kind)
            cell = f'<img src="{page.src(page.assets / f)}" alt="{alt} {html.escape(item.name, quote=True)}">' if f else '<span class="muted">n/a</span>'
            if f and kind == "bin" and item.bin_fraction is not None and item.bin_fraction in (0.0, 1.0):
                cell += f'<div class="cap">{"every pixel above" if item.bin_fraction else "no pixel above"} {threshold}</div>'
            if f and kind == "cam":
                cell += f'<div class="cap">{html.escape(cam_caption)}</div>'
            cells.append(cell)
        info = [f'<span class="tag {item.group}">{html.escape(item.group)}</span>', f"<b>{html.escape(item.name)}</b>"]
        if item.f1 is not None:
            info.append(f"pixel F1 {item.f1:.3f}")
        elif item.positive_fraction is not None:
            info.append(f"predicted area {100 * item.positive_fraction:.1f}%")
        if item.label is not None:
            info.append(f"true label: {'manipulated' if item.label else 'authentic'}")
        if item.pred_label is not None:
            predicted = int(is_positive(item.pred_label, threshold))
            ok = item.label is None or predicted == item.label
            info.append(f'predicted: <span class="{"ok" if ok else "bad"}">{"manipulated" if predicted else "authentic"} ({item.pred_label:.2f})</span>')
        if item.note:
            info.append(f'<span class="muted">{html.escape(item.note)}</span>')
        rows.append(['<td class="info">' + "<br>".join(info) + "</td>"] + cells)
    header = ["sample", "image", "ground truth", "prediction", f"thresholded ({threshold})"]
    if with_cam:
        header.append("class activation (CAM)")
    # fixed layout at the page's width: the pictures shrink to their columns, five with CAM maps included
    page.add(_table(header, rows, cls="gallery cam" if with_cam else "gallery", first_header_class="info"))


def _cam_caption(run: RunFolder) -> str:
    """``gradcam, layer dec1 (automatic), target mask`` from cam.json; what is known without it."""
    cam = run.cam or {}
    if not cam:
        return "from cam/; method and layer not recorded (no cam.json)"
    layer = str(cam.get("target_layer", "?"))
    if cam.get("target_layer_auto"):
        layer += " (chosen automatically)"
    return f"{cam.get('method', '?')}, layer {layer}, target {cam.get('target', '?')}"


def _complexity_section(page: _Page, run: RunFolder) -> None:
    c = run.complexity
    if not c:
        return
    page.add("<h3>Model complexity</h3>")
    cards = [("parameters", _human(c.get("params"))), ("trainable", _human(c.get("trainable_params"))),
             ("FLOPs", _human(c.get("flops"))), ("MACs", _human(c.get("macs")))]
    page.add('<div class="cards">' + "".join(f'<div class="card"><div class="v">{v}</div><div class="k">{k}</div></div>' for k, v in cards if v != "None") + "</div>")
    page.add(f'<p class="muted">model <code>{html.escape(str(c.get("model", "?")))}</code>, input size {html.escape(_plain(c.get("input_size", "?")))}</p>')


def _comparison_section(page: _Page, runs: Sequence[RunFolder], labels: list[str], definitions: dict[str, str]) -> None:
    with_epochs = [bool(run.metrics_over_epochs()) for run in runs]
    # a robustness folder's clean row joins the table only when no run has per-epoch metrics:
    # its dataset is named by path, so its rows would never line up with the test sets
    heads = [(label, run.headline_metrics()) for label, run, has in zip(labels, runs, with_epochs) if has or not any(with_epochs)]
    heads = [(label, h) for label, h in heads if h]
    if len(heads) < 2:
        return
    page.section("compare", "Side by side")
    page.add('<p class="muted">last evaluated epoch of every run; each column says what was tested (the script, '
             'the test set or validation split, the checkpoint); the best value of each metric row in green '
             '(diagnostics such as error bounds are not ranked)</p>')
    keys = sorted({(s, m) for _, h in heads for s, metrics in h.items() for m in metrics})
    rows = []
    for set_name, metric in keys:
        values = [h.get(set_name, {}).get(metric) for _, h in heads]
        present = [v[1] for v in values if v is not None and not _is_nan(v[1])]
        best = (min if lower_is_better(metric) else max)(present) if present and is_quality_metric(metric) else None
        cells = [html.escape(set_name), f"<code>{html.escape(metric)}</code>"]
        for v in values:
            if v is None:
                cells.append('<td class="num muted">–</td>')
            else:
                cells.append(_num_cell(v[1], "num best" if best is not None and len(present) > 1 and v[1] == best else "num"))
        defn = definitions.get(metric)
        cells.append(f'<td class="def">{html.escape(defn) if defn else ""}</td>')
        rows.append(cells)
    page.add(_table(["test set", "metric"] + [label for label, _ in heads] + ["definition"], rows))
    series = {label: run.metrics_over_epochs() for label, run in zip(_column_labels(runs, with_sets=False), runs)}
    metric = next((m for m in ("pixel_f1", "image_auc", "pixel_auc") if any(m in sets.get(s, {}) for sets in series.values() for s in sets)), None)
    if metric:
        data = {label: {s: m[metric] for s, m in sets.items() if len(m.get(metric, [])) > 1} for label, sets in series.items()}
        if sum(1 for d in data.values() if d) >= 2:
            from .plots import plot_comparison

            page.img(plot_comparison(metric, data, page.asset(f"compare_{metric}")), f"{metric} over epochs for every run")


def _notes_box(notes: Sequence[str]) -> str:
    """The report's notes: read before the numbers."""
    shown = [n.strip() for n in notes if isinstance(n, str) and n.strip()]
    if not shown:
        return ""
    items = "".join(f"<li>{html.escape(n[0].upper() + n[1:])}</li>" for n in shown)
    return f'<div class="notes" role="note"><b>Read first</b><ul>{items}</ul></div>'


def _summary_cards(runs: Sequence[RunFolder]) -> str:
    """Key numbers across all folders, shown at the top."""
    cards: list[tuple[str, str]] = []
    for run in runs:
        for set_name, metrics in run.headline_metrics().items():
            for metric in ("pixel_f1", "image_auc"):
                if metric in metrics and len(cards) < 8:
                    source = (f"{_SCRIPT_FILES['train']} validation" if run.script == "train"
                              else _SCRIPT_FILES.get(run.script, run.script))
                    cards.append((f"{metric} · {set_name} · {source} ({run.name}/)", format_value(metrics[metric][1])))
        if run.complexity and isinstance(run.complexity.get("params"), (int, float)):
            cards.append((f"parameters · {run.complexity.get('model', run.name)}", _human(run.complexity["params"])))
    if not cards:
        return ""
    return '<div class="cards">' + "".join(f'<div class="card"><div class="v">{v}</div><div class="k">{html.escape(k)}</div></div>' for k, v in cards) + "</div>"


def build_report(
    run_dirs: Sequence[os.PathLike],
    out: os.PathLike | None = None,
    n_samples: int = 12,
    threshold: float = 0.5,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write the HTML report of ``run_dirs`` and return the path of the HTML file.

    Args:
        run_dirs: ``--output_dir`` folders of train / test / test_robust / test_save_images /
            test_complexity runs, in the order they should appear.
        out: a ``.html`` file (pictures go to ``<stem>_files/``) or a folder (``index.html`` and
            ``assets/``); default ``report/`` inside a single run folder, else ``./benco_report``.
        n_samples: how many predictions the gallery shows (worst, best, authentic).
        threshold: probability above which a predicted pixel counts as manipulated.
        notes: sentences shown in a box at the top, before any number (what the model is, why a
            result looks as it does; ``benco demo`` says its model is a demo).
    """
    if not run_dirs:
        raise ValueError("build_report: give at least one run folder (the --output_dir of a benco script)")
    runs = [load_run(p) for p in run_dirs]
    html_path, assets = report_paths(out, [r.path for r in runs])
    assets.mkdir(parents=True, exist_ok=True)
    for stale in assets.glob("*.png"):  # pictures of an earlier report must not linger
        stale.unlink()
    page = _Page(html_path, assets)
    definitions: dict[str, str] = {}
    for run in runs:
        definitions.update(run.definitions)
    labels = [_run_label(r, runs) for r in runs]
    set_names = _set_names_by_path(runs)
    for run in runs:
        run.set_names = set_names

    _comparison_section(page, runs, _column_labels(runs), definitions)
    for index, (run, label) in enumerate(zip(runs, labels)):
        prefix = f"run{index}"
        page.section(prefix, f"{label} — {run.script}, model {run.model}")
        page.add(f'<p class="muted">folder <code>{html.escape(str(run.path.resolve()))}</code></p>')
        _training_section(page, run, prefix)
        _metrics_section(page, run, definitions, prefix)
        _evidence_section(page, run, definitions, prefix)
        _robustness_section(page, run, definitions, prefix, set_names)
        _gallery_section(page, run, prefix, n_samples, threshold)
        _complexity_section(page, run)
        _config_section(page, run)

    from ..version import __version__

    title = title or ("IMDLBenCo report: " + ", ".join(labels))
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    nav = "".join(f'<a href="#{html.escape(a, quote=True)}">{html.escape(t)}</a>' for a, t in page.nav)
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="muted">written by IMDLBenCo {html.escape(__version__)} on {now} from {len(runs)} run folder(s)</p>'
        f"<nav>{nav}</nav>{_notes_box(notes)}{_summary_cards(runs)}" + "\n".join(page.parts) + "</main></body></html>\n"
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(document, encoding="utf-8")
    logger.info("report written to %s", html_path)
    return html_path
