"""``benco leaderboard RUN_DIR... [--out SITE/] [--format html|md|csv|latex]``: ranked tables from results.json."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="rank models from results.json files: a static site, or a table for a paper",
        description=(
            "Rank the model entries found in results.json files (run folders, or folders holding them such as a "
            "`benco bench --out` folder): a table per protocol (runs without one: ad hoc tables by test set) with "
            "each set's value and 95 %% interval and the average over sets; rows whose checkpoint was chosen on the "
            "test sets are flagged and not ranked; the published Protocol-CAT/MVSS tables are shown apart, with "
            "reproduced − reported differences; robustness curves; a page per model with its result card. The site "
            "opens from file:// (no server, no network). --format md|csv|latex writes the tables as text instead."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folders, folders holding them (searched recursively), or results.json files")
    p.add_argument("-o", "--out", default=None,
                   help="html: the site folder (default ./benco_leaderboard; an earlier site there is replaced); "
                        "md/csv/latex: a file (default: standard output)")
    p.add_argument("--format", choices=("html", "md", "csv", "latex"), default="html",
                   help="html (a static site, default), md, csv (one line per value) or latex (booktabs)")
    p.add_argument("--metric", default="pixel_f1", help="the metric that ranks the rows (default pixel_f1)")
    p.add_argument("--include-reported", action="store_true",
                   help="rank the published (reported) rows together with the reproduced ones (pixel_f1 only); "
                        "by default they are shown apart and never ranked")
    p.add_argument("--reported", action="append", default=[], metavar="FILE",
                   help="another published table (JSON in the format of IMDLBenCo/leaderboard/published/); repeatable")
    p.add_argument("--digits", type=int, default=3, help="decimals shown (default 3)")
    p.add_argument("--title", default=None, help="page title (html)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import IMDLBenCoError, OutputWriteError
    from ..leaderboard import build_leaderboard, leaderboard_text

    if not 0 <= args.digits <= 8:
        print(f"benco leaderboard: --digits {args.digits}: expected 0 to 8.", file=sys.stderr)
        return 2
    try:
        if args.format == "html":
            index = build_leaderboard(args.run_dirs, out=args.out or "benco_leaderboard", metric=args.metric,
                                      include_reported=args.include_reported, title=args.title,
                                      reported=args.reported, digits=args.digits)
            print(f"leaderboard: {index.resolve()}")
            return 0
        text = leaderboard_text(args.run_dirs, fmt=args.format, metric=args.metric,
                                include_reported=args.include_reported, reported=args.reported, digits=args.digits)
        if args.out:
            out = Path(args.out)
            if out.is_dir():
                raise OutputWriteError(f"--out {out}: a folder; --format {args.format} writes one file.")
            tmp = out.with_name(f".{out.name}.tmp")
            try:
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(out)
            except OSError as err:
                tmp.unlink(missing_ok=True)
                raise OutputWriteError(f"--out {out}: cannot be written ({err.strerror or err}).") from None
            print(f"leaderboard: {out.resolve()}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except IMDLBenCoError as err:
        print(f"benco leaderboard: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"benco leaderboard: {err}", file=sys.stderr)
        return 2
    return 0
