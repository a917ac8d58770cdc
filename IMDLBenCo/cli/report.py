"""``benco report RUN_DIR [RUN_DIR ...] [-o OUT]``: a static HTML report from run folders."""

from __future__ import annotations

import argparse
import logging
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML report (tables, curves, predicted masks) from run folders",
        description=(
            "Write a static HTML report from the --output_dir folders of train, test, test_robust, "
            "test_save_images and test_complexity runs: configuration and environment, metric tables "
            "with their definitions, training and metric curves, robustness curves, a gallery of "
            "predictions (worst and best by pixel F1) and model complexity. Several training runs get a "
            "side-by-side table. The report opens from file:// with no network."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (a script's --output_dir)")
    p.add_argument("-o", "--out", default=None,
                   help="an .html file (pictures go to <name>_files/) or a folder (index.html + assets/); "
                        "default: report/ inside a single RUN_DIR, ./benco_report for several")
    p.add_argument("-n", "--samples", type=int, default=12, help="predictions shown in the gallery (default 12)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold for predicted masks (default 0.5)")
    p.add_argument("--title", default=None, help="page title")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report import RunFolderError, build_report

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = build_report(args.run_dirs, out=args.out, n_samples=args.samples, threshold=args.threshold, title=args.title)
    except RunFolderError as err:
        print(f"benco report: {err}", file=sys.stderr)
        return 2
    print(f"report: {path.resolve()}")
    return 0
