"""``benco predict`` on images of mixed sizes: one call over all of them vs separate calls.

Issue 26 reported that small and large images predicted in one call took 10 times as long as the
same images in two calls. This benchmark times, in the same process and on the same images:

- separate: one ``benco predict`` call on the small/mixed set (default: the sizes of
  ``../shared/datasets/MISC_samples``: 256×384, 387×470, 1080×1920, 2616×3488) and one on the large
  set (four 768×1024 images);
- mixed: one call on both sets;

each with the sliding window's tiles batched (``IMDLBenCo.engine.sliding``, the default) and one
tile per model call (how it ran before), with a ``DemoNet`` checkpoint (64-px window, random
weights: the time does not depend on them). It prints wall and CPU seconds, the tile count, the
ratio mixed / (sum of separate) and the ratio one-tile-per-call / batched, plus the machine's
load average and PyTorch's thread count, which decide most of the result: on a CPU shared with
other processes, PyTorch's OpenMP threads spin while they wait for each other (see
``IMDLBenCo.engine.runtime.resource_notes``); ``OMP_WAIT_POLICY=PASSIVE`` or ``--threads 1`` avoids it.

    python benchmarks/bench_predict.py [--quick] [--threads N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from IMDLBenCo.datasets.synth import default_photos  # noqa: E402
from IMDLBenCo.engine import sliding  # noqa: E402
from IMDLBenCo.engine.predict import predict_main  # noqa: E402

WINDOW = 64
MIXED_SIZES = [(256, 384), (387, 470), (1080, 1920), (2616, 3488)]  # (H, W) of the MISC samples
LARGE_SIZES = [(768, 1024)] * 4


def make_images(folder: Path, sizes: list[tuple[int, int]], seed: int) -> None:
    """JPEGs of the given sizes cut from the photographs packaged with the installed libraries."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in default_photos()]
    for i, (h, w) in enumerate(sizes):
        if photos:
            picture = photos[i % len(photos)].resize((w, h), Image.BICUBIC)
            pixels = np.asarray(picture).astype(np.int16) + rng.integers(-3, 4, (h, w, 3))
        else:
            pixels = rng.integers(0, 256, (h, w, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"img{i}_{h}x{w}.jpg", quality=92)


def make_checkpoint(path: Path) -> None:
    from IMDLBenCo.demo.model import DemoNet

    torch.manual_seed(0)
    model = DemoNet(width=12)
    torch.save({"model": model.state_dict(), "args": {"model": "DemoNet", "image_size": WINDOW,
                                                      "if_predict_label": True},
                "model_kwargs": {"width": 12}}, path)


def predict(inputs: list[Path], checkpoint: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one ``benco predict`` call (in this process)."""
    argv = [*map(str, inputs), "--import", "IMDLBenCo.demo.model", "--checkpoint_path", str(checkpoint),
            "--output_dir", str(out), "--num_workers", "0", "--device", "cpu"]
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        predict_main(argv)
    return time.perf_counter() - start, time.process_time() - cpu


#: (label, tiles per call: None = the default budget, OMP_WAIT_POLICY or None)
CONFIGS = [("one tile per call", 1, None), ("batched tiles", None, None), ("batched, OMP passive", None, "PASSIVE")]


def child(root: Path, tiles_per_call: int, repeats: int, quick: bool) -> dict[str, tuple[float, float]]:
    """The three timings of one configuration (run in a fresh process: OpenMP reads its
    environment when PyTorch loads)."""
    if tiles_per_call:
        sliding.PIXELS_PER_CALL = tiles_per_call * WINDOW * WINDOW
    runs = {"mixed": [root / "mixed"], "large": [root / "large"], "both": [root / "mixed", root / "large"]}
    first = sorted((root / "mixed").iterdir())[0]
    predict([first], root / "demo.pth", root / "out" / f"{os.getpid()}-warm-up")  # lazy imports, first allocations
    out: dict[str, tuple[float, float]] = {}
    for name, inputs in runs.items():
        out[name] = min(predict(inputs, root / "demo.pth", root / "out" / f"{os.getpid()}-{name}")
                        for _ in range(max(1, repeats)))
    return out


def main() -> None:
    import json
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="leave the 2616x3488 image out (about 4x faster)")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--repeats", type=int, default=1, help="repeat every timing and keep the fastest")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "TILES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("IMDLBenCo").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), int(args.child[1]), args.repeats, args.quick)))
        return
    mixed_sizes = MIXED_SIZES[:3] if args.quick else MIXED_SIZES
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_images(root / "mixed", mixed_sizes, seed=0)
        make_images(root / "large", LARGE_SIZES, seed=1)
        make_checkpoint(root / "demo.pth")
        tiles = {name: sliding.count_tiles(sizes, WINDOW, 0.25)
                 for name, sizes in (("mixed", mixed_sizes), ("large", LARGE_SIZES))}
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s), "
              f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
        print(f"images: {len(mixed_sizes)} of mixed sizes ({tiles['mixed']} tiles of {WINDOW} px), "
              f"{len(LARGE_SIZES)} of 768x1024 ({tiles['large']} tiles); default batch: "
              f"{sliding.default_tiles_per_call(WINDOW)} tiles per call\n")
        print(f"{'':24}{'mixed sizes alone':>20}{'768x1024 alone':>20}{'both in one call':>20}{'both / sum':>12}")
        both = {}
        for label, tiles_per_call, policy in CONFIGS:
            env = dict(os.environ)
            env.pop("OMP_WAIT_POLICY", None)
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            cmd = [sys.executable, os.path.abspath(__file__), "--child", str(root), str(tiles_per_call or 0),
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{label}: failed\n{proc.stderr[-2000:]}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            cells = "".join(f"{f'{w:.1f} s (CPU {c:.1f})':>20}" for w, c in row.values())
            print(f"{label:24}{cells}{row['both'][0] / (row['mixed'][0] + row['large'][0]):>12.2f}", flush=True)
            both[label] = row["both"][0]
        if len(both) == len(CONFIGS):
            first, second = CONFIGS[0][0], CONFIGS[1][0]
            print(f"\n{first} / {second} (both in one call): {both[first] / both[second]:.2f}x")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
