"""``benco data pack``: a dataset into WebDataset tar shards of decoded pixels (fast, streamable)."""

from __future__ import annotations

import argparse
import sys


def add_parser(dsub) -> None:
    """Add ``pack`` to the ``benco data`` sub-commands."""
    pk = dsub.add_parser(
        "pack",
        help="write a dataset into WebDataset tar shards of decoded pixels (no image decoding when training; "
        "local disk or object storage)",
        description="Write DATASET (ManiDataset folder, JsonDataset or BalancedDataset file) into OUT/shard-*.tar "
        "(WebDataset layout) with decoded uint8 pixels, and OUT/shards.json, the index, written last. Training and "
        "testing read OUT (--data_path OUT, or a URL to it) and get the same items as from the files, without "
        "decoding images. The index records the source's content hash. An interrupted pack continues when the "
        "same command runs again. A BalancedDataset's members go to OUT/NN_<name>/ and OUT/balanced_dataset.json "
        "names them.",
    )
    pk.add_argument("dataset", metavar="DATASET", help="ManiDataset folder, JsonDataset .json or BalancedDataset .json")
    pk.add_argument("--out", required=True, metavar="SHARDS", help="output folder (new, empty, or an unfinished pack)")
    pk.add_argument("--max_side", "--max-side", type=int, metavar="N",
                    help="shrink images whose longer side exceeds N (image bicubic, mask by area > 0.5); the shards "
                    "are then a dataset of their own (another content hash)")
    pk.add_argument("--keep_original_bytes", "--keep-original-bytes", action="store_true",
                    help="also store each original image file (CAT-Net's post-function reads the JPEG's DCT "
                    "coefficients from it)")
    pk.add_argument("--codec", choices=("lz4", "zstd", "none"), default="lz4",
                    help="lossless compression of the pixels: lz4 (default; fastest to read), zstd (about 10%% smaller, "
                    "4x slower to decode), none")
    pk.add_argument("--level", type=int, default=3, help="zstd level, 1-22 (default 3)")
    pk.add_argument("--shard_size_mb", "--shard-size-mb", type=float, default=256.0, metavar="MB",
                    help="start a new shard after about this many MB (default 256)")
    pk.add_argument("--samples_per_shard", "--samples-per-shard", type=int, metavar="N",
                    help="at most N samples per shard (default: by size only)")
    pk.add_argument("--include_authentic", "--include-authentic", action="store_true",
                    help="ManiDataset folders: also pack Au/ (authentic images, as Negative samples)")
    pk.add_argument("--workers", type=int, default=None, help="decoding processes (default: up to 4)")
    pk.add_argument("--force", action="store_true", help="replace a complete or different pack in --out")
    pk.set_defaults(run=run)


def _error(message: str, status: int) -> int:
    print(f"benco data pack: error: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    from ..datasets.shards.pack import PackOptions, pack_dataset
    from ..errors import DatasetError, IMDLBenCoError, UsageError

    if args.workers is not None and args.workers < 0:
        return _error(f"--workers {args.workers}: expected 0 (no extra process) or more", 2)
    options = PackOptions(max_side=args.max_side, keep_original_bytes=args.keep_original_bytes, codec=args.codec,
                          level=args.level, shard_size_mb=args.shard_size_mb, samples_per_shard=args.samples_per_shard,
                          include_authentic=args.include_authentic, workers=args.workers, force=args.force)
    try:
        result = pack_dataset(args.dataset, args.out, options, progress=lambda line: print(line, flush=True))
    except UsageError as err:
        return _error(str(err), 2)
    except (DatasetError, IMDLBenCoError) as err:
        return _error(f"{err}\nNothing packed so far is lost: run the same command again to continue.", 1)
    except OSError as err:  # disk full, permissions
        return _error(f"{err.filename or args.out}: {err.strerror or err}. Nothing packed so far is lost: run the "
                      f"same command again to continue.", 1)
    except KeyboardInterrupt:
        print(f"\nbenco data pack: interrupted; run the same command again to continue the pack in {args.out}.",
              file=sys.stderr)
        return 130
    parts = result.members or [result]
    for part in parts:
        per_image = part.shard_bytes / max(part.samples, 1)
        ratio = part.shard_bytes / part.source_bytes if part.source_bytes else float("nan")
        resumed = f", {part.resumed_samples} of them from the earlier run" if part.resumed_samples else ""
        print(f"{part.out}: {part.samples} samples in {part.shards} shards{resumed}; {part.shard_bytes / 2**20:.1f} MB, "
              f"{per_image / 2**10:.0f} KB per image = {ratio:.2f}x the source files; {part.content_hash}")
    print(f"done in {result.seconds:.1f} s; train or test with --data_path {result.data_path}")
    return 0
