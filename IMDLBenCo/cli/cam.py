"""``benco cam --model M --checkpoint_path C --test_data_path D ...``: class-activation maps.

Every argument after ``cam`` goes to :func:`IMDLBenCo.engine.cam.cam_main` (its own options
``--import``, ``--target_layer``, ``--cam_method``, ``--cam_target``, ``--reshape_tokens`` and all
those of ``test_save_images.py``, the model's included). ``benco``'s ``main`` hands them over
through :func:`run_argv`; the sub-parser made by :func:`add_parser` (listed in ``benco --help``)
also takes them as one remainder (``prefix_chars="+"`` keeps argparse from reading ``--model`` as
an option of its own), for a ``main`` that parses first. ``-h`` / ``--help`` prints cam_main's
full help (with ``--model M``, the model's options too). A mistake in the input ends with one line
``benco cam: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

DESCRIPTION = (
    "Class-activation maps (Grad-CAM, Grad-CAM++, XGrad-CAM, Eigen-CAM, Layer-CAM, HiRes-CAM) of a model and "
    "checkpoint on a dataset or a folder of images: cam/<stem>.png (grey heat map at the original size), "
    "cam/<stem>_overlay.jpg and cam.json in --output_dir, next to the pred/ of test_save_images.py when the folder "
    "is shared; `benco report` shows them. Takes the options of test_save_images.py plus --target_layer, "
    "--cam_method, --cam_target, --reshape_tokens; `benco cam --help` lists them all. Needs the grad-cam package "
    "(pip install grad-cam)."
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cam",
        help="class-activation maps (Grad-CAM ...) of a model on a dataset, as heat maps and overlays",
        description=DESCRIPTION,
        usage="benco cam [-h] [--target_layer NAME] [--cam_method METHOD] [--cam_target {mask,label}] "
              "--model MODEL [model options] --checkpoint_path FILE --test_data_path PATH ...",
        add_help=False,
        prefix_chars="+",  # every argument, --model included, lands in cam_args
    )
    p.add_argument("cam_args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="options of cam and of test_save_images.py (see benco cam --help)")
    p.set_defaults(run=run)


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text if text else type(err).__name__


def run_argv(argv: Sequence[str]) -> int:
    """``benco cam ARGS...``: run cam_main on ``argv``; 0, or 2 with one message on a user error."""
    import logging

    argv = list(argv)
    if argv and argv[0] == "--":  # `benco cam -- --model X`: tolerated, not needed
        argv = argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..engine.errors import user_error_types

    try:
        from ..engine.cam import cam_main

        cam_main(argv, prog="benco cam")
    except user_error_types() as err:
        print(f"benco cam: {_one_line(err)}", file=sys.stderr, flush=True)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    return run_argv(args.cam_args)
