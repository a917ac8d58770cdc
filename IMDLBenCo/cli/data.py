"""``benco data``: check a dataset, turn folders into a JsonDataset file, make synthetic data, prepare
public datasets from their downloaded archives, write protocol lists, print the dataset index."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _int_at_least(least: int, words: str):
    """An argparse type: a whole number of at least ``least`` (one usage message otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number ({words})") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {words}, at least {least}")
        return value

    return parse


def _size(text: str) -> int:
    """An argparse type: a size in bytes, with an optional K/M/G/T suffix (binary units)."""
    from ..datasets.prepare.archive import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


_THREADS = _int_at_least(1, "a number of threads")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        help="check, prepare and index datasets; JsonDataset files, protocol lists, synthetic data",
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
    c.add_argument("--workers", type=_THREADS, default=None, help="reader threads (default: 2 x CPU cores, at most 16)")
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
    s.add_argument("--n", type=_int_at_least(1, "a number of images"), default=200,
                   help="number of images in all (default 200)")
    s.add_argument("--size", type=_int_at_least(1, "a side in pixels"), default=128,
                   help="image side in pixels (default 128)")
    from ..runoptions import add_to

    add_to(s, "seed", default=0, help="random seed (default 0)")
    s.add_argument("--photos", metavar="DIR", help="folder of photographs to cut crops from "
                   "(default: photographs shipped with installed packages)")
    s.set_defaults(run=run_synth)

    pr = dsub.add_parser(
        "prepare",
        help="turn a downloaded public dataset (CASIA v1/v2, Columbia, COVERAGE, NIST16, IMD2020, Korus; AI edits: "
        "CocoGlide, AutoSplice, OpenSDID, TGIF, MagicBrush) into a checked ManiDataset folder",
        description="Find the files of dataset NAME in SOURCE (the archives or folders you downloaded; .zip and .tar* "
        "are extracted, .rar must be extracted first), apply the documented corrections and write OUT/Tp, OUT/Gt "
        "(0/255 PNG masks), OUT/Au, manifest.csv (source and sha256 of every file) and prepare_summary.json; then "
        "`benco data check` OUT. Without arguments: the datasets and the input each expects.",
    )
    pr.add_argument("name", nargs="?", help="dataset: casia1, casia2, columbia, coverage, nist16, imd2020, korus, "
                    "cocoglide, autosplice, opensdid, tgif, magicbrush")
    pr.add_argument("sources", nargs="*", metavar="SOURCE", help="downloaded archives or folders")
    pr.add_argument("--out", metavar="DIR", help="output folder (new, or a previous output with --force)")
    pr.add_argument("--force", action="store_true", help="replace a previous `benco data prepare` output in DIR")
    pr.add_argument("--long-side", type=_int_at_least(16, "a side in pixels"), metavar="N",
                    help="resize pairs whose longer side exceeds N (the "
                    "documentation advises 1024 for NIST16 and IMD2020); resized images are saved as PNG")
    pr.add_argument("--mismatch", choices=("repair", "set-aside"), help="coverage: the 9 pairs whose mask size differs "
                    "from the image: align the mask with the changed pixels (repair, default) or keep them apart")
    pr.add_argument("--columbia-tampered", choices=("green", "red"),
                    help="columbia: colour of the spliced region in the edge masks (default green)")
    pr.add_argument("--korus-collateral", choices=("tampered", "authentic"),
                    help="korus: grey 'collateral damage' pixels count as tampered (default) or authentic")
    pr.add_argument("--nist-polarity", choices=("nist", "inverted"), help="nist16: masks are NIST's black = "
                    "manipulated (default) or already inverted (white = manipulated)")
    pr.add_argument("--autosplice-quality", choices=("100", "90", "75"),
                    help="autosplice: which JPEG version of the forged images (Forged_JPEG<Q>; default 100)")
    pr.add_argument("--opensdid-entire", choices=("full-mask", "leave-out"), help="opensdid: fully generated images "
                    "get an all-white mask (full-mask, default) or are left out (localization only)")
    pr.add_argument("--workers", type=_THREADS, default=None, help="threads (default: up to 4)")
    pr.add_argument("--max-extract-bytes", "--max_extract_bytes", dest="max_extract_bytes", type=_size, metavar="SIZE",
                    default=None, help="most bytes one run may extract from the archives, uncompressed, e.g. 100G "
                    "(default 64G); archives declaring more, members growing more than 200 times when decompressed "
                    "and members that write more than their header declares are refused")
    pr.set_defaults(run=run_prepare)

    po = dsub.add_parser(
        "protocol",
        help="write a protocol's training list and test_datasets.json for the prepared folders",
        description="Protocols over the folders `benco data prepare` wrote under --root: cat (Protocol-CAT: "
        "balanced_dataset.json in IMDL-BenCo's order; --with-authentic adds CAT-Net's authentic lists), mvss "
        "(train on CASIA v2, test on CASIA v1, Columbia, COVERAGE, NIST16, IMD2020) and casia (train CASIA v2, "
        "test CASIA v1). Prints each entry with its number of images.",
    )
    po.add_argument("protocol", choices=("cat", "mvss", "casia"))
    po.add_argument("--root", required=True, metavar="DIR", help="folder holding the prepared datasets")
    po.add_argument("--out", metavar="DIR", help="where to write the JSON files (default: --root)")
    po.add_argument("--with-authentic", action="store_true",
                    help="cat: add CAT-Net's authentic lists as entries; mvss/casia: add CASIA v2's authentic images")
    po.add_argument("--absolute", action="store_true", help="write absolute paths (default: relative to the JSON file)")
    po.set_defaults(run=run_protocol)

    ix = dsub.add_parser(
        "index",
        help="the dataset index of IMDL-BenCo's documentation: sizes, resolutions, errata, downloads",
        description="Print the Tampering Detection Dataset Index as a table (NAME: one dataset in full, with its "
        "errata and download links).",
    )
    ix.add_argument("name", nargs="?", help="one dataset, e.g. casia2 or 'CASIA v2.0'")
    ix.add_argument("--aigc", action="store_true", help="the AIGC-generated content index")
    ix.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    ix.set_defaults(run=run_index)

    from .data_pack import add_parser as add_pack_parser  # stdlib-only module: `benco --help` stays fast

    add_pack_parser(dsub)


