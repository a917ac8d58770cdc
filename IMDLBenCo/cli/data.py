"""``benco data``: check a dataset, turn folders into a JsonDataset file, make synthetic data."""

from __future__ import annotations

import argparse
import os
import sys
import time


def add_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        help="check a dataset, write JsonDataset files, generate a synthetic tampering dataset",
        description="Dataset tools. Run `benco data COMMAND --help` for each command.",
    )
    p.set_defaults(run=lambda args: (p.print_help(), 0)[1])
    dsub = p.add_subparsers(dest="data_command", metavar="COMMAND")

    c = dsub.add_parser(
        "check",
        help="read every image/mask pair and list problems per file",
        description=(
            "Read every pair of a ManiDataset folder (Tp/ + Gt/), JsonDataset file or BalancedDataset file "
            "and list per file: missing mask, mask without image, size mismatch, unreadable or truncated file, "
            "non-binary mask, empty mask on a tampered image, duplicate stems. Exit status 1 when errors were found."
        ),
    )
    c.add_argument("path", help="ManiDataset folder, JsonDataset .json or BalancedDataset .json")
    c.add_argument("--write-clean", metavar="OUT.json", help="write a JsonDataset file of the pairs without errors")
    c.add_argument("--workers", type=int, default=None, help="reader threads (default: 2 x CPU cores, at most 16)")
    c.add_argument("--quiet", action="store_true", help="print only the summary line")
    c.set_defaults(run=run_check)

    j = dsub.add_parser(
        "json",
        help="pair an image folder with a mask folder by file stem and write a JsonDataset file",
        description="Pair IMAGE_DIR with MASK_DIR by file stem (masks may add _gt/_mask) and write a JsonDataset "
        "file; paths are written relative to the file's folder. Unpaired files are reported and left out.",
    )
    j.add_argument("image_dir")
    j.add_argument("mask_dir")
    j.add_argument("-o", "--output", required=True, metavar="OUT.json")
    j.add_argument("--authentic", metavar="DIR", help="folder of authentic images, listed with mask \"Negative\"")
    j.set_defaults(run=run_json)

    s = dsub.add_parser(
        "synth",
        help="generate a synthetic tampering dataset (copy-move, splicing, inpainting, authentic)",
        description="Write OUT/train, OUT/val, OUT/test (ManiDataset folders), OUT/{train,val,test}.json "
        "(JsonDataset files with authentic images as Negative) and OUT/test_datasets.json. "
        "Deterministic for a seed.",
    )
    s.add_argument("out")
    s.add_argument("--n", type=int, default=200, help="number of images in all (default 200)")
    s.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--photos", metavar="DIR", help="folder of photographs to cut crops from "
                   "(default: photographs shipped with installed packages)")
    s.set_defaults(run=run_synth)


def _error(message: str) -> int:
    print(f"benco data: error: {message}", file=sys.stderr)
    return 2


def run_check(args: argparse.Namespace) -> int:
    from ..datasets.check import check_dataset
    from ..datasets.utils import write_json_dataset
    from ..datasets.io import DatasetError

    start = time.perf_counter()
    try:
        report = check_dataset(args.path, workers=args.workers)
    except DatasetError as err:
        return _error(str(err))
    root = args.path if os.path.isdir(args.path) else ""
    if not args.quiet:
        for problem in report.problems:
            print(problem.line(root))
        for note in report.notes:
            print(f"note: {note}")
    print(report.summary() + f" [{time.perf_counter() - start:.1f} s]")
    if not report.pairs and not report.errors:
        return _error(f"{args.path}: the dataset is empty (no image/mask pair found); a ManiDataset folder holds "
                      "images in Tp/ and masks with the same stems in Gt/")
    if args.write_clean:
        write_json_dataset(report.good, args.write_clean)
        print(f"wrote {len(report.good)} good pairs to {args.write_clean} (JsonDataset; originals untouched)")
    return 1 if report.errors else 0


def run_json(args: argparse.Namespace) -> int:
    from ..datasets.check import pair_folders
    from ..datasets.utils import write_json_dataset
    from ..datasets.io import NEGATIVE, list_images

    for d in (args.image_dir, args.mask_dir, args.authentic):
        if d is not None and not os.path.isdir(d):
            return _error(f"{d}: not a folder")
    pairs, problems = pair_folders(args.image_dir, args.mask_dir)
    for problem in problems:
        print(problem.line())
    n_auth = 0
    if args.authentic:
        authentic = [os.path.join(args.authentic, n) for n in list_images(args.authentic)]
        pairs += [(p, NEGATIVE) for p in authentic]
        n_auth = len(authentic)
    if not pairs:
        return _error(f"no image/mask pairs found in {args.image_dir} and {args.mask_dir}")
    write_json_dataset(pairs, args.output)
    print(
        f"wrote {args.output}: {len(pairs) - n_auth} tampered pairs, {n_auth} authentic images; "
        f"{len(problems)} file(s) left out"
    )
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from ..datasets.synth import make_synthetic_dataset

    start = time.perf_counter()
    try:
        info = make_synthetic_dataset(args.out, n=args.n, size=args.size, seed=args.seed, photos=args.photos)
    except (ValueError, FileNotFoundError) as err:
        return _error(str(err))
    counts = ", ".join(f"{k}: {v}" for k, v in info.get("counts", {}).items())
    print(f"wrote {args.out} ({counts}) in {time.perf_counter() - start:.1f} s")
    return 0
