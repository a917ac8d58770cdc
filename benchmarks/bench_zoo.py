"""Model zoo cost table: parameters, FLOPs/MACs and forward time of every registered zoo model and
backbone, at its recommended input size (``recipe.json``), on the CPU (and a GPU with ``--device``).

- params: ``sum(p.numel())`` at the recipe's constructor options (pretrained paths left out).
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward (batch 1, eval mode), counted
  on the meta device (no compute) or, for a model that cannot run there, on a real CPU forward;
  MACs = FLOPs / 2 (the counter counts a multiply-add as 2; only matmul/conv-like ops are counted).
- forward ms: median of ``--repeats`` timed eval-mode forwards (batch 1, ``torch.no_grad``) after one
  warm-up, with random weights; inputs are the batch keys a model's forward takes (image, mask,
  edge_mask, label, shape).

Prints a markdown table (paste it into IMDLBenCo/model_zoo/README.md)::

    python benchmarks/bench_zoo.py                       # everything (slow on a laptop)
    python benchmarks/bench_zoo.py --models 'IML_ViT' '*resnet' --size 512 --repeats 3
    python benchmarks/bench_zoo.py --no-time             # parameters and FLOPs only (fast)
"""

from __future__ import annotations

import argparse
import fnmatch
import inspect
import json
import logging
import os
import statistics
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from IMDLBenCo.registry import MODELS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_recipes() -> Dict[str, dict]:
    """Registered name -> recipe object, from every ``recipe.json`` in the zoo and the backbones."""
    recipes: Dict[str, dict] = {}
    paths = [os.path.join(ROOT, "IMDLBenCo", "modules", "backbones", "recipe.json")]
    zoo = os.path.join(ROOT, "IMDLBenCo", "model_zoo")
    paths += [os.path.join(zoo, d, "recipe.json") for d in sorted(os.listdir(zoo))]
    for path in paths:
        if not os.path.isfile(path):
            continue
        with open(path) as fh:
            data = json.load(fh)
        for rec in data if isinstance(data, list) else [data]:
            recipes[rec["model"]] = rec
    return recipes


def recipe_for(name: str, recipes: Dict[str, dict]) -> Optional[dict]:
    """A backbone variant (``srm_vit``) uses its family's recipe (``vit``)."""
    if name in recipes:
        return recipes[name]
    family = name.split("_", 1)[-1]
    return recipes.get(family)


def build_kwargs(factory, recipe: Optional[dict]) -> dict:
    """Constructor options of the recipe that the factory accepts, without weight files."""
    if not recipe:
        return {}
    params = inspect.signature(factory).parameters
    out = {}
    for k, v in recipe.get("train", {}).items():
        if k in params and not (isinstance(v, str) and v.startswith("/path/to/")):
            out[k] = v
    return out


def make_batch(factory_or_model, size: int, device) -> dict:
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 1, size, size, generator=gen) > 0.5).float()
    batch = {
        "image": torch.randn(1, 3, size, size, generator=gen),
        "mask": mask,
        "edge_mask": torch.zeros_like(mask),
        "label": torch.ones(1, dtype=torch.long),
        "shape": torch.tensor([[size, size]]),
        "shape_mask": torch.ones_like(mask),
        # what Cat_Net's post-function adds (JPEG DCT coefficients and quantisation table);
        # every other model ignores the extra keys
        "DCT_coef": torch.randint(-30, 31, (1, size, size), generator=gen).float(),
        "qtables": torch.ones(1, 8, 8),
    }
    return {k: v.to(device) for k, v in batch.items()}


def measure(name: str, size: Optional[int], recipes: Dict[str, dict], repeats: int, timed: bool,
            device: str) -> dict:
    factory = MODELS.get(name)
    recipe = recipe_for(name, recipes)
    kwargs = build_kwargs(factory, recipe)
    s = size or (recipe or {}).get("train", {}).get("image_size") or 512
    if "input_size" in kwargs and size:
        kwargs["input_size"] = size  # IML_ViT / PSCC_Net tables follow the benchmarked size
    row = {"model": name, "size": s}
    counter = FlopCounterMode(display=False)
    model = None
    try:
        with torch.device("meta"):
            model = factory(**kwargs).eval()
        with torch.no_grad(), counter:
            model(**make_batch(None, s, "meta"))
        row["params"] = sum(p.numel() for p in model.parameters())
        row["flops"] = counter.get_total_flops()
        model = None
    except Exception:  # a model that cannot run on the meta device: count on a real forward below
        model = None
    if "flops" not in row or timed:
        torch.manual_seed(0)
        model = factory(**kwargs).eval().to(device)
        row["params"] = sum(p.numel() for p in model.parameters())
        batch = make_batch(None, s, device)
        if "flops" not in row:
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                model(**batch)
            row["flops"] = counter.get_total_flops()
    row["macs"] = row["flops"] / 2
    if timed:
        times = []
        with torch.no_grad():
            for i in range(repeats + 1):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(**batch)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if i:  # the first call is a warm-up
                    times.append((time.perf_counter() - t0) * 1000)
        row["ms"] = statistics.median(times)
    del model
    return row


def fmt_table(rows: List[dict], device: str) -> str:
    head = f"| model | input | params (M) | GFLOPs | GMACs | forward ms ({device}, batch 1) |\n|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        ms = f"{r['ms']:.0f}" if "ms" in r else "—"
        lines.append(f"| {r['model']} | {r['size']} | {r['params'] / 1e6:.2f} | {r['flops'] / 1e9:.1f} | "
                     f"{r['macs'] / 1e9:.1f} | {ms} |")
    return head + "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["*"], help="registered names or shell patterns")
    ap.add_argument("--size", type=int, default=None, help="input side (default: the recipe's --image_size)")
    ap.add_argument("--repeats", type=int, default=3, help="timed forwards per model (median reported)")
    ap.add_argument("--no-time", action="store_true", help="parameters and FLOPs only")
    ap.add_argument("--device", default="cpu", help="device of the timed forward (cpu, cuda)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the CPU timing")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in MODELS.list() if any(fnmatch.fnmatchcase(n, p) for p in args.models)]
    # only zoo models and backbones (user models registered elsewhere are skipped)
    names = [n for n in names if inspect.getmodule(MODELS.get(n)).__name__.startswith("IMDLBenCo.")]
    recipes = load_recipes()
    rows = []
    for name in names:
        try:
            row = measure(name, args.size, recipes, args.repeats, not args.no_time, args.device)
        except Exception as err:  # one broken model must not hide the others' numbers
            print(f"{name}: failed: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr, flush=True)
    dev = args.device if args.device != "cpu" else f"CPU, {torch.get_num_threads()} threads"
    print(fmt_table(rows, dev))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
