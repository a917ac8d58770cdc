"""``benco predict``: masks, overlays and scores for image files or folders (IMDLBenCo.engine.predict)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def add_parser(sub) -> None:
    # listed in `benco --help`; the arguments are parsed by run_argv (model options pass through)
    sub.add_parser("predict", add_help=False,
                   help="predict masks (PNG, original size), overlays and scores.json for image files or folders "
                        "from a model and checkpoint; no dataset or ground truth needed (benco predict -h)")


def run_argv(argv: Sequence[str]) -> int:
    import logging

    from ..engine.errors import user_error_types
    from ..engine.predict import predict_main

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        predict_main(list(argv))
    except user_error_types() as err:
        print(f"benco predict: {err}", file=sys.stderr)
        return 2
    return 0
