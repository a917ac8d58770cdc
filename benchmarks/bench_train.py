"""Training-loop overhead: our engine's epoch against a bare PyTorch loop, in the same run.

Both loops train the same model on the same dataset object and DataLoader settings (deferred
uint8 batches normalised on the device), with the same batch size, optimizer (AdamW) and AMP
setting (on with CUDA, off on CPU). Ours adds what a run needs: the per-iteration LR schedule,
the NaN/inf check, loss averaging, train_steps.jsonl and TensorBoard logging, the progress bar.
Epochs alternate (ours, bare, ours, ...) and the medians are compared. Target: overhead ≤ 10%.

    .venv/bin/python benchmarks/bench_train.py                  # CPU here; CUDA when present
    .venv/bin/python benchmarks/bench_train.py --images 96 --epochs 5   # short epochs: fixed per-epoch costs show

Per epoch the engine also writes TensorBoard pictures and logs ``--log_per_epoch_count`` (20)
steps, so very short epochs (a dozen steps) show a larger relative overhead than real ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from IMDLBenCo.registry import MODELS


@MODELS.register_module(name="BenchTrainNet", force=True)
class BenchTrainNet(nn.Module):
    """A small encoder-decoder (about 0.3 M parameters) with mask and label heads."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.enc = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 2, 2), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * w, w, 2, 2), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(w, 1, 2, 2),
        )
        self.cls = nn.Linear(4 * w, 1)

    def forward(self, image, mask, label, *args, **kwargs):
        feat = self.enc(image)
        logits = self.dec(feat)
        cls = self.cls(feat.mean(dim=(2, 3))).squeeze(1)
        seg_loss = F.binary_cross_entropy_with_logits(logits.float(), mask)
        cls_loss = F.binary_cross_entropy_with_logits(cls.float(), label.float())
        loss = seg_loss + cls_loss
        return {"backward_loss": loss, "pred_mask": torch.sigmoid(logits), "pred_label": torch.sigmoid(cls),
                "visual_loss": {"seg_loss": seg_loss, "cls_loss": cls_loss}, "visual_image": {}}


def make_data(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir(parents=True)
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(0, size // 2, 2)
        mask[y:y + size // 3, x:x + size // 3] = 255
        Image.fromarray(img).save(root / "Tp" / f"{i:04d}.png")
        Image.fromarray(mask).save(root / "Gt" / f"{i:04d}.png")
    return root


def bare_epoch(model, loader, optimizer, scaler, device, use_amp: bool) -> int:
    """The plain loop: to device, normalise, forward, backward, step."""
    from IMDLBenCo.datasets import normalize_batch

    model.train()
    steps = 0
    for batch in loader:
        batch = normalize_batch({k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
                                 for k, v in batch.items()})
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            out = model(**batch)
        scaler.scale(out["backward_loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=320)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per loop (after one warm-up each)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: steadier numbers on a shared machine; 0: torch's default)")
    a = p.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    from IMDLBenCo.engine.arguments import parse_script_args
    from IMDLBenCo.engine.runtime import configure_logging, setup_runtime
    from IMDLBenCo.engine.train import Trainer

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    data = make_data(tmp / "data", a.images, a.size)
    args, model_kwargs = parse_script_args("train", [
        "--model", "BenchTrainNet", "--data_path", str(data), "--image_size", str(a.size), "--if_resizing",
        "--batch_size", str(a.batch), "--accum_iter", "1", "--epochs", str(a.epochs + 1), "--lr", "1e-3",
        "--warmup_epochs", "1", "--num_workers", str(a.workers), "--device", a.device,
        "--output_dir", str(tmp / "run")])
    runtime = setup_runtime(args.device)
    configure_logging(runtime)
    import logging

    logging.getLogger("IMDLBenCo").setLevel(logging.WARNING)
    trainer = Trainer(args, model_kwargs, runtime, evaluators=[], train_transform=False)

    # the bare loop: a separate copy of the model, optimizer and a loader with the same settings
    torch.manual_seed(args.seed)
    bare_model = BenchTrainNet().to(runtime.device)
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=1e-3)
    bare_scaler = torch.amp.GradScaler(runtime.device.type, enabled=trainer.use_amp)
    bare_loader = torch.utils.data.DataLoader(
        trainer.train_set, batch_size=a.batch, shuffle=True, num_workers=a.workers, drop_last=trainer.loader.drop_last,
        pin_memory=runtime.is_cuda)

    ours, bare, ours_cpu, bare_cpu = [], [], [], []
    steps = len(trainer.loader)
    trainer.train_one_epoch(0)  # warm-up (first-call costs: TensorBoard writer, allocator)
    bare_epoch(bare_model, bare_loader, bare_opt, bare_scaler, runtime.device, trainer.use_amp)
    for epoch in range(1, a.epochs + 1):
        t, c = time.perf_counter(), time.process_time()
        trainer.train_one_epoch(epoch)
        if runtime.is_cuda:
            torch.cuda.synchronize()
        ours.append(steps / (time.perf_counter() - t))
        ours_cpu.append(steps / (time.process_time() - c))
        t, c = time.perf_counter(), time.process_time()
        n = bare_epoch(bare_model, bare_loader, bare_opt, bare_scaler, runtime.device, trainer.use_amp)
        bare.append(n / (time.perf_counter() - t))
        bare_cpu.append(n / (time.process_time() - c))
    trainer.writer.close()
    o, b = statistics.median(ours), statistics.median(bare)
    print(f"device {runtime.device}, AMP {'on' if trainer.use_amp else 'off'}, {a.images} images {a.size}px, "
          f"batch {a.batch}, {steps} steps/epoch, {a.epochs} timed epochs each, {torch.get_num_threads()} CPU "
          f"thread(s), torch {torch.__version__}")
    print(f"  bare PyTorch loop : {b:8.2f} steps/s   (epochs: {', '.join(f'{x:.2f}' for x in bare)})")
    print(f"  IMDLBenCo engine  : {o:8.2f} steps/s   (epochs: {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"  overhead          : {100 * (b / o - 1):+.1f}%  (target ≤ 10%)")
    oc, bc = statistics.median(ours_cpu), statistics.median(bare_cpu)
    # CPU time of this process: less disturbed than wall time when other jobs share the machine
    print(f"  per CPU-second    : bare {bc:.2f}, ours {oc:.2f} steps; overhead {100 * (bc / oc - 1):+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
