"""The leaderboard as text for a paper: Markdown, CSV (one line per value) or LaTeX (booktabs)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from .tables import REPORTED_METRIC, Cell, Table, ViewRow, differences, reported_view, sort_key, table_view

FORMATS = ("md", "csv", "latex")
GROUP_TEXT = {
    "optimistic": "checkpoint chosen on these test sets (optimistic), not ranked",
    "incomplete": "not tested on every set, not ranked",
}


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _apart(table: Table, metric: str, include_reported: bool) -> list[ViewRow]:
    """Reported rows aligned with the table's columns, when they are not ranked with the others."""
    if include_reported and metric == REPORTED_METRIC:
        return []
    rows = [reported_view(table, t, rep) for t in table.score_tables for rep in t.rows]
    rows.sort(key=sort_key(REPORTED_METRIC))
    return rows


def _label(r: ViewRow, view: Sequence[ViewRow]) -> str:
    """The model name, with its entry when another row has the same name."""
    if r.kind == "reported":
        return f"{r.label} (reported)"
    same = [x for x in view if x.label == r.label and x.kind == "reproduced"]
    return f"{r.label} ({r.entry})" if len(same) > 1 else r.label


# ----------------------------------------------------------------------------------- Markdown
def _md_cell(cell: Cell, digits: int) -> str:
    if cell.value is None:
        return "–"
    ci = f" [{cell.low:.{digits}f}, {cell.high:.{digits}f}]" if cell.has_interval else ""
    return f"{cell.value:.{digits}f}{ci}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


RECOMPUTED = "mean of the"  # the start of a reported average's note when it is not the printed one


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_md_escape(c) for c in cells) + " |"


def to_markdown(tables: Sequence[Table], metric: str, include_reported: bool = False, digits: int = 3) -> str:
    out: list[str] = []
    for table in tables:
        view = table_view(table, metric, include_reported)
        sets = [c.label for c in table.columns]
        out.append(f"### {table.title}: {metric}\n")
        out.append(f"Ranked by the mean of {metric} over the {len(table.columns)} sets; [low, high]: 95 % bootstrap "
                   "interval over images (for the average: stratified over sets, when per_image.csv allows). "
                   "Rows whose checkpoint was chosen on the test sets are marked ⚠ (optimistic) and not ranked.\n")
        out.append(_md_row(["Rank", "Model", "Entry", "Selection"] + sets + ["Average"]))
        out.append("|" + "|".join(["---:", "---", "---", "---"] + ["---:"] * (len(sets) + 1)) + "|")
        starred = False
        for r in view:
            selection = r.selection + (" ⚠" if r.optimistic else "")
            if r.group == "incomplete" and r.kind == "reproduced":
                selection += " — " + GROUP_TEXT["incomplete"]
            entry = r.entry if r.kind == "reproduced" else r.source.source
            avg = _md_cell(r.avg, digits) if r.complete else "–"
            if r.kind == "reported" and r.avg.note.startswith(RECOMPUTED):
                avg, starred = avg + "*", True
            out.append(_md_row(["–" if r.rank is None else str(r.rank), _label(r, view), entry, selection]
                               + [_md_cell(c, digits) for c in r.cells] + [avg]))
        apart = _apart(table, metric, include_reported)
        if apart:
            out.append("\nReported by their authors (not reproduced here, never ranked with the rows above):\n")
            out.append(_md_row(["Method", "Source"] + sets + ["Average"]))
            out.append("|---|---|" + "---:|" * (len(sets) + 1))
            for r in apart:
                avg = _md_cell(r.avg, digits) if r.complete else "–"
                if r.avg.note.startswith(RECOMPUTED):
                    avg, starred = avg + "*", True
                out.append(_md_row([r.label, r.source.source] + [_md_cell(c, digits) for c in r.cells] + [avg]))
        if starred:
            out.append("\n\\* the mean of the published values over these sets; the source's printed average covers "
                       "other sets.")
        diffs = differences(table)
        if diffs:
            out.append(f"\nReproduced − reported ({REPORTED_METRIC}):\n")
            out.append(_md_row(["Model", "Published as", "Source"] + sets + ["Average"]))
            out.append("|---|---|---|" + "---:|" * (len(sets) + 1))
            for d in diffs:
                model = d.row.model + (f" ({d.row.entry})" if d.row.entry != d.row.model else "")
                cells = [model, d.reported.method, d.table.source]
                cells += [("–" if d.cells.get(c.key) is None else f"{d.cells[c.key]:+.{digits}f}")
                          if c.key in d.cells else "n/a" for c in table.columns]
                cells.append("–" if d.avg is None else f"{d.avg:+.{digits}f}")
                out.append(_md_row(cells))
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------------- CSV
CSV_HEADER = ["table", "kind", "group", "rank", "model", "entry", "selection", "set", "content_hash", "value",
              "ci_low", "ci_high", "source"]


