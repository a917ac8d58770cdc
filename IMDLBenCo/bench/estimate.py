"""Disk and time estimates of a plan (``benco bench --dry-run``).

Time: floating-point work over throughput. A model's forward cost per image comes from the zoo's
measured table (``benchmarks/bench_zoo.py``, IMDLBenCo/model_zoo/README.md; scaled by the square
of the input size) or, for other models, from building it on PyTorch's ``meta`` device (no memory,
no weights) and counting the FLOPs of one forward with ``torch.utils.flop_counter``. Training
costs 3 forwards per image (forward + backward), validation and testing one per image and attack
strength. The throughput is measured here: a matrix product on the device the cells would use,
times a utilisation factor (convolutional networks reach a fraction of the peak), plus a fixed
start-up time per process. So the estimate is right in its order of magnitude, not to the minute.

Disk: per training, the numbered checkpoints (model only, 4 bytes per parameter; one per test
epoch plus the last) and ``checkpoint-resume.pth`` (model + AdamW's two moments); per cell, the
per-image rows (about 150 bytes each) and small JSON files.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

__all__ = ["ZOO_COST", "model_cost", "measure_throughput", "estimate_plan", "format_bytes", "format_seconds"]

#: registered name → (parameters in millions, GFLOPs per forward, input side they were measured at);
#: from IMDLBenCo/model_zoo/README.md (benchmarks/bench_zoo.py, batch 1, eval mode)
ZOO_COST: dict[str, tuple[float, float, int]] = {
    "IML_ViT": (91.78, 1152.0, 1024), "MVSSNet": (146.88, 332.8, 512), "Mesorch": (85.75, 232.8, 512),
    "PSCC_Net": (3.67, 90.1, 256), "Cat_Net": (114.26, 266.6, 512), "DINOv3_IML": (312.13, 745.7, 512),
    "MSCDI_Net": (81.48, 140.7, 512), "MantraNet": (3.81, 2171.7, 512), "ObjectFormer": (130.57, 130.2, 224),
    "SPAN": (4.03, 404.4, 224), "SparseViT": (50.35, 92.1, 512), "Trufor": (68.70, 442.2, 512),
    "convnext": (27.95, 48.1, 512), "resnet": (48.03, 516.6, 1024), "segformer": (25.76, 265.1, 1024),
    "swin": (90.52, 176.7, 512), "unet": (31.04, 1541.4, 1024), "vit": (60.99, 151.6, 512),
    "vit16": (89.34, 222.6, 512),
}
#: fraction of the measured matrix-product rate a network reaches (rough, on purpose)
UTILISATION = {"cuda": 0.35, "cpu": 0.5, "mps": 0.25}
#: seconds to start one stage process (Python, torch, the model, the data check)
PROCESS_START_S = 6.0
PER_IMAGE_ROW_BYTES = 150


def model_cost(model: str, options: dict[str, Any], image_size: int) -> tuple[float | None, float | None]:
    """(parameters, FLOPs per forward at ``image_size``²) of ``model`` built with ``options``; (None, None)
    when it cannot be told."""
    if model in ZOO_COST:
        params_m, gflops, size = ZOO_COST[model]
        return params_m * 1e6, gflops * 1e9 * (image_size / size) ** 2
    try:
        import inspect

        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from ..registry import MODELS

        cls = MODELS.get(model)
        accepted = inspect.signature(cls).parameters
        kwargs = {k: v for k, v in options.items() if k in accepted and not (isinstance(v, str) and v.endswith(
            (".pth", ".pt", ".tar", ".bin", ".safetensors")))}
        with torch.device("meta"):
            net = cls(**kwargs)
            params = float(sum(p.numel() for p in net.parameters()))
            image = torch.zeros(1, 3, image_size, image_size)
            mask = torch.zeros(1, 1, image_size, image_size)
            label = torch.zeros(1)
            counter = FlopCounterMode(display=False)
            net.eval()
            with counter, torch.no_grad():
                net(image=image, mask=mask, label=label)
        return params, float(counter.get_total_flops())
    except Exception:  # an estimate is not worth a failure: the model is shown as unknown
        return None, None


def measure_throughput(device: str = "auto") -> tuple[float, str]:
    """(FLOP/s a network reaches here, the device name): a timed float32 matrix product × utilisation."""
    import torch

    name = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    n = 1024 if name == "cuda" else 512
    a = torch.randn(n, n, device=name)
    b = torch.randn(n, n, device=name)
    a @ b
    rate = 0.0
    for _ in range(5):  # the best of short windows: other processes on a shared machine slow some down
        if name == "cuda":
            torch.cuda.synchronize()
        repeats, start = 0, time.perf_counter()
        while time.perf_counter() - start < 0.06:
            a @ b
            repeats += 1
        if name == "cuda":
            torch.cuda.synchronize()
        rate = max(rate, 2 * n ** 3 * repeats / (time.perf_counter() - start))
    return rate * UTILISATION[name], name


def _samples(info: dict[str, Any]) -> int | None:
    if "members" in info:  # BalancedDataset: sample_number per member and epoch (default 1840)
        return 1840 * len(info["members"])
    return info.get("samples")


def _synth_count(plan: Any, path: str | None) -> int | None:
    """Images of a split of a ``synth:`` protocol's data not generated yet (train/val/test .json or folder)."""
    synth = plan.protocol.synth
    if not synth or not path:
        return None
    from ..datasets.synth import _split_counts

    split = os.path.splitext(os.path.basename(path))[0]
    return _split_counts(int(synth["n"])).get(split)


