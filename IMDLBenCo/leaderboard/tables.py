"""Group records into leaderboard tables and compute what every output shows.

A *table* is a protocol (the file-level ``protocol.name`` that ``benco bench`` writes), or, for
runs without one, an "ad hoc" table per combination of test sets (name and content hash). A
*row* is one model entry: model name + checkpoint (sha256) + test-time preprocessing and
precision, holding the records of every cell or run folder that tested that checkpoint that way.
Columns are the clean test sets (attack null), keyed by name and content hash, so two different
copies of "COVERAGE" never share a column. Standard library only (numpy only in bootstrap.py).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..report.build import lower_is_better
from .bootstrap import average_interval
from .published import Names, ReportedRow, ReportedTable, norm, norm_protocol
from .results import Record

#: the metric of the published tables, used for the reproduced − reported differences
REPORTED_METRIC = "pixel_f1"
ColumnKey = tuple[str, str]


def slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


@dataclass
class Column:
    key: ColumnKey  # (set name as published when known, content hash)
    name: str
    content_hash: str
    raw_names: list[str] = field(default_factory=list)
    label: str = ""
    slug: str = ""


@dataclass
class Cell:
    value: float | None = None
    low: float | None = None
    high: float | None = None
    note: str = ""

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None


@dataclass
class Row:
    """A model entry and everything measured on it."""

    key: tuple[Any, ...]
    model: str
    options: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    clean: dict[ColumnKey, Record] = field(default_factory=dict)
    attacked: dict[tuple[ColumnKey, str], dict[str, Record]] = field(default_factory=dict)
    superseded: list[Record] = field(default_factory=list)
    slug: str = ""
    methods: list[str] = field(default_factory=list)
    suffix: str = ""  # the checkpoint, when another row of the table has the same entry (epochs of one run)

    @property
    def entries(self) -> list[str]:
        """Model entry ids (protocol runs) or run-folder labels, in order of appearance."""
        out: list[str] = []
        for r in self.records:
            if r.file.entry not in out:
                out.append(r.file.entry)
        return out

    @property
    def entry(self) -> str:
        return ", ".join(self.entries) + (f" · {self.suffix}" if self.suffix else "")

    @property
    def selections(self) -> list[str]:
        return sorted({r.selection for r in self.records})

    @property
    def selection(self) -> str:
        return "; ".join(self.selections)

    @property
    def optimistic(self) -> bool:
        return any(r.optimistic for r in self.records)

    @property
    def checkpoint(self) -> dict[str, Any]:
        return self.records[0].checkpoint

    def title(self) -> str:
        ckpt = self.checkpoint
        name = str(ckpt.get("path") or "").replace("\\", "/").rsplit("/", 1)[-1]
        epoch = ckpt.get("epoch")
        bits = [b for b in (name, f"epoch {epoch}" if epoch is not None else "") if b]
        return f"{self.model} ({', '.join(bits)})" if bits else self.model


@dataclass
class ViewRow:
    """One line of a rendered table (reproduced or reported)."""

    kind: str  # "reproduced" | "reported"
    label: str
    entry: str
    selection: str
    cells: list[Cell]
    avg: Cell
    complete: bool
    optimistic: bool = False
    rank: int | None = None
    row: Row | None = None
    source: ReportedTable | None = None
    reported: ReportedRow | None = None

    @property
    def group(self) -> str:
        if not self.complete:
            return "incomplete"
        return "optimistic" if self.optimistic else "ranked"


@dataclass
class Difference:
    """Reproduced − reported (pixel F1) for one row and one published table."""

    row: Row
    table: ReportedTable
    reported: ReportedRow
    cells: dict[ColumnKey, float | None]
    avg: float | None
    avg_sets: int


@dataclass
class RobustnessComparison:
    row: Row
    table: ReportedTable
    reported: ReportedRow | None
    # attack key → (reproduced avg over the published levels, reproduced worst, levels found, levels wanted)
    values: dict[str, tuple[float | None, float | None, list[str], list[str]]]


@dataclass
class Table:
    key: str
    title: str
    kind: str  # "protocol" | "adhoc"
    columns: list[Column]
    rows: list[Row]
    reported: list[ReportedTable] = field(default_factory=list)
    protocol_files: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    slug: str = ""

    @property
    def score_tables(self) -> list[ReportedTable]:
        return [t for t in self.reported if not t.is_robustness]

    @property
    def robustness_tables(self) -> list[ReportedTable]:
        return [t for t in self.reported if t.is_robustness]

    def attacks(self) -> list[tuple[ColumnKey, str]]:
        """(test set, attack) pairs any row was attacked on, sorted."""
        found = {k for row in self.rows for k in row.attacked}
        return sorted(found, key=lambda k: (k[0][0].lower(), k[0][1], k[1].lower()))

    def column(self, key: ColumnKey) -> Column | None:
        return next((c for c in self.columns if c.key == key), None)


# ----------------------------------------------------------------------------------- grouping
def _row_key(record: Record, scope: str) -> tuple[Any, ...]:
    ckpt = record.checkpoint
    ident = ckpt.get("sha256") or ckpt.get("path") or str(record.file.path)
    data = record.file.data
    prep = json.dumps(data.get("preprocessing"), sort_keys=True, default=str)
    model_id = str((record.file.protocol or {}).get("model_id") or "")
    return (scope, model_id, record.model, json.dumps(record.model_options, sort_keys=True, default=str), ident,
            prep, str(data.get("precision") or ""))


def param_text(param: Any) -> str:
    """A strength as shown and keyed; None and 0 are the attack's clean setting."""
    if param is None or param == 0:
        return "clean"
    if isinstance(param, float) and param.is_integer():
        return str(int(param))
    return str(param)


