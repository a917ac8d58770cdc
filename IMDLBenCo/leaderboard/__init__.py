"""``benco leaderboard``: ranked tables from ``results.json`` files (docs/results.md), as a static
site or as text for a paper, with the published (reported) tables shown apart.

    from IMDLBenCo.leaderboard import build_leaderboard, leaderboard_text
    build_leaderboard(["runs/"], out="site/")               # site/index.html
    print(leaderboard_text(["runs/"], fmt="md"))

Importing this package is cheap (standard library); numpy is imported for the average's interval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from .published import Names, ReportedTable, load_names, load_published
from .results import KNOWN_SCHEMAS, Record, ResultsFile, load_records, read_results
from .tables import Table, build_tables, metrics_in, table_view

__all__ = ["build_leaderboard", "leaderboard_text", "load_leaderboard", "Leaderboard", "KNOWN_SCHEMAS",
           "read_results", "load_records", "table_view"]

DEFAULT_METRIC = "pixel_f1"
DEFAULT_TITLE = "IMDLBenCo leaderboard"


class Leaderboard:
    """What every output shows: the tables, the published tables and the name mapping."""

    def __init__(self, files: list[ResultsFile], records: list[Record], tables: list[Table],
                 published: list[ReportedTable], names: Names, metric: str) -> None:
        self.files, self.records, self.tables = files, records, tables
        self.published, self.names, self.metric = published, names, metric

    @property
    def unmatched(self) -> list[ReportedTable]:
        """Published tables whose protocol no table here reproduces."""
        used = {id(t) for table in self.tables for t in table.reported}
        return [t for t in self.published if id(t) not in used]


def load_leaderboard(run_dirs: Sequence[os.PathLike], metric: str = DEFAULT_METRIC,
                     reported: Sequence[os.PathLike] = (), exclude: os.PathLike | None = None) -> Leaderboard:
    files, records = load_records(run_dirs, exclude=exclude)
    names = load_names()
    published = load_published(names, [Path(p) for p in reported])
    tables = build_tables(records, names, published)
    available = metrics_in(tables)
    if metric not in available:
        raise UsageError(f"--metric {metric}: no record has this metric; the results hold: {', '.join(available)}.")
    return Leaderboard(files, records, tables, published, names, metric)


def build_leaderboard(run_dirs: Sequence[os.PathLike], out: os.PathLike = "benco_leaderboard",
                      metric: str = DEFAULT_METRIC, include_reported: bool = False, title: str | None = None,
                      reported: Sequence[os.PathLike] = (), digits: int = 3) -> Path:
    """Write the static site into ``out`` (a folder); return the path of its ``index.html``."""
    from .site import check_out_folder, write_site

    out = Path(out)
    check_out_folder(out)
    board = load_leaderboard(run_dirs, metric, reported, exclude=out)
    return write_site(out, board.tables, board.unmatched, metric, board.names, digits, include_reported,
                      title or DEFAULT_TITLE, len(board.files), len(board.records))


def leaderboard_text(run_dirs: Sequence[os.PathLike], fmt: str = "md", metric: str = DEFAULT_METRIC,
                     include_reported: bool = False, reported: Sequence[os.PathLike] = (), digits: int = 3) -> str:
    """The tables as Markdown, CSV or LaTeX."""
    from .export import FORMATS, render

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: expected html or one of {', '.join(FORMATS)}.")
    board = load_leaderboard(run_dirs, metric, reported)
    return render(board.tables, metric, fmt, include_reported=include_reported, digits=digits)
