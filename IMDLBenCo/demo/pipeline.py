"""The ``benco demo`` pipeline: synthetic data → train → test → robustness → save → complexity → report.

Every stage goes through the same entry points and command-line options a user's scripts use
(``IMDLBenCo.engine.train_main`` and friends, called in-process with an argument list), so the
demo exercises the real code paths. The model is :class:`IMDLBenCo.demo.model.DemoNet`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DemoSettings", "QUICK", "FULL", "run_demo", "evaluators", "attacks"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (``--quick`` or full)."""

    n_images: int  # synthetic images over all splits
    image_size: int  # side of the generated images and of the network input
    epochs: int
    batch_size: int
    lr: float
    width: int  # DemoNet channels
    blur: tuple
    noise: tuple
    jpeg: tuple


# batches of 8: twice the optimizer steps of 16 for the same work (quick: pixel F1 0.63 instead of 0.29)
QUICK = DemoSettings(n_images=240, image_size=64, epochs=12, batch_size=8, lr=6e-3, width=12,
                     blur=(0, 5, 11), noise=(5, 15), jpeg=(50, 90))
FULL = DemoSettings(n_images=600, image_size=64, epochs=20, batch_size=8, lr=6e-3, width=12,
                    blur=(0, 3, 7, 11, 15), noise=(3, 7, 15, 23), jpeg=(50, 70, 90, 100))

#: sub-folders of ``--out`` the demo writes (and clears first, so a rerun does not append to old logs)
STAGE_FOLDERS = ("data", "untrained", "train", "test", "robust", "pred", "complexity", "report")


def evaluators() -> list[Any]:
    """The demo's metrics: pixel F1/AUC/IoU and image F1/AUC/accuracy."""
    from ..evaluation import ImageAccuracy, ImageAUC, ImageF1, PixelAUC, PixelF1, PixelIOU

    return [PixelF1(threshold=0.5), PixelAUC(), PixelIOU(threshold=0.5), ImageF1(threshold=0.5), ImageAUC(), ImageAccuracy(threshold=0.5)]


def attacks(settings: DemoSettings) -> list[Any]:
    from ..transforms import GaussianBlurWrapper, GaussianNoiseWrapper, JpegCompressionWrapper

    return [GaussianBlurWrapper(list(settings.blur)), GaussianNoiseWrapper(list(settings.noise)), JpegCompressionWrapper(list(settings.jpeg))]


def train_transform() -> Any:
    """Flips and 90° turns only: they keep the noise traces the synthetic forgeries leave, while
    rescaling, blur and JPEG (in the default IMDL augmentation) would wash them out of 64-pixel images:
    measured with them, the full demo's pixel F1 is 0.21 instead of 0.81 (see
    :data:`IMDLBenCo.demo.notes.ROBUSTNESS_NOTE`, which the report shows)."""
    from ..transforms import Compose, HorizontalFlip, RandomRotate90, VerticalFlip

    return Compose([HorizontalFlip(p=0.5), VerticalFlip(p=0.5), RandomRotate90(p=0.5)])


def _common_args(settings: DemoSettings, seed: int, device: str = "cpu") -> list[str]:
    """Options every script of the demo shares (model, input size, device, seed)."""
    return ["--model", "DemoNet", "--width", str(settings.width),
            "--image_size", str(settings.image_size), "--if_resizing", "--device", device,
            "--num_workers", "0", "--seed", str(seed), "--if_predict_label"]


def _stage(number: int, total: int, title: str) -> Callable[[], float]:
    print(f"\n[{number}/{total}] {title}", flush=True)
    start, cpu_start = time.perf_counter(), time.process_time()

    def done() -> float:
        took = time.perf_counter() - start
        # CPU time too: on a shared machine it says what an idle one would take (one thread)
        print(f"      done in {took:.1f} s (CPU {time.process_time() - cpu_start:.1f} s)", flush=True)
        return took

    return done


def _pixel_f1(metrics: dict[str, Any]) -> float:
    for key in ("pixel_f1", "pixel-f1", "PixelF1"):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f"no pixel_f1 in the test metrics {sorted(metrics)}; the demo's evaluator list must include PixelF1")


def _test_metrics(summary: dict[str, Any], set_name: str | None = None) -> dict[str, float]:
    """The metrics of the newest epoch in a ``test_main`` summary (one test set)."""
    rows = [r for r in summary.get("rows", []) if set_name is None or r.get("set") == set_name]
    if not rows:
        raise RuntimeError(f"test produced no rows: {summary}")
    last = max(rows, key=lambda r: r.get("epoch", 0))
    return {k: v for k, v in last.items() if k not in ("epoch", "set") and isinstance(v, (int, float))}


def run_demo(out: str | Path = "benco_demo", quick: bool = False, seed: int = 42, threads: int = 1,
             settings: DemoSettings | None = None, device: str = "cpu") -> dict[str, Any]:
    """Run the whole pipeline into ``out`` and return its key results (also ``out/demo_summary.json``).

    ``threads``: PyTorch CPU threads. One by default: on a busy 2-core machine two OpenMP threads
    spin against other processes and ran the training 9× slower (175 s against 20 s) in our
    measurement, while one thread loses little on an idle machine at these small sizes.
    ``settings`` overrides the ``--quick`` / full sizes (tests use a tiny one).
    ``device``: the engine's ``--device`` (default ``cpu``: the model is tiny, and the CPU gives
    the same numbers on every machine; ``auto`` uses a GPU when there is one).
    """
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        return _run(Path(out), settings or (QUICK if quick else FULL), quick, seed, device)
    finally:
        torch.set_num_threads(previous_threads)