def _error(message: str) -> int:
    print(f"benco data: error: {message}", file=sys.stderr)
    return 2


def run_check(args: argparse.Namespace) -> int:
    from ..datasets.check import check_dataset
    from ..datasets.io import DatasetError
    from ..datasets.utils import write_json_dataset

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
    from ..datasets.io import NEGATIVE, list_images
    from ..datasets.utils import write_json_dataset

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


def _print_datasets() -> int:
    from ..datasets.prepare import PREPARERS

    print("benco data prepare NAME SOURCE... --out DIR; NAME and the input it expects:\n")
    for spec in PREPARERS.values():
        aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"{spec.name}: {spec.title}{aliases}\n{spec.layout}\n  corrections:")
        for item in spec.errata:
            print(f"    - {item}")
        if spec.unverified:
            print("  assumed (not verified on a copy of the download):")
            for item in spec.unverified:
                print(f"    - {item}")
        print()
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from ..datasets.prepare import PrepareOptions, format_summary, get_spec, prepare_dataset
    from ..errors import IMDLBenCoError

    if not args.name:
        return _print_datasets()
    try:
        spec = get_spec(args.name)
        if not args.sources:
            return _error(f"no SOURCE given. Expected input for `benco data prepare {spec.name}`:\n{spec.layout}")
        if not args.out:
            return _error(f"--out DIR is required: the folder to write the prepared {spec.title} to "
                          f"(e.g. --out data/{spec.default_dir})")
        options = PrepareOptions(
            long_side=args.long_side, mismatch=args.mismatch, columbia_tampered=args.columbia_tampered,
            korus_collateral=args.korus_collateral, nist_polarity=args.nist_polarity, force=args.force,
            autosplice_quality=args.autosplice_quality, opensdid_entire=args.opensdid_entire,
            workers=args.workers, max_extract_bytes=args.max_extract_bytes,
        )
        start = time.perf_counter()
        result = prepare_dataset(spec.name, args.sources, args.out, options)
    except IMDLBenCoError as err:
        return _error(str(err))
    except OSError as err:  # disk full, permissions: name the file, no traceback
        return _error(f"{err.filename or args.out}: {err.strerror or err}")
    except KeyboardInterrupt:  # prepare_dataset has removed what it wrote
        out = os.path.abspath(args.out or ".")
        left = (f"the partial output was removed from {out} (the folder existed before, so it was kept)"
                if os.path.isdir(out) else f"nothing was left in {out}")
        print(f"benco data prepare: interrupted; {left}", file=sys.stderr)
        return 130
    print(format_summary(result))
    print(f"[{time.perf_counter() - start:.1f} s]")
    if not result.written.get("pairs"):
        return _error(f"no usable pair was found for {result.title}; see the left-out files above.")
    if result.errors:
        print(f"benco data prepare: {len(result.errors)} source file(s) could not be used (broken, or refused because "
              f"they lie outside the source); they are listed under 'errors' above and in prepare_summary.json.",
              file=sys.stderr)
        return 1
    if result.check.errors:
        print(f"benco data prepare: {len(result.check.errors)} error(s) remain in {result.out}; see above.",
              file=sys.stderr)
        return 1
    return 0


