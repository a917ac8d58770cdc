"""Model zoo cost table: parameters, FLOPs/MACs, forward (and training-step) time of every registered
zoo model and backbone, at its recommended input size (``recipe.json``), on the CPU (and a GPU with
``--device``).

- params: ``sum(p.numel())`` at the recipe's constructor options (pretrained paths left out);
  trainable: the same over the parameters with ``requires_grad`` (DINOv3_IML trains its LoRA only).
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward (batch 1, eval mode), counted
  on the meta device (no compute) or, for a model that cannot run there, on a real CPU forward;
  MACs = FLOPs / 2 (the counter counts a multiply-add as 2; only matmul/conv-like ops are counted).
- forward ms: median of ``--repeats`` timed eval-mode forwards (batch 1, ``torch.no_grad``) after one
  warm-up, with random weights; inputs are the batch keys a model's forward takes (image, mask,
  edge_mask, label, shape). forward img/s = 1000 / forward ms.
- ``--train``: also a training step (train mode, forward + ``backward_loss.backward()`` + AdamW step
  over the trainable parameters), batch = the recipe's ``batch_size`` (or ``--batch``); median of
  ``--repeats`` after one warm-up step; train img/s = batch / step time.
- ``--device cuda``: peak GPU memory (``torch.cuda.max_memory_allocated``, MB: weights, optimizer
  state and activations) of the forward and of the training step; timings synchronise the device.
- variants: ``--channels-last`` (model and 4-D inputs in ``torch.channels_last``), ``--compile``
  (``torch.compile`` of the model; a model that fails to compile is timed eager, with a note),
  ``--amp float16|bfloat16`` (autocast; float16 training uses a ``GradScaler``, as the engine does).

Prints a markdown table (paste it into IMDLBenCo/model_zoo/README.md)::

    python benchmarks/bench_zoo.py                       # everything (slow on a laptop)
    python benchmarks/bench_zoo.py --models 'IML_ViT' '*resnet' --size 512 --repeats 3
    python benchmarks/bench_zoo.py --no-time             # parameters and FLOPs only (fast)
    python benchmarks/bench_zoo.py --device cuda --train --amp bfloat16 --models PSCC_Net Mesorch
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import gc
import inspect
import json
import logging
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from IMDLBenCo.registry import MODELS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_recipes() -> dict[str, dict]:
    """Registered name -> recipe object, from every ``recipe.json`` in the zoo and the backbones."""
    recipes: dict[str, dict] = {}
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


def recipe_for(name: str, recipes: dict[str, dict]) -> dict | None:
    """A backbone variant (``srm_vit``) uses its family's recipe (``vit``)."""
    if name in recipes:
        return recipes[name]
    family = name.split("_", 1)[-1]
    return recipes.get(family)


def build_kwargs(factory, recipe: dict | None) -> dict:
    """Constructor options of the recipe that the factory accepts, without weight files."""
    if not recipe:
        return {}
    params = inspect.signature(factory).parameters
    out = {}
    for k, v in recipe.get("train", {}).items():
        if k in params and not (isinstance(v, str) and v.startswith("/path/to/")):
            out[k] = v
    return out


def make_batch(factory_or_model, size: int, device, batch: int = 1) -> dict:
    """``batch`` random samples of ``size``×``size`` (the keys every zoo model's forward may take)."""
    gen = torch.Generator().manual_seed(0)
    b = int(batch)
    mask = (torch.rand(b, 1, size, size, generator=gen) > 0.5).float()
    out = {
        "image": torch.randn(b, 3, size, size, generator=gen),
        "mask": mask,
        "edge_mask": torch.zeros_like(mask),
        "label": torch.ones(b, dtype=torch.long),
        "shape": torch.tensor([[size, size]] * b),
        "shape_mask": torch.ones_like(mask),
        # what Cat_Net's post-function adds (JPEG DCT coefficients and quantisation table);
        # every other model ignores the extra keys
        "DCT_coef": torch.randint(-30, 31, (b, size, size), generator=gen).float(),
        "qtables": torch.ones(b, 8, 8),
    }
    return {k: v.to(device) for k, v in out.items()}


def _channels_last(batch: dict) -> dict:
    return {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 and v.is_floating_point() else v
            for k, v in batch.items()}