def estimate_plan(plan: Any, throughput: float | None = None) -> dict[str, Any]:
    """``{"seconds", "bytes", "per_training": {...}, "per_cell": {...}, "unknown": [...], "device", "flops"}``
    for what the plan still has to run (done cells and finished trainings cost nothing)."""
    device = "cpu"
    if throughput is None:
        throughput, device = measure_throughput(str(plan.protocol.options.get("device", "auto")))
    throughput *= max(1, plan.nproc * plan.nnodes)
    costs: dict[str, tuple[float | None, float | None]] = {}
    unknown = []
    per_training: dict[str, dict[str, float]] = {}
    per_cell: dict[str, dict[str, float]] = {}
    unsized: list = []  # trainings and cells whose data is missing (no size to estimate from)

    def cost(model_id: str, model: str, options: dict[str, Any]) -> tuple[float | None, float | None]:
        if model_id not in costs:
            costs[model_id] = model_cost(model, options, int(options.get("image_size", 512)))
            if costs[model_id][0] is None:
                unknown.append(model_id)
        return costs[model_id]

    for training in plan.trainings.values():
        if training.status == "trained":
            continue
        entry = next(c.entry for c in plan.cells if c.model_id == training.model_id) if any(
            c.model_id == training.model_id for c in plan.cells) else None
        if entry is None:
            continue
        params, flops = cost(training.model_id, entry.model, training.config)
        epochs = int(training.config.get("epochs", 200))
        period = int(training.config.get("test_period", 4))
        data = plan.data_info.get(plan.protocol.train_data or "", {})
        total = _samples(data) or _synth_count(plan, plan.protocol.train_data) or 0
        if plan.protocol.val_split:
            val = int(round(total * plan.protocol.val_split))
            train_images = total - val
        else:
            train_images = total
            val = _samples(plan.data_info.get(plan.protocol.val or "", {})) or 0
        if not train_images:
            unsized.append(training.model_id)
        seconds = PROCESS_START_S
        if flops:
            seconds += (epochs * train_images * 3 * flops + math.ceil(epochs / period) * val * flops) / throughput
        size = 0.0
        if params:
            size = (math.ceil(epochs / period) + 1) * params * 4 + params * 4 * 3
        per_training[training.model_id] = {"seconds": seconds, "bytes": size, "images": train_images,
                                           "epochs": epochs}
    for cell in plan.cells:
        if cell.status == "done":
            continue
        options = cell.test_config
        params, flops = cost(cell.model_id, cell.entry.model, options)
        images = cell.images or _synth_count(plan, cell.set_path) or 0
        if not images:
            unsized.append(cell.id)
        passes = 1 + sum(len(a.levels) for a in cell.attacks)
        seconds = PROCESS_START_S + ((images * passes * flops) / throughput if flops else 0.0)
        per_cell[cell.id] = {"seconds": seconds, "bytes": images * passes * PER_IMAGE_ROW_BYTES + 20_000,
                             "images": images, "passes": passes}
    return {"seconds": sum(v["seconds"] for v in per_training.values()) + sum(v["seconds"] for v in per_cell.values()),
            "bytes": sum(v["bytes"] for v in per_training.values()) + sum(v["bytes"] for v in per_cell.values()),
            "per_training": per_training, "per_cell": per_cell, "unknown": sorted(set(unknown)), "device": device,
            "unsized": unsized,
            "flops_per_s": throughput}


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