def run_protocol(args: argparse.Namespace) -> int:
    from ..datasets.prepare import write_protocol
    from ..errors import IMDLBenCoError

    try:
        info = write_protocol(args.protocol, args.root, out=args.out, with_authentic=args.with_authentic,
                              absolute=args.absolute)
    except IMDLBenCoError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"{err.filename or args.root}: {err.strerror or err}")
    if info["train"]:
        print(f"training ({args.protocol}):")
        for label, cls, path, count in info["train"]:
            print(f"  {label:28s} {cls:12s} {count:>8,} images  {path}")
        if args.protocol == "cat":
            n = len(info["train"])
            print(f"  BalancedDataset draws sample_number images per entry and epoch (default 1840; IMDL-BenCo's "
                  f"docs say 1800, CAT-Net drew 1869 = its smallest set): {n} x 1840 = {n * 1840:,} per epoch")
    if info["test"]:
        print("test sets:")
        for name, count in info["test"].items():
            print(f"  {name:28s} {count:>8,} pairs")
    for item in info["missing"]:
        print(f"  missing: {item}")
    for path in info["files"]:
        print(f"wrote {path}")
    return 0


def run_index(args: argparse.Namespace) -> int:
    from ..datasets import index

    if args.json:
        if args.name:
            row = index.find_entry(args.name, aigc=args.aigc)
            if row is None:
                return _error(f"{args.name!r} is not in the index; `benco data index` lists the names")
            print(json.dumps(row, indent=1, ensure_ascii=False))
        else:
            print(index.index_json(aigc=args.aigc))
        return 0
    if args.name:
        row = index.find_entry(args.name, aigc=args.aigc)
        if row is None:
            return _error(f"{args.name!r} is not in the index; `benco data index` lists the names")
        print(index.format_entry(row))
        return 0
    if args.aigc:
        print(index.AIGC_NOTE + "\n")
    rows = index.AIGC_INDEX if args.aigc else index.DATASET_INDEX
    print(index.format_table(rows))
    print("\n`benco data index NAME` shows a dataset's errata and download links; --json for scripts.")
    return 0