def _newer(a: Record, b: Record) -> bool:
    return (a.created, str(a.file.path)) > (b.created, str(b.file.path))


def _add(row: Row, record: Record, names: Names) -> None:
    row.records.append(record)
    key = (names.canonical_set(record.dataset_name), record.dataset_hash)
    if record.attack is None:
        slot, holder = key, row.clean
    else:
        holder = row.attacked.setdefault((key, record.attack), {})
        slot = param_text(record.param)
    old = holder.get(slot)
    if old is None:
        holder[slot] = record
    elif _newer(record, old):
        holder[slot] = record
        row.superseded.append(old)
    else:
        row.superseded.append(record)


def _columns(rows: Sequence[Row], order: Sequence[str]) -> list[Column]:
    raw: dict[ColumnKey, set] = {}
    for row in rows:
        for k, rec in row.clean.items():
            raw.setdefault(k, set()).add(rec.dataset_name)
    keys = set(raw)
    rank = {norm(n): i for i, n in enumerate(order)}
    columns = [Column(key=k, name=k[0], content_hash=k[1], raw_names=sorted(raw.get(k, [])))
               for k in sorted(keys, key=lambda k: (rank.get(norm(k[0]), len(rank)), k[0].lower(), k[1]))]
    counts: dict[str, int] = {}
    for c in columns:
        counts[c.name] = counts.get(c.name, 0) + 1
    for c in columns:
        short = c.content_hash.split(":", 1)[-1][:8]
        c.label = f"{c.name} · {short}" if counts[c.name] > 1 else c.name
        c.slug = slugify(c.label)
    return columns


def build_tables(records: Sequence[Record], names: Names, published: Sequence[ReportedTable]) -> list[Table]:
    """Protocol tables (in name order), then ad hoc tables."""
    rows: dict[tuple[Any, ...], Row] = {}
    protocol_names: dict[str, str] = {}
    for record in records:
        proto = record.file.protocol
        scope = "protocol:" + norm_protocol(proto["name"]) if proto else "adhoc"
        if proto:
            protocol_names.setdefault(norm_protocol(proto["name"]), str(proto["name"]))
        key = _row_key(record, scope)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(key=key, model=record.model, options=record.model_options,
                                  methods=names.methods(record.model, record.model_options))
        _add(row, record, names)

    grouped: dict[str, list[Row]] = {}
    for row in rows.values():
        scope = row.key[0]
        if scope == "adhoc":
            sets = sorted(row.clean) or sorted({k for k, _ in row.attacked})
            scope = "adhoc:" + json.dumps(sets)
        grouped.setdefault(scope, []).append(row)

    tables: list[Table] = []
    for scope in sorted(grouped, key=lambda s: (s.startswith("adhoc"), s)):
        table_rows = grouped[scope]
        table_records = [r for row in table_rows for r in row.records]
        if scope.startswith("protocol:"):
            pkey = scope.split(":", 1)[1]
            matched = [t for t in published if pkey in t.protocols]
            order = next((t.sets for t in matched if not t.is_robustness), [])
            table = Table(key=scope, title=protocol_names[pkey], kind="protocol",
                          columns=_columns(table_rows, order), rows=table_rows, reported=matched)
            seen = set()
            for r in table_records:
                proto = r.file.protocol or {}
                ident = (proto.get("file"), proto.get("sha256"))
                if ident not in seen:
                    seen.add(ident)
                    table.protocol_files.append({"file": proto.get("file"), "sha256": proto.get("sha256")})
            if len(table.protocol_files) > 1:
                table.notes.append(f"{len(table.protocol_files)} different protocol files (by path or sha256) "
                                   "carry this protocol name: check that they describe the same experiment.")
        else:
            columns = _columns(table_rows, [])
            sets = " + ".join(c.label for c in columns) or "attacked sets only"
            table = Table(key=scope, title=f"Ad hoc runs: {sets}", kind="adhoc", columns=columns, rows=table_rows)
        names_seen: dict[str, int] = {}
        for c in table.columns:
            names_seen[c.name] = names_seen.get(c.name, 0) + 1
        for name, n in names_seen.items():
            if n > 1:
                table.notes.append(f"{name} was tested in {n} different contents (content hashes differ): "
                                   "each has its own column, and rows are not comparable across them.")
        table.slug = slugify(table.title)
        _disambiguate(table)
        tables.append(table)
    _assign_slugs(tables)
    return tables


