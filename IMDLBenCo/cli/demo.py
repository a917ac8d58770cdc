"""``benco demo [--out DIR] [--quick] [--seed K]``: the whole pipeline on generated data."""

from __future__ import annotations

import argparse
import logging
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline (data, train, test, robustness, save, report) on generated data",
        description=(
            "Generate a synthetic tampering dataset (train/val/test, manipulated and authentic), train a "
            "small model (DemoNet) through the same engine and options train.py uses, test it against an "
            "untrained copy, run a robustness grid (blur, noise, JPEG), save predicted masks and labels, "
            "count its FLOPs and write an HTML report. CPU only; about 1.5 minutes on an idle 2-core CPU (--quick: about half a minute)."
        ),
    )
    p.add_argument("--out", default="benco_demo", help="output folder (default ./benco_demo)")
    p.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (under a minute)")
    from ..runoptions import add_to

    add_to(p, "seed", default=42, help="random seed; the same seed gives the same metrics")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch CPU threads (default 1: fastest on a busy 2-core machine; raise it on an idle many-core one)")
    add_to(p, "device", default="cpu",
           help="cpu (default: the same numbers on every machine), auto (a GPU when present), cuda, cuda:N, mps")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.pipeline import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run_demo(args.out, quick=args.quick, seed=args.seed, threads=args.threads, device=args.device)
    trained, untrained = result["trained"], result["untrained"]
    keys = [k for k in ("pixel_f1", "pixel_auc", "pixel_iou", "image_f1", "image_auc", "image_accuracy") if k in trained]
    print()
    print(f"benco demo finished in {result['seconds']:.0f} s (seed {args.seed}{', quick' if args.quick else ''})")
    print("held-out synthetic test split   " + "  ".join(f"{k:>14}" for k in keys))
    print("  DemoNet, trained              " + "  ".join(f"{trained[k]:>14.4f}" for k in keys))
    print("  DemoNet, untrained            " + "  ".join(f"{untrained.get(k, float('nan')):>14.4f}" for k in keys))
    print(f"pixel F1: trained {result['trained_pixel_f1']:.4f} vs untrained {result['untrained_pixel_f1']:.4f}")
    if result.get("note"):  # what this model is (IMDLBenCo.demo.notes); the report explains its robustness grid
        import textwrap

        print(textwrap.fill(f"note: {result['note']}.", width=100, subsequent_indent="      "))
    print(f"report: {result['report']}")
    sys.stdout.flush()
    return 0
