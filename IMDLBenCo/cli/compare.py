"""``benco compare RUN_A RUN_B [--metric pixel_f1]``: a paired bootstrap of two test runs (IMDLBenCo.compare)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="is run B better than run A? a paired bootstrap over the images both tested (difference, 95 %% "
             "interval, p-value per test set)",
        description=(
            "Pair the records of two run folders (results.json + per_image.csv, written by test.py, test_robust.py, "
            "train.py with validation and benco bench) by test set, which must hold the same data (equal content "
            "hash), and their images by name; resample the images with replacement and compute the metric for both "
            "runs on the same draws. Prints B - A with its percentile interval and a two-sided p-value per set."
        ),
    )
    p.add_argument("run_a", metavar="RUN_A", help="run folder (or its results.json): the reference")
    p.add_argument("run_b", metavar="RUN_B", help="run folder (or its results.json): the challenger")
    p.add_argument("--metric", default="pixel_f1",
                   help="pixel_f1 (default), pixel_iou, pixel_auc, pixel_ap, pixel_f1_pooled, pixel_iou_pooled, "
                        "image_auc, image_ap, image_f1, image_accuracy")
    from ..runoptions import add_to

    add_to(p, "bootstrap", default=1000, help="resamples (default 1000)")
    add_to(p, "seed", default=0, help="seed of the resampling (default 0)")
    p.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..compare import compare_runs, format_comparison, write_json
    from ..errors import IMDLBenCoError

    try:
        result = compare_runs(args.run_a, args.run_b, args.metric, args.bootstrap, args.seed)
    except IMDLBenCoError as err:
        print(f"benco compare: {err}", file=sys.stderr)
        return 2
    print(format_comparison(result))
    if args.json:
        write_json(args.json, result)
        print(f"written: {args.json}")
    return 0