def _disambiguate(table: Table) -> None:
    """Rows sharing an entry name (test.py over a folder: one row per epoch) are told apart by checkpoint."""
    seen: dict[str, list[Row]] = {}
    for row in table.rows:
        seen.setdefault(row.entry, []).append(row)
    for rows in seen.values():
        if len(rows) > 1:
            for row in rows:
                ckpt = row.checkpoint
                name = str(ckpt.get("path") or "").replace("\\", "/").rsplit("/", 1)[-1]
                row.suffix = name or str(ckpt.get("sha256") or "")[:12]


def _assign_slugs(tables: Sequence[Table]) -> None:
    used: dict[str, int] = {}
    for table in tables:
        if table.slug in used:
            used[table.slug] += 1
            table.slug = f"{table.slug}-{used[table.slug]}"
        else:
            used[table.slug] = 1
        for row in table.rows:
            sha = str(row.checkpoint.get("sha256") or "").split(":", 1)[-1][:8]
            entry = row.entries[0] if row.entries and row.entries[0] != row.model else ""
            base = slugify("-".join(x for x in (table.slug, row.model, entry, sha) if x))
            slug, i = base, 1
            while slug in used:
                i += 1
                slug = f"{base}-{i}"
            used[slug] = 1
            row.slug = slug


# ----------------------------------------------------------------------------------- values
def metrics_in(tables: Sequence[Table]) -> list[str]:
    found = {m for t in tables for row in t.rows for r in row.records for m in r.metrics}
    return sorted(found)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def reproduced_view(table: Table, row: Row, metric: str) -> ViewRow:
    cells: list[Cell] = []
    for column in table.columns:
        record = row.clean.get(column.key)
        if record is None:
            cells.append(Cell(note="not tested"))
            continue
        value, low, high = record.value(metric)
        cells.append(Cell(value, low, high, note="" if value is not None else f"no finite {metric}"))
    present = [c.value for c in cells if c.value is not None]
    complete = bool(table.columns) and len(present) == len(table.columns)
    avg = Cell(_mean(present))
    if complete and len(cells) > 1:
        boot = next((r.file.bootstrap for r in row.clean.values() if r.file.bootstrap), None)
        if boot is None:
            avg.note = "bootstrap was off for these runs"
        else:
            interval, why = average_interval([row.clean[c.key] for c in table.columns], metric,
                                             int(boot.get("resamples") or 0), int(boot.get("seed") or 0),
                                             float(boot.get("confidence") or 0.95))
            if interval:
                avg.low, avg.high = interval
            avg.note = why
    elif complete:
        avg = Cell(cells[0].value, cells[0].low, cells[0].high)
    elif present:
        avg.note = f"over {len(present)} of {len(table.columns)} sets: not ranked"
    return ViewRow(kind="reproduced", label=row.model, entry=row.entry, selection=row.selection, cells=cells,
                   avg=avg, complete=complete, optimistic=row.optimistic, row=row)


def reported_view(table: Table, source: ReportedTable, rep: ReportedRow) -> ViewRow:
    cells = []
    for column in table.columns:
        value = rep.values.get(column.name)
        cells.append(Cell(value, note="" if value is not None else "not in the published table"))
    present = [c.value for c in cells if c.value is not None]
    complete = bool(table.columns) and len(present) == len(table.columns)
    avg = Cell(_mean(present))
    if complete and set(c.name for c in table.columns) == set(source.sets) and rep.avg is not None:
        avg = Cell(float(rep.avg), note="as printed by the source")
    elif complete:
        avg.note = f"mean of the {len(present)} published values over these sets"
    return ViewRow(kind="reported", label=rep.method, entry=source.source, selection="reported by the source",
                   cells=cells, avg=avg, complete=complete, source=source, reported=rep)