class _Device:
    """Synchronisation, peak-memory and autocast helpers of one device (no-ops where not CUDA)."""

    def __init__(self, device: str, amp: str) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.amp = None if amp in (None, "", "none") else getattr(torch, amp)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float | None:
        if not self.cuda:
            return None
        self.sync()
        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def _timed(fn, repeats: int, dev: _Device) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after one untimed warm-up call."""
    times = []
    for i in range(repeats + 1):
        dev.sync()
        t0 = time.perf_counter()
        fn()
        dev.sync()
        if i:  # the first call is a warm-up
            times.append((time.perf_counter() - t0) * 1000)
    return times


def _prepare(model: torch.nn.Module, channels_last: bool, compile_model: bool, notes: list[str]):
    """The model as it is timed: channels_last memory format and/or torch.compile'd."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        try:
            return torch.compile(model)
        except Exception as err:  # compile is refused at once on some setups (e.g. Python without support)
            notes.append(f"torch.compile refused ({type(err).__name__}: {str(err).splitlines()[0][:120]}); eager")
    return model


def _first_call(fn, eager_fn, notes: list[str], what: str):
    """Run ``fn`` once (compilation happens here); on failure fall back to ``eager_fn``."""
    try:
        return fn, fn()
    except Exception as err:
        if eager_fn is None:
            raise
        notes.append(f"{what}: compiled call failed ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}); "
                     f"timed eager")
        torch._dynamo.reset()
        return eager_fn, eager_fn()