def _run(out: Path, settings: DemoSettings, quick: bool, seed: int, device: str) -> dict[str, Any]:
    import shutil

    import torch

    from ..datasets.synth import make_synthetic_dataset
    from ..engine import complexity_main, save_images_main, test_main, test_robust_main, train_main
    from ..report import build_report
    from . import model as _model  # registers DemoNet
    from .notes import ROBUSTNESS_NOTE, add_note_to_checkpoints, demo_model_note

    out.mkdir(parents=True, exist_ok=True)
    for name in STAGE_FOLDERS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    started, cpu_started = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    total = 8
    common = _common_args(settings, seed, device)

    done = _stage(1, total, f"synthetic dataset: {settings.n_images} images of {settings.image_size}×{settings.image_size} (copy-move, splicing, inpainting, authentic)")
    data = out / "data"
    info = make_synthetic_dataset(str(data), n=settings.n_images, size=settings.image_size, seed=seed)
    print(f"      {data}: " + ", ".join(f"{v} {k}" for k, v in dict(info.get("counts", {})).items()), flush=True)
    timings["data"] = done()
    # the JsonDataset files hold authentic images too (the ManiDataset folders only tampered ones);
    # named sets (test_datasets.json style) keep validation and test apart in logs and the report
    train_dir = data / "train.json"
    val_dir = data / "val_datasets.json"
    val_dir.write_text(json.dumps({"synth_val": "val.json"}), encoding="utf-8")
    test_dir = data / "test_datasets.json"  # {"synth_test": "test.json"}, written by the generator

    done = _stage(2, total, "untrained DemoNet (same architecture, same test) as the baseline")
    torch.manual_seed(seed)
    untrained = _model.DemoNet(width=settings.width)
    weights = out / "untrained" / "weights" / "checkpoint-0.pth"  # beside the test run, not in its files
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": untrained.state_dict()}, weights)
    base = test_main(common + ["--checkpoint_path", str(weights),
                               "--test_data_path", str(test_dir), "--test_batch_size", "32",
                               "--output_dir", str(out / "untrained")], evaluators=evaluators())
    untrained_metrics = _test_metrics(base, "synth_test")
    print(f"      untrained pixel F1 on the test split: {_pixel_f1(untrained_metrics):.4f}", flush=True)
    timings["untrained"] = done()

    done = _stage(3, total, f"train DemoNet for {settings.epochs} epochs (validation every epoch)")
    train_main(common + [
        "--data_path", str(train_dir), "--test_data_path", str(val_dir), "--epochs", str(settings.epochs),
        "--batch_size", str(settings.batch_size), "--test_batch_size", "32", "--lr", str(settings.lr),
        "--min_lr", str(settings.lr / 20), "--warmup_epochs", "1", "--accum_iter", "1", "--weight_decay", "0.01",
        "--test_period", "1", "--output_dir", str(out / "train"), "--log_per_epoch_count", "10",
    ], evaluators=evaluators(), train_transform=train_transform())
    timings["train"] = done()
    # every checkpoint says what this model is (benco predict on real photos can repeat it)
    train_images = len(json.loads(train_dir.read_text(encoding="utf-8")))
    note = demo_model_note(settings.epochs, train_images, settings.image_size, timings["train"])
    add_note_to_checkpoints(out / "train", note)

    done = _stage(4, total, "test every checkpoint on the held-out test split")
    summary = test_main(common + ["--checkpoint_path", str(out / "train"), "--test_data_path", str(test_dir),
                                  "--test_batch_size", "32", "--output_dir", str(out / "test")], evaluators=evaluators())
    trained_metrics = _test_metrics(summary, "synth_test")
    print(f"      trained pixel F1 on the test split: {_pixel_f1(trained_metrics):.4f}", flush=True)
    timings["test"] = done()

    best = out / "train" / "checkpoint-best.pth"
    if not best.is_file():
        best = max((out / "train").glob("checkpoint-*.pth"), key=lambda p: p.stat().st_mtime)
    done = _stage(5, total, "robustness: Gaussian blur, Gaussian noise, JPEG compression")
    test_robust_main(common + ["--checkpoint_path", str(best), "--test_data_path", str(data / "test.json"),
                               "--test_batch_size", "32", "--output_dir", str(out / "robust")],
                     evaluators=evaluators(), attacks=attacks(settings))
    timings["robust"] = done()

    done = _stage(6, total, "save predicted masks and labels")
    save_images_main(common + ["--checkpoint_path", str(best), "--test_data_path", str(data / "test.json"),
                               "--test_batch_size", "32", "--output_dir", str(out / "pred")])
    timings["save"] = done()

    done = _stage(7, total, "model complexity")
    complexity_main(common + ["--output_dir", str(out / "complexity")])
    timings["complexity"] = done()

    done = _stage(8, total, "report")
    report = build_report([out / "train", out / "test", out / "untrained", out / "robust", out / "pred", out / "complexity"],
                          out=out / "report", title="IMDLBenCo demo: DemoNet on synthetic tampering",
                          notes=[note, ROBUSTNESS_NOTE])
    timings["report"] = done()

    result = {
        "seed": seed, "quick": quick, "settings": settings.__dict__,
        "trained": trained_metrics, "untrained": untrained_metrics,
        "trained_pixel_f1": _pixel_f1(trained_metrics), "untrained_pixel_f1": _pixel_f1(untrained_metrics),
        "report": str(report), "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1), "timings": timings,
        "note": note, "robustness_note": ROBUSTNESS_NOTE,
    }
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return result