def to_csv(tables: Sequence[Table], metric: str, include_reported: bool = False, digits: int = 3) -> str:
    """One line per value: each row × set, then the row's average (set ``average``); reported values as
    printed; reproduced − reported differences with kind ``difference``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)

    def num(v):
        return "" if v is None else repr(float(v))
    for table in tables:
        view = table_view(table, metric, include_reported)
        for r in view:
            source = r.source.source if r.source else ""
            base = [table.title, r.kind, r.group, "" if r.rank is None else r.rank, r.label, r.entry, r.selection]
            for c, cell in zip(table.columns, r.cells):
                w.writerow(base + [c.name, c.content_hash, num(cell.value), num(cell.low), num(cell.high), source])
            w.writerow(base + ["average", "", num(r.avg.value) if r.complete else "", num(r.avg.low),
                               num(r.avg.high), source])
        if not (include_reported and metric == REPORTED_METRIC):
            for t in table.score_tables:
                for rep in t.rows:
                    base = [table.title, "reported", "apart", "", rep.method, t.file, "reported by the source"]
                    for s in t.sets:
                        w.writerow(base + [s, "", num(rep.values.get(s)), "", "", t.source])
                    w.writerow(base + ["average (printed)", "", num(rep.avg), "", "", t.source])
        for d in differences(table):
            base = [table.title, "difference", "", "", d.row.model, d.row.entry, f"minus {d.reported.method}"]
            for c in table.columns:
                if c.key in d.cells:
                    w.writerow(base + [c.name, c.content_hash, num(d.cells[c.key]), "", "", d.table.source])
            w.writerow(base + ["average", "", num(d.avg), "", "", d.table.source])
    return buf.getvalue()


# ----------------------------------------------------------------------------------- LaTeX
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "−": "--", "⚠": ""}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def _tex_cell(cell: Cell, digits: int) -> str:
    if cell.value is None:
        return "--"
    if cell.has_interval:
        return f"{cell.value:.{digits}f}\\,{{\\scriptsize[{cell.low:.{digits}f}, {cell.high:.{digits}f}]}}"
    return f"{cell.value:.{digits}f}"


def to_latex(tables: Sequence[Table], metric: str, include_reported: bool = False, digits: int = 3) -> str:
    """One booktabs ``table`` per leaderboard table (needs ``\\usepackage{booktabs}``)."""
    out: list[str] = []
    for table in tables:
        view = table_view(table, metric, include_reported)
        apart = _apart(table, metric, include_reported)
        n = 3 + len(table.columns) + 1
        out.append("\\begin{table}[t]\n\\centering\n\\small")
        out.append(f"\\caption{{{latex_escape(table.title)}: {latex_escape(metric)} per test set and its mean; "
                   "brackets: 95\\,\\% bootstrap interval over images. Optimistic: checkpoint chosen on the test "
                   "sets (not ranked). Reported: as published, not reproduced ($^*$: mean of the published values over "
                   "these sets).}")
        out.append("\\begin{tabular}{rll" + "r" * (len(table.columns) + 1) + "}\n\\toprule")
        out.append(" & ".join(["Rank", "Model", "Selection"] + [latex_escape(c.label) for c in table.columns]
                              + ["Avg"]) + " \\\\\n\\midrule")
        apart.sort(key=lambda r: [t.file for t in table.score_tables].index(r.source.file))  # stable: by source
        group = None
        for r in view + apart:
            g = f"reported:{r.source.file}" if r in apart else r.group
            if g != group and (group is not None or g != "ranked"):
                text = (f"reported in {r.source.source}, not reproduced" if r in apart
                        else GROUP_TEXT.get(g, ""))
                lines = (["\\midrule"] if group is not None else []) + (
                    [f"\\multicolumn{{{n}}}{{l}}{{\\textit{{{latex_escape(text)}}}}} \\\\"] if text else [])
                out += lines
            group = g
            selection = "reported" if r.kind == "reported" else r.selection
            cells = ["--" if r.rank is None else str(r.rank), latex_escape(_label(r, view)), latex_escape(selection)]
            cells += [_tex_cell(c, digits) for c in r.cells]
            avg = _tex_cell(r.avg, digits) if r.complete else "--"
            if r.kind == "reported" and r.avg.note.startswith(RECOMPUTED):
                avg += "$^*$"
            cells.append(avg)
            out.append(" & ".join(cells) + " \\\\")
        out.append("\\bottomrule\n\\end{tabular}\n\\end{table}\n")
    return "\n".join(out)


def render(tables: Sequence[Table], metric: str, fmt: str, include_reported: bool = False, digits: int = 3) -> str:
    writer = {"md": to_markdown, "csv": to_csv, "latex": to_latex}[fmt]
    return writer(tables, metric, include_reported=include_reported, digits=digits)