def measure(name: str, size: int | None, recipes: dict[str, dict], repeats: int, timed: bool,
            device: str, train: bool = False, batch: int | None = None, channels_last: bool = False,
            compile_model: bool = False, amp: str = "none") -> dict:
    factory = MODELS.get(name)
    recipe = recipe_for(name, recipes)
    kwargs = build_kwargs(factory, recipe)
    s = size or (recipe or {}).get("train", {}).get("image_size") or 512
    if "input_size" in kwargs and size:
        kwargs["input_size"] = size  # IML_ViT / PSCC_Net tables follow the benchmarked size
    row: dict[str, Any] = {"model": name, "size": s}
    notes: list[str] = []
    counter = FlopCounterMode(display=False)
    model = None
    try:
        with torch.device("meta"):
            model = factory(**kwargs).eval()
        with torch.no_grad(), counter:
            model(**make_batch(None, s, "meta"))
        row["params"] = sum(p.numel() for p in model.parameters())
        row["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        row["flops"] = counter.get_total_flops()
        model = None
    except Exception:  # a model that cannot run on the meta device: count on a real forward below
        model = None
    dev = _Device(device, amp)
    if "flops" not in row or timed:
        torch.manual_seed(0)
        model = factory(**kwargs).eval().to(device)
        row["params"] = sum(p.numel() for p in model.parameters())
        row["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        inputs = make_batch(None, s, device)
        if "flops" not in row:
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                model(**inputs)
            row["flops"] = counter.get_total_flops()
    row["macs"] = row["flops"] / 2
    if timed:
        eager = model.to(memory_format=torch.channels_last) if channels_last else model
        net = _prepare(model, channels_last, compile_model, notes)
        if channels_last:
            inputs = _channels_last(inputs)
        dev.free()
        dev.reset_peak()

        def fwd(m):
            def call():
                with torch.no_grad(), dev.autocast():
                    return m(**inputs)
            return call

        call, _ = _first_call(fwd(net), fwd(eager) if net is not eager else None, notes, "forward")
        times = _timed(call, repeats, dev)
        row["ms"] = statistics.median(times)
        row["fwd_ips"] = 1000.0 / row["ms"]
        if dev.cuda:
            row["fwd_mb"] = dev.peak_mb()
        if train:
            b = int(batch or (recipe or {}).get("train", {}).get("batch_size") or 1)
            row["train_batch"] = b
            try:
                row.update(_train_step_times(net, eager, b, s, repeats, dev, channels_last, notes))
            except Exception as err:  # e.g. BatchNorm with batch 1, out of memory: keep the forward numbers
                notes.append(f"train step failed: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}")
                dev.free()
        del net, eager
    if notes:
        row["notes"] = notes
    del model
    dev.free()
    return row


def _train_step_times(net, eager, b: int, s: int, repeats: int, dev: _Device, channels_last: bool,
                      notes: list[str]) -> dict:
    """Median ms of a training step (train mode, forward, backward, AdamW step) at batch ``b``."""
    inputs = make_batch(None, s, dev.device, b)
    if channels_last:
        inputs = _channels_last(inputs)
    params = [p for p in eager.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter")
    opt = torch.optim.AdamW(params, lr=1e-6)
    scaler = torch.amp.GradScaler(dev.device.type, enabled=dev.amp is torch.float16 and dev.cuda)
    eager.train()
    dev.free()
    dev.reset_peak()

    def step_of(m):
        def step():
            with dev.autocast():
                out = m(**inputs)
            loss = out["backward_loss"]
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            return loss
        return step

    try:
        step, loss = _first_call(step_of(net), step_of(eager) if net is not eager else None, notes, "train step")
        if not torch.isfinite(loss.detach().float()).all():
            notes.append("train step: non-finite loss at the warm-up step")
        times = _timed(step, repeats, dev)
    finally:
        eager.eval()
        opt.zero_grad(set_to_none=True)
    ms = statistics.median(times)
    out = {"train_ms": ms, "train_ips": b * 1000.0 / ms}
    if dev.cuda:
        out["train_mb"] = dev.peak_mb()
    return out


def _f(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def fmt_table(rows: list[dict], device: str, train: bool = False, memory: bool = False) -> str:
    cols = ["model", "input", "params (M)", "trainable (M)", "GFLOPs", "GMACs", f"forward ms ({device}, batch 1)",
            "forward img/s"]
    if train:
        cols += ["train batch", "train step ms", "train img/s"]
    if memory:
        cols += ["forward peak MB"] + (["train peak MB"] if train else [])
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    lines = []
    for r in rows:
        trainable = r.get("trainable")
        cells = [r["model"], str(r["size"]), f"{r['params'] / 1e6:.2f}",
                 "—" if trainable is None else f"{trainable / 1e6:.2f}",
                 f"{r['flops'] / 1e9:.1f}", f"{r['macs'] / 1e9:.1f}", _f(r.get("ms"), ".0f"), _f(r.get("fwd_ips"), ".1f")]
        if train:
            cells += [str(r.get("train_batch", "—")), _f(r.get("train_ms"), ".0f"), _f(r.get("train_ips"), ".1f")]
        if memory:
            cells += [_f(r.get("fwd_mb"), ".0f")] + ([_f(r.get("train_mb"), ".0f")] if train else [])
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def device_label(args) -> str:
    if args.device == "cpu":
        label = f"CPU, {torch.get_num_threads()} threads"
    elif args.device.startswith("cuda") and torch.cuda.is_available():
        label = f"{args.device} {torch.cuda.get_device_name(torch.device(args.device))}"
    else:
        label = args.device
    extras = [x for x, on in (("channels_last", args.channels_last), ("compiled", args.compile),
                              (f"AMP {args.amp}", args.amp != "none")) if on]
    return ", ".join([label] + extras)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["*"], help="registered names or shell patterns")
    ap.add_argument("--size", type=int, default=None, help="input side (default: the recipe's --image_size)")
    ap.add_argument("--repeats", type=int, default=3, help="timed forwards (and training steps) per model (median)")
    ap.add_argument("--no-time", action="store_true", help="parameters and FLOPs only")
    ap.add_argument("--device", default="cpu", help="device of the timed forward (cpu, cuda)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the CPU timing")
    ap.add_argument("--train", action="store_true",
                    help="also time a training step (forward + backward + AdamW step) in train mode")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch of the training step (default: the recipe's batch_size, else 1)")
    ap.add_argument("--channels-last", action="store_true", help="model and 4-D inputs in channels_last")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (eager with a note if it fails)")
    ap.add_argument("--amp", choices=("none", "float16", "bfloat16"), default="none",
                    help="autocast dtype of the timed calls (default none: float32)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: PyTorch sees no CUDA device here")
    if args.train and args.no_time:
        print("--train is ignored with --no-time (nothing is timed)", file=sys.stderr)
    train = args.train and not args.no_time
    names = [n for n in MODELS.list() if any(fnmatch.fnmatchcase(n, p) for p in args.models)]
    # only zoo models and backbones (user models registered elsewhere are skipped)
    names = [n for n in names if inspect.getmodule(MODELS.get(n)).__name__.startswith("IMDLBenCo.")]
    recipes = load_recipes()
    rows = []
    failed = 0
    for name in names:
        try:
            row = measure(name, args.size, recipes, args.repeats, not args.no_time, args.device, train=train,
                          batch=args.batch, channels_last=args.channels_last, compile_model=args.compile,
                          amp=args.amp)
        except Exception as err:  # one broken model must not hide the others' numbers
            print(f"{name}: failed: {type(err).__name__}: {err}", file=sys.stderr)
            failed += 1
            continue
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr, flush=True)
    memory = args.device.startswith("cuda") and not args.no_time
    print(fmt_table(rows, device_label(args), train=train, memory=memory))
    notes = [f"- {r['model']}: {n}" for r in rows for n in r.get("notes", [])]
    if notes:
        print("\nnotes:\n" + "\n".join(notes))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 1 if failed and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