def _rank(rows: list[ViewRow], metric: str) -> None:
    sign = 1 if lower_is_better(metric) else -1
    ranked = sorted((r for r in rows if r.group == "ranked" and r.avg.value is not None),
                    key=lambda r: sign * r.avg.value)
    previous, rank = None, 0
    for i, r in enumerate(ranked, 1):
        if r.avg.value != previous:
            rank, previous = i, r.avg.value
        r.rank = rank


def sort_key(metric: str):
    sign = 1 if lower_is_better(metric) else -1
    group_order = {"ranked": 0, "optimistic": 1, "incomplete": 2}

    def key(r: ViewRow):
        v = r.avg.value
        return (group_order[r.group], 0 if v is not None else 1, sign * v if v is not None else 0, r.label.lower())
    return key


def can_rank_reported(metric: str) -> bool:
    return metric == REPORTED_METRIC


def table_view(table: Table, metric: str, include_reported: bool = False) -> list[ViewRow]:
    """The main rows of ``table``, ranked by the average of ``metric`` over its sets.

    Reported rows join them (and are ranked with them) only with ``include_reported`` and the
    published metric; otherwise the outputs show the published tables apart, as printed."""
    rows = [reproduced_view(table, row, metric) for row in table.rows]
    if include_reported and can_rank_reported(metric):
        rows += [reported_view(table, t, rep) for t in table.score_tables for rep in t.rows]
    _rank(rows, metric)
    rows.sort(key=sort_key(metric))
    return rows


def differences(table: Table) -> list[Difference]:
    """Reproduced − reported pixel F1, for every row whose model appears in a matched published table."""
    out = []
    for row in table.rows:
        for source in table.score_tables:
            rep = next((source.row(m) for m in row.methods if source.row(m)), None)
            if rep is None:
                continue
            cells: dict[ColumnKey, float | None] = {}
            ours, theirs = [], []
            shared = [c for c in table.columns if c.name in source.sets]
            for column in shared:
                record = row.clean.get(column.key)
                value = record.value(REPORTED_METRIC)[0] if record else None
                published = rep.values.get(column.name)
                cells[column.key] = value - published if value is not None and published is not None else None
                if value is not None and published is not None:
                    ours.append(value)
                    theirs.append(published)
            avg = None
            if shared and len(ours) == len(shared):
                avg = _mean(ours) - _mean(theirs)
            out.append(Difference(row=row, table=source, reported=rep, cells=cells, avg=avg, avg_sets=len(shared)))
    return out


def robustness_comparisons(table: Table, names: Names, metric: str = REPORTED_METRIC) -> list[RobustnessComparison]:
    """For each row attacked on a published robustness table's set: its average and worst value over
    the published levels of each attack (only when every published level was tested)."""
    out = []
    for source in table.robustness_tables:
        spec = source.robustness or {}
        for row in table.rows:
            values: dict[str, tuple[float | None, float | None, list[str], list[str]]] = {}
            for (column_key, attack), points in row.attacked.items():
                if column_key[0] != spec.get("set"):
                    continue
                akey = names.attack_key(spec, attack)
                if akey is None:
                    continue
                wanted = [param_text(p) for p in spec["attacks"][akey].get("levels", [])]
                got = {p: rec.value(metric)[0] for p, rec in points.items()}
                found = [p for p in wanted if got.get(p) is not None]
                avg = _mean([got[p] for p in wanted]) if len(found) == len(wanted) and wanted else None
                worst = got.get(param_text(spec["attacks"][akey].get("worst")))
                values[akey] = (avg, worst, found, wanted)
            if values:
                rep = next((source.row(m) for m in row.methods if source.row(m)), None)
                out.append(RobustnessComparison(row=row, table=source, reported=rep, values=values))
    return out


def strength_key(descending: bool = False):
    """Sort key of strengths: the clean setting first, then numbers (high to low when ``descending``:
    a larger JPEG quality is milder), then any other labels."""
    def key(p: str):
        if p == "clean":
            return (0, 0.0, p)
        try:
            return (1, -float(p) if descending else float(p), p)
        except ValueError:
            return (2, 0.0, p)
    return key


def curve_points(row: Row, key: tuple[ColumnKey, str], metric: str, descending: bool = False
                 ) -> list[tuple[str, float | None, float | None, float | None]]:
    """(strength, value, low, high) of one attack on one set, the clean point first (from the
    attack's clean setting, else the row's clean record of that set), then from mild to harsh."""
    points = dict(row.attacked.get(key, {}))
    if "clean" not in points and key[0] in row.clean:
        points["clean"] = row.clean[key[0]]
    return [(p, *points[p].value(metric)) for p in sorted(points, key=strength_key(descending))]


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
