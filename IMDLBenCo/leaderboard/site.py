"""The static site: ``index.html`` (a table per protocol, reported tables, robustness curves) and a
page per model entry under ``models/`` (its result card), with per_image.csv copied beside it.

Every page is one HTML file with its CSS and JavaScript inline and its charts as inline SVG, so it
opens from ``file://`` with no server and no network.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..version import __version__
from .published import ReportedTable
from .results import Record, ResultsFile
from .tables import (
    REPORTED_METRIC,
    Cell,
    Row,
    Table,
    ViewRow,
    curve_points,
    differences,
    finite,
    param_text,
    robustness_comparisons,
    strength_key,
    table_view,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
SITE_SCHEMA = "imdlbenco.leaderboard/1"
PALETTE = ("#2455c3", "#c0392b", "#1e8449", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b7950b",
           "#2c3e50", "#e84393")
esc = html.escape


# ----------------------------------------------------------------------------------- formatting
def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_diff(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def interval_text(cell: Cell, digits: int = 3) -> str:
    return f"[{cell.low:.{digits}f}, {cell.high:.{digits}f}]" if cell.has_interval else ""


def num_td(cell: Cell, digits: int, cls: str = "num") -> str:
    if cell.value is None:
        return f'<td class="{cls} empty" data-v="" title="{esc(cell.note or "no value")}">—</td>'
    title = f' title="{esc(cell.note)}"' if cell.note else ""
    ci = f'<span class="ci">{interval_text(cell, digits)}</span>' if cell.has_interval else ""
    lo_hi = f' data-lo="{cell.low!r}" data-hi="{cell.high!r}"' if cell.has_interval else ""
    return (f'<td class="{cls}" data-v="{cell.value!r}"{lo_hi}{title}><span class="v">{fmt(cell.value, digits)}'
            f'</span>{ci}</td>')


def diff_td(value: float | None, digits: int) -> str:
    if value is None:
        return '<td class="num" data-v="">—</td>'
    cls = "pos" if value > 0 else "neg" if value < 0 else ""
    return f'<td class="num {cls}" data-v="{value!r}">{fmt_diff(value, digits)}</td>'


def selection_html(selection: str, optimistic: bool, rules: Iterable[str] = ()) -> str:
    rules = set(rules)
    if optimistic:
        badge = ('<span class="badge optimistic" title="the checkpoint was chosen by its score on these test sets: '
                 'an optimistic estimate, never ranked with the other rows">⚠ optimistic</span>')
    elif "validation" in rules:
        badge = '<span class="badge validation">validation</span>'
    else:
        badge = ""
    return f"{esc(selection)} {badge}"


def _table_html(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _kv(items: Sequence[tuple[str, Any]]) -> str:
    out = []
    for key, value in items:
        if value is None or value == "" or value == {}:
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True, default=str)
        out.append(f"<dt>{esc(key)}</dt><dd>{value if isinstance(value, _Raw) else esc(str(value))}</dd>")
    return '<dl class="card">' + "".join(out) + "</dl>"


class _Raw(str):
    """Already-escaped HTML for _kv."""


def page(title: str, body: str, root: str = "") -> str:
    css = (TEMPLATES / "leaderboard.css").read_text(encoding="utf-8")
    js = (TEMPLATES / "leaderboard.js").read_text(encoding="utf-8")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{css}</style></head><body><main>{body}</main>"
            f"<script>{js}</script></body></html>\n")


# ----------------------------------------------------------------------------------- charts
def _ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """Round axis limits and at most 7 ticks at a 1, 2 or 5 step."""
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 5)) if span > 0 else 0.1
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= 6:
            step *= mult
            break
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    n = int(round((hi - lo) / step))
    return lo, hi, [lo + i * step for i in range(n + 1)]


def svg_chart(series: Sequence[tuple[str, Sequence[tuple[str, float | None, float | None, float | None]]]],
              title: str, metric: str, descending: bool = False, width: int = 600, height: int = 300) -> str:
    """A line chart over attack strengths (categorical x, clean first, then mild to harsh), one line per
    series, with interval bars."""
    xs = sorted({p[0] for _, pts in series for p in pts}, key=strength_key(descending))
    ys = [v for _, pts in series for p in pts for v in p[1:] if v is not None]
    if not xs or not ys:
        return ""
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    lo, hi, ticks = _ticks(lo, hi)
    left, right, top, bottom = 48, 170, 14, 42
    pw, ph = width - left - right, height - top - bottom
    step = pw / len(xs)

    def X(label: str) -> float:
        return left + (xs.index(label) + 0.5) * step

    def Y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{esc(title)}" class="curve">']
    for v in ticks:
        y = Y(v)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e3e7ee"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#4a5367">{v:.2f}</text>')
    for x in xs:
        parts.append(f'<text x="{X(x):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle" fill="#4a5367">'
                     f'{esc(x)}</text>')
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#8a93a6"/>'
                 f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#8a93a6"/>'
                 f'<text x="{left + pw / 2:.1f}" y="{height - 8}" font-size="11" text-anchor="middle" fill="#1d2330">'
                 f'strength (attack parameter)</text>'
                 f'<text x="12" y="{top + ph / 2:.1f}" font-size="11" text-anchor="middle" fill="#1d2330" '
                 f'transform="rotate(-90 12 {top + ph / 2:.1f})">{esc(metric)}</text>')
    n = len(series)
    for j, (label, pts) in enumerate(series):
        color = PALETTE[j % len(PALETTE)]
        dx = (j - (n - 1) / 2) * min(4.0, step / (2 * max(n, 1)))
        coords = [(X(p[0]) + dx, Y(p[1]), p) for p in pts if p[1] is not None]
        if len(coords) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords) + '"/>')
        for x, y, p in coords:
            if p[2] is not None and p[3] is not None:
                parts.append(f'<line x1="{x:.1f}" y1="{Y(p[2]):.1f}" x2="{x:.1f}" y2="{Y(p[3]):.1f}" '
                             f'stroke="{color}" stroke-width="1" opacity="0.6"/>')
            ci = f" [{p[2]:.3f}, {p[3]:.3f}]" if p[2] is not None and p[3] is not None else ""
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{esc(label)}, {esc(p[0])}: '
                         f'{p[1]:.3f}{ci}</title></circle>')
        ly = top + 10 + 16 * j
        short = label if len(label) <= 24 else label[:23] + "…"
        parts.append(f'<rect x="{left + pw + 12}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + pw + 26}" y="{ly + 1}" font-size="11" fill="#1d2330"><title>{esc(label)}</title>'
                     f'{esc(short)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ----------------------------------------------------------------------------------- index page
GROUP_HEADS = {
    "ranked": "Ranked by the average over the sets",
    "optimistic": "Checkpoint chosen on these test sets (optimistic): shown apart, not ranked",
    "incomplete": "Not tested on every set: the average is over the sets present, not ranked",
}


def _main_table(table: Table, view: list[ViewRow], metric: str, digits: int) -> str:
    head = ['<th data-key="rank" data-dir="asc">Rank</th>', '<th data-key="model" data-dir="asc">Model</th>',
            '<th data-key="entry" data-dir="asc">Entry</th>', '<th data-key="selection" data-dir="asc">Selection</th>']
    for c in table.columns:
        raw = f" (as {', '.join(c.raw_names)})" if c.raw_names and c.raw_names != [c.name] else ""
        head.append(f'<th data-key="set-{esc(c.slug)}" title="{esc(c.name + raw)}; content {esc(c.content_hash)}">'
                    f'{esc(c.label)}</th>')
    head.append(f'<th data-key="avg" title="mean of {esc(metric)} over the {len(table.columns)} sets">Average</th>')
    ncol = len(head)
    bodies = []
    for group in ("ranked", "optimistic", "incomplete"):
        rows = [r for r in view if r.group == group]
        if not rows:
            continue
        text = GROUP_HEADS[group] + (f" ({metric})" if group == "ranked" else "")
        lines = [f'<tr class="group-head"><th colspan="{ncol}">{esc(text)}</th></tr>']
        for r in rows:
            classes = [r.group] + (["optimistic"] if r.optimistic else []) + (["reported-row"] if r.kind == "reported" else [])
            search = " ".join([r.label, r.entry, r.selection]).lower()
            if r.kind == "reported":
                model = f'{esc(r.label)} <span class="badge reported">reported</span>'
                rules: Iterable[str] = ()
            else:
                model = f'<a href="models/{esc(r.row.slug)}.html">{esc(r.label)}</a>'
                rules = {rec.rule for rec in r.row.records}
            rank = "" if r.rank is None else str(r.rank)
            rank_title = "" if r.rank is not None else ' title="not ranked: ' + esc(
                "chosen on the test sets" if r.group == "optimistic" else "not tested on every set") + '"'
            cells = [f'<td class="rank" data-v="{rank}"{rank_title}>{rank or "–"}</td>',
                     f'<td data-s="{esc(r.label.lower())}">{model}</td>',
                     f'<td class="small">{esc(r.entry)}</td>',
                     f'<td data-s="{esc(r.selection.lower())}">{selection_html(r.selection, r.optimistic, rules)}</td>']
            cells += [num_td(c, digits) for c in r.cells]
            cells.append(num_td(r.avg, digits, "num avg"))
            lines.append(f'<tr class="{" ".join(classes)}" data-group="{r.group}" data-kind="{r.kind}" '
                         f'data-optimistic="{int(r.optimistic)}" data-selection="{esc(r.selection)}" '
                         f'data-text="{esc(search)}">' + "".join(cells) + "</tr>")
        bodies.append(f'<tbody class="group-{group}">' + "".join(lines) + "</tbody>")
    return (f'<div class="scroll"><table class="lb" id="lb-{esc(table.slug)}" data-metric="{esc(metric)}">'
            f'<thead><tr>{"".join(head)}</tr></thead>{"".join(bodies)}</table></div>')


def published_table_html(source: ReportedTable, digits: int) -> str:
    robust = source.is_robustness
    head = ["Method"] + list(source.sets) + ([f"worst: {s}" for s in source.sets] if robust else ["Avg (printed)"])
    lines = []
    for rep in source.rows:
        cells = [f"<td>{esc(rep.method)}</td>"] + [num_td(Cell(rep.values.get(s)), digits) for s in source.sets]
        cells += ([num_td(Cell(rep.worst.get(s)), digits) for s in source.sets] if robust
                  else [num_td(Cell(rep.avg), digits)])
        # data-text lets the page's filter box hide published rows too
        lines.append(f'<tr class="reported-row" data-text="{esc(rep.method.lower())}">' + "".join(cells) + "</tr>")
    table = ('<div class="scroll"><table class="published"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
             + "</tr></thead><tbody>" + "".join(lines) + "</tbody></table></div>")
    return (f'<div class="published-block" data-file="{esc(source.file)}"><h4>{esc(source.protocol)} — '
            f'<span class="muted">{esc(source.source)}</span></h4><p class="small muted">{esc(source.metric)}; '
            f'{esc(source.note)} (file <code>published/{esc(source.file)}</code>)</p>{table}</div>')


def _differences_html(table: Table, digits: int, row: Row | None = None, link: str = "models/") -> str:
    diffs = [d for d in differences(table) if row is None or d.row is row]
    if not diffs:
        return ""
    head = ["Model (entry)", "Published as", "Source"] + [esc(c.label) for c in table.columns] + ["Average"]
    rows = []
    for d in diffs:
        entry = "" if d.row.entry == d.row.model else f' <span class="small muted">{esc(d.row.entry)}</span>'
        cells = [f'<td><a href="{link}{esc(d.row.slug)}.html">{esc(d.row.model)}</a>{entry}</td>',
                 f"<td>{esc(d.reported.method)}</td>", f'<td class="small">{esc(d.table.source)}</td>']
        cells += [diff_td(d.cells.get(c.key), digits) if c.key in d.cells else '<td class="num muted">n/a</td>'
                  for c in table.columns]
        cells.append(diff_td(d.avg, digits))
        rows.append(cells)
    return (f"<h3>Reproduced − reported ({REPORTED_METRIC})</h3><p class=\"small muted\">Our value minus the published "
            "one on each set both have (n/a: the published table has no such set); the average difference is over "
            "those shared sets, shown only when the row has all of them.</p>" + _table_html(head, rows, "diffs"))


def _robustness_html(table: Table, metric: str, names, digits: int) -> str:
    parts = []
    for key in table.attacks():
        (set_name, content), attack = key
        desc = names.larger_is_milder(attack)
        series = [(row.model if row.entry == row.model else f"{row.model} ({row.entry})",
                   curve_points(row, key, metric, desc)) for row in table.rows if key in row.attacked]
        chart = svg_chart(series, f"{attack} on {set_name}", metric, desc)
        if chart:
            parts.append(f'<div class="chart"><h4>{esc(attack)} on {esc(set_name)}</h4>{chart}</div>')
    out = ""
    if parts:
        out += (f"<h3>Robustness curves ({esc(metric)})</h3><p class=\"small muted\">One line per model entry; "
                "bars: 95 % bootstrap interval; 'clean': the attack's clean setting (or the clean test of that "
                "set).</p><div class=\"charts\">" + "".join(parts) + "</div>")
    for source in table.robustness_tables:
        comps = robustness_comparisons(table, names)
        out += "<h3>Robustness: reported</h3>" + published_table_html(source, digits)
        if comps:
            attacks = list(source.sets)
            head = ["Model (entry)", "Published as"] + [f"{esc(a)}: ours / reported (Δ)" for a in attacks]
            rows = []
            for comp in [c for c in comps if c.table is source]:
                cells = [f'<td><a href="models/{esc(comp.row.slug)}.html">{esc(comp.row.model)}</a></td>',
                         f"<td>{esc(comp.reported.method) if comp.reported else '—'}</td>"]
                for a in attacks:
                    avg, worst, found, wanted = comp.values.get(a, (None, None, [], []))
                    lines = []
                    for what, ours, pub in (("avg", avg, comp.reported.values.get(a) if comp.reported else None),
                                            ("worst", worst, comp.reported.worst.get(a) if comp.reported else None)):
                        delta = ours - pub if ours is not None and pub is not None else None
                        lines.append(f"{what} {fmt(ours, digits)} / {fmt(pub, digits)} ({fmt_diff(delta, digits)})")
                    why = "" if avg is not None else (f' title="levels tested: {esc(", ".join(found)) or "none"}; '
                                                      f'needed: {esc(", ".join(wanted))}"')
                    cells.append(f'<td class="num"{why}>' + "<br>".join(lines) + "</td>")
                rows.append(cells)
            out += ("<p class=\"small muted\">Ours: the mean of pixel F1 over the published levels of each attack "
                    "(shown only when every level was tested) and its value at the harshest level.</p>" + _table_html(head, rows, "diffs"))
    return out


def _explain(metric: str) -> str:
    return (
        '<div class="explain">'
        f"<p><b>Values</b>: {esc(metric)} on each test set; below it, the 95 % percentile bootstrap interval over "
        "images that the test run recorded (docs/results.md).</p>"
        "<p><b>Average</b>: the mean of the per-set values. Its interval (shown when every set's per_image.csv is "
        "present and reproduces the set's value) is a stratified bootstrap: each set's images resampled "
        "independently, the average taken per resample; otherwise the average has no interval.</p>"
        "<p><b>Rank</b>: only rows tested on every set whose checkpoint was not chosen on the test sets. Rows marked "
        "<span class=\"badge optimistic\">⚠ optimistic</span> picked their checkpoint by its score on these test sets "
        "(IMDL-BenCo's default recipe); they are listed apart and never ranked.</p>"
        "<p><b>Reported</b> rows are numbers printed by their authors, copied with their source; they are shown "
        "apart and never ranked with reproduced rows (unless the leaderboard was built with "
        "<code>--include-reported</code>). Click a column head to sort; the controls filter rows.</p></div>")


def _controls(selections: Sequence[str]) -> str:
    options = "".join(f'<option value="{esc(s)}">{esc(s)}</option>' for s in selections)
    return ('<div class="controls"><input type="search" id="filter" placeholder="filter models, entries…">'
            '<label><input type="checkbox" id="show-optimistic" checked> optimistic rows</label>'
            '<label><input type="checkbox" id="show-incomplete" checked> rows missing sets</label>'
            '<label><input type="checkbox" id="show-reported" checked> reported rows</label>'
            f'<label>selection <select id="selection"><option value="">all</option>{options}</select></label>'
            '<span id="status" class="muted small"></span></div>')


def _definitions(records: Sequence[Record]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in records:
        defs = r.file.data.get("metric_definitions")
        if isinstance(defs, dict):
            for k, v in defs.items():
                out.setdefault(str(k), str(v))
    return out


def index_html(tables: Sequence[Table], unmatched: Sequence[ReportedTable], metric: str, names, digits: int,
               include_reported: bool, title: str, n_files: int, n_records: int) -> tuple[str, dict[str, Any]]:
    summary: dict[str, Any] = {"schema": SITE_SCHEMA, "metric": metric, "include_reported": include_reported,
                               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                               "IMDLBenCo": __version__, "tables": []}
    records = [r for t in tables for row in t.rows for r in row.records]
    selections = sorted({row.selection for t in tables for row in t.rows} |
                        ({"reported by the source"} if include_reported else set()))
    toc = "".join(f'<li><a href="#{esc(t.slug)}">{esc(t.title)}</a> <span class="muted small">({len(t.rows)} '
                  f"model entries, {len(t.columns)} sets)</span></li>" for t in tables)
    body = [f"<h1>{esc(title)}</h1><p class=\"muted\">{n_records} records from {n_files} results.json files; ranked "
            f"by <b>{esc(metric)}</b>; IMDLBenCo {esc(__version__)}; "
            f"{esc(summary['created'])}</p>", _explain(metric), _controls(selections), f"<ul>{toc}</ul>"]
    for table in tables:
        view = table_view(table, metric, include_reported)
        body.append(f'<section id="{esc(table.slug)}" class="lb-table" data-kind="{table.kind}">'
                    f"<h2>{esc(table.title)}</h2>")
        if table.protocol_files:
            files = "; ".join(f"<code>{esc(str(p.get('file')))}</code> sha256 <code>{esc(str(p.get('sha256'))[:16])}</code>"
                              for p in table.protocol_files)
            body.append(f'<p class="small muted">protocol file: {files}</p>')
        body += [f'<p class="note">{esc(n)}</p>' for n in table.notes]
        if include_reported and table.score_tables and metric != REPORTED_METRIC:
            body.append(f'<p class="note">The published tables give {REPORTED_METRIC}; ranked by {esc(metric)}, '
                        "the reported rows stay apart.</p>")
        body.append(_main_table(table, view, metric, digits))
        if table.score_tables and not (include_reported and metric == REPORTED_METRIC):
            body.append('<h3>Reported by the authors <span class="muted small">(not reproduced here; never ranked '
                        'with the rows above)</span></h3><div class="reported-section">' +
                        "".join(published_table_html(s, digits) for s in table.score_tables) + "</div>")
        elif table.score_tables:
            body.append('<p class="small muted">Reported rows are ranked with the reproduced ones '
                        '(<code>--include-reported</code>); their sources: ' +
                        "; ".join(esc(s.source) for s in table.score_tables) + "</p>")
        body.append(_differences_html(table, digits))
        body.append(_robustness_html(table, metric, names, digits))
        body.append("</section>")
        summary["tables"].append(_table_summary(table, view))
    if unmatched:
        body.append('<section id="published"><h2>Published tables without a reproduced run of their protocol</h2>'
                    '<p class="small muted">Numbers as printed by their authors (IMDLBenCo/leaderboard/published/), '
                    "for reference.</p>" + "".join(published_table_html(s, digits) for s in unmatched) + "</section>")
    defs = _definitions(records)
    if defs:
        body.append("<h2>Metric definitions</h2>" + _table_html(
            ["metric", "definition"], [[f"<td><code>{esc(k)}</code></td>", f"<td>{esc(v)}</td>"]
                                       for k, v in sorted(defs.items()) if k == metric or k.startswith(metric)]))
    return page(title, "".join(body)), summary


def _table_summary(table: Table, view: list[ViewRow]) -> dict[str, Any]:
    def cell(c: Cell):
        return {"value": c.value, "ci_low": c.low, "ci_high": c.high}
    return {"title": table.title, "kind": table.kind, "slug": table.slug,
            "columns": [{"name": c.name, "label": c.label, "content_hash": c.content_hash} for c in table.columns],
            "rows": [{"kind": r.kind, "rank": r.rank, "group": r.group, "model": r.label, "entry": r.entry,
                      "selection": r.selection, "optimistic": r.optimistic,
                      "page": f"models/{r.row.slug}.html" if r.row else None,
                      "source": r.source.source if r.source else None,
                      "values": [cell(c) for c in r.cells], "average": cell(r.avg)} for r in view]}


# ----------------------------------------------------------------------------------- model page
def _files_of(row: Row) -> list[ResultsFile]:
    out: list[ResultsFile] = []
    for r in row.records:
        if r.file not in out:
            out.append(r.file)
    return out


def _copy_evidence(row: Row, folder: Path) -> dict[int, dict[str, str]]:
    """Copy each results file of ``row`` and its per_image.csv files under ``folder``; return links."""
    links: dict[int, dict[str, str]] = {}
    for i, f in enumerate(_files_of(row), 1):
        dest = folder / str(i)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.path, dest / "results.source.json")
        entry = {"results": f"{row.slug}/{i}/results.source.json"}
        per_image = {str(r.raw.get("per_image", {}).get("file")) for r in row.records
                     if r.file is f and isinstance(r.raw.get("per_image"), dict) and r.raw["per_image"].get("file")}
        for name in sorted(per_image):
            src = f.folder / name
            if src.is_file():
                target = dest / Path(name).name
                shutil.copyfile(src, target)
                entry.setdefault("per_image", f"{row.slug}/{i}/{target.name}")
            else:
                entry.setdefault("missing", name)
        links[id(f)] = entry
    return links


def _card(f: ResultsFile, row: Row, links: dict[str, str]) -> str:
    d = f.data
    recs = [r for r in row.records if r.file is f]
    ckpt = recs[0].checkpoint if recs else {}
    software = d.get("software") if isinstance(d.get("software"), dict) else {}
    commit = software.get("git_commit")
    if commit and software.get("git_dirty"):
        commit = f"{commit} (uncommitted changes)"
    evidence = [f'<a href="{esc(links["results"])}">results.json</a>']
    if links.get("per_image"):
        evidence.append(f'<a href="{esc(links["per_image"])}">per_image.csv</a> (one row per image per record)')
    if links.get("missing"):
        evidence.append(f"per_image file <code>{esc(links['missing'])}</code> was not found next to results.json")
    sets: dict[tuple[str, str, str], list[Record]] = {}
    for r in recs:
        sets.setdefault((r.dataset_name, str(r.dataset.get("path", "")), r.dataset_hash), []).append(r)
    lines = []
    for (name, path, content), group in sets.items():
        ds = group[0].dataset
        attacked: dict[str, list[str]] = {}
        for r in group:
            if r.attack:
                attacked.setdefault(r.attack, []).append(param_text(r.param))
        attacks = "; ".join(f"{a} {', '.join(p)}" for a, p in attacked.items())
        lines.append(f"<li>{esc(name)}: <code>{esc(path)}</code>, {esc(content)}, {esc(str(ds.get('images', '?')))} "
                     f"images ({esc(str(ds.get('manipulated', '?')))} manipulated, "
                     f"{esc(str(ds.get('authentic', '?')))} authentic)"
                     + (f"; {'clean and ' if any(r.attack is None for r in group) else ''}attacked: {esc(attacks)}"
                        if attacks else "") + "</li>")
    datasets = "".join(lines)
    items: list[tuple[str, Any]] = [
        ("folder", str(f.folder)), ("script", d.get("script")), ("created", d.get("created")),
        ("wall time", f"{d['wall_time_s']:.1f} s" if finite(d.get("wall_time_s")) else d.get("wall_time_s")),
        ("IMDLBenCo", software.get("IMDLBenCo")), ("git commit", commit),
        ("software", {k: v for k, v in software.items() if k not in ("IMDLBenCo", "git_commit", "git_dirty")}),
        ("model", (d.get("model") or {}).get("name")), ("model options", (d.get("model") or {}).get("options")),
        ("checkpoint", ckpt.get("path")), ("checkpoint sha256", ckpt.get("sha256")), ("epoch", ckpt.get("epoch")),
        ("selection", _Raw(selection_html(row.selection, row.optimistic, {r.rule for r in recs}))),
        ("selection rule", " ".join(str(x) for x in (ckpt.get("rule"), ckpt.get("mode"), ckpt.get("metric")) if x)),
        ("validation", ckpt.get("validation")), ("training run", ckpt.get("train_run")),
        ("datasets", _Raw(f"<ul>{datasets}</ul>")), ("preprocessing", d.get("preprocessing")),
        ("precision", d.get("precision")), ("device", d.get("device")), ("processes", d.get("processes")),
        ("seed", d.get("seed")), ("bootstrap", d.get("bootstrap") if d.get("bootstrap") is not None else "off"),
        ("protocol", d.get("protocol")), ("evidence", _Raw(" · ".join(evidence))),
    ]
    args = d.get("args")
    args_html = (f"<details><summary>all {len(args)} options of the run</summary>"
                 f"<pre class=\"small\">{esc(json.dumps(args, indent=1, sort_keys=True, default=str))}</pre></details>"
                 if isinstance(args, dict) else "")
    return f"<h3>Result card: <code>{esc(f.label)}</code></h3>" + _kv(items) + args_html


def model_html(table: Table, row: Row, metric: str, names, digits: int, links: dict[int, dict[str, str]]) -> str:
    body = [f'<p><a href="../index.html#{esc(table.slug)}">← {esc(table.title)}</a></p>',
            f"<h1>{esc(row.title())}</h1>",
            f"<p>{esc(table.title)} · entry <b>{esc(row.entry)}</b> · selection "
            f"{selection_html(row.selection, row.optimistic, {r.rule for r in row.records})}</p>"]
    warnings = sorted({f"{r.dataset_name}: {r.raw['warning']}" for r in row.records if r.raw.get("warning")})
    body += [f'<p class="note">{esc(w)}</p>' for w in warnings]
    if row.optimistic:
        body.append('<p class="note">This checkpoint was chosen by its score on the test sets themselves: its numbers '
                    "are optimistic and it is not ranked with checkpoints chosen on validation.</p>")
    metrics = sorted({m for r in row.clean.values() for m in r.metrics}, key=lambda m: (m != metric, m))
    cols = [c for c in table.columns if c.key in row.clean]
    if cols:
        rows = []
        for m in metrics:
            cells = [f"<td><code>{esc(m)}</code></td>"]
            for c in cols:
                v, lo, hi = row.clean[c.key].value(m)
                cells.append(num_td(Cell(v, lo, hi), digits))
            rows.append(cells)
        body.append("<h2>Metrics per test set</h2><p class=\"small muted\">value and 95 % bootstrap interval over "
                    "images</p>" + _table_html(["metric"] + [esc(c.label) for c in cols], rows))
        cal_rows = []
        for c in cols:
            cal = row.clean[c.key].raw.get("calibration") or {}
            img = cal.get("image") if isinstance(cal.get("image"), dict) else {}
            pix = cal.get("pixel") if isinstance(cal.get("pixel"), dict) else {}
            cal_rows.append([f"<td>{esc(c.label)}</td>", num_td(Cell(img.get("ece")), 4),
                             num_td(Cell(img.get("brier")), 4), num_td(Cell(pix.get("ece")), 4)])
        body.append("<h2>Calibration</h2><p class=\"small muted\">ECE over 15 equal-width bins (image scores; valid "
                    "pixels), Brier score of the image scores; — where the model gives no such output.</p>" +
                    _table_html(["set", "image ECE", "image Brier", "pixel ECE"], cal_rows))
    body.append(_differences_html(table, digits, row=row, link=""))
    charts = []
    attacks = sorted({a for (_k, a) in row.attacked})
    for attack in attacks:
        desc = names.larger_is_milder(attack)
        series = [(k[0], curve_points(row, (k, a), metric, desc)) for (k, a) in sorted(row.attacked) if a == attack]
        chart = svg_chart(series, attack, metric, desc)
        if chart:
            charts.append(f'<div class="chart"><h4>{esc(attack)}</h4>{chart}</div>')
    if charts:
        body.append(f"<h2>Robustness ({esc(metric)})</h2><div class=\"charts\">" + "".join(charts) + "</div>")
        pts_rows = []
        for (k, a) in sorted(row.attacked):
            for p, v, lo, hi in curve_points(row, (k, a), metric, names.larger_is_milder(a)):
                pts_rows.append([f"<td>{esc(k[0])}</td>", f"<td>{esc(a)}</td>", f"<td>{esc(p)}</td>",
                                 num_td(Cell(v, lo, hi), digits)])
        body.append("<details><summary>the numbers</summary>" +
                    _table_html(["set", "attack", "strength", esc(metric)], pts_rows) + "</details>")
    for f in _files_of(row):
        body.append(_card(f, row, links[id(f)]))
    if row.superseded:
        items = "".join(f"<li>{esc(r.dataset_name)} {esc(param_text(r.param)) if r.attack else ''} from "
                        f"<code>{esc(str(r.file.path))}</code> ({esc(r.created)})</li>" for r in row.superseded)
        body.append(f'<p class="note">Tested more than once: the newest record of each set is shown; older ones:'
                    f"</p><ul>{items}</ul>")
    defs = {}
    for f in _files_of(row):
        if isinstance(f.data.get("metric_definitions"), dict):
            for k, v in f.data["metric_definitions"].items():
                defs.setdefault(k, v)
    if defs:
        body.append("<h2>Metric definitions</h2>" + _table_html(
            ["metric", "definition"], [[f"<td><code>{esc(k)}</code></td>", f"<td>{esc(str(v))}</td>"]
                                       for k, v in sorted(defs.items())]))
    return page(f"{row.title()} — {table.title}", "".join(body))


# ----------------------------------------------------------------------------------- writing
def _is_site(path: Path) -> bool:
    try:
        return json.loads((path / "leaderboard.json").read_text(encoding="utf-8")).get("schema") == SITE_SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def check_out_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_site(out))):
        raise UsageError(f"--out {out}: exists and is not a leaderboard site written by benco leaderboard; "
                         "give a new or empty folder (an earlier site is replaced).")


def write_site(out: Path, tables: Sequence[Table], unmatched: Sequence[ReportedTable], metric: str, names,
               digits: int, include_reported: bool, title: str, n_files: int, n_records: int) -> Path:
    """Write the site into a fresh folder beside ``out``, then put it in place (an earlier site is replaced
    only once the new one is complete)."""
    out = Path(out)
    check_out_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a site is for sharing
        index, summary = index_html(tables, unmatched, metric, names, digits, include_reported, title,
                                    n_files, n_records)
        (tmp / "index.html").write_text(index, encoding="utf-8")
        models = tmp / "models"
        models.mkdir()
        for table in tables:
            for row in table.rows:
                links = _copy_evidence(row, models / row.slug)
                (models / f"{row.slug}.html").write_text(model_html(table, row, metric, names, digits, links),
                                                         encoding="utf-8")
        (tmp / "leaderboard.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "site")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"
