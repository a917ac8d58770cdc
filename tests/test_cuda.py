"""The CUDA paths: AMP training (float16 with a gradient scaler, bfloat16), DDP with SyncBatchNorm
on nccl, every evaluator on the GPU against the CPU, pinned loading with on-device normalisation,
CUDA checkpoints tested on the CPU, sliding-window inference on the GPU.

Marked ``cuda`` and skipped where PyTorch sees no CUDA device. Run them on a GPU machine with
``python -m pytest -m cuda -q tests/`` (``benchmarks/gpu_check.sh`` does, among other checks).
Each test takes seconds on a GPU: 64-pixel images, a model of two convolutions.

Equality with the CPU is checked with TF32 off (:func:`ieee_fp32`): on Ampere and later GPUs
cuDNN convolutions use TF32 by default, which changes float32 results in the third decimal.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_support import MODEL, EngineTinyNet, MeanF1, make_mani, read_jsonl, run_in_group

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (PyTorch sees none)"),
]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SIZE = 64


@contextlib.contextmanager
def ieee_fp32():
    """float32 convolutions and matrix products in full precision (no TF32) inside the block."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _peak_mb() -> float:
    return torch.cuda.max_memory_allocated() / 2**20


@pytest.fixture(autouse=True)
def _report_peak_memory(request):
    """Print each test's peak GPU memory (``-s`` shows it; gpu_check.sh keeps the log)."""
    torch.cuda.reset_peak_memory_stats()
    yield
    torch.cuda.synchronize()
    print(f"\n[peak GPU memory] {request.node.name}: {_peak_mb():.1f} MB")


@pytest.fixture
def data(tmp_path):
    return make_mani(tmp_path / "data", 8, size=(SIZE, SIZE + 8), seed=3)


def _train_args(tmp_path: Path, data: Path, *extra: str) -> list:
    return ["--model", MODEL, "--data_path", str(data), "--test_data_path", str(data),
            "--image_size", str(SIZE), "--if_resizing", "--batch_size", "4", "--test_batch_size", "4",
            "--epochs", "2", "--accum_iter", "1", "--lr", "1e-2", "--warmup_epochs", "1", "--num_workers", "0",
            "--device", "cuda", "--output_dir", str(tmp_path / "out"), *extra]


# ------------------------------------------------------------------------------------ AMP training
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_amp_training_through_train_main(tmp_path, data, dtype):
    """Two epochs under autocast: finite losses, checkpoints written, the float16 run with an
    active GradScaler (its state saved for resuming), the bfloat16 run without one."""
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16 support")
    from IMDLBenCo.engine import train_main

    result = train_main(_train_args(tmp_path, data, "--amp_dtype", dtype), evaluators=[MeanF1()],
                        train_transform=False)
    out = tmp_path / "out"
    log = read_jsonl(out / "log.txt")
    assert [r["epoch"] for r in log] == [0, 1]
    for record in log:
        for key in ("train_seg_loss", "train_cls_loss"):
            assert math.isfinite(record[key]), (key, record)
    steps = read_jsonl(out / "train_steps.jsonl")
    assert steps and all(math.isfinite(s["seg_loss"]) for s in steps)
    config = json.loads((out / "config.json").read_text())
    assert config["amp"] == dtype and config["env"]["device"].startswith("cuda")
    for name in ("checkpoint-0.pth", "checkpoint-1.pth"):
        ckpt = torch.load(out / name, map_location="cpu", weights_only=True)
        assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    full = torch.load(out / "checkpoint-resume.pth", map_location="cpu", weights_only=True)
    if dtype == "float16":
        assert full["scaler"] and full["scaler"]["scale"] > 0  # the scaler ran and its state is kept
    else:
        assert not full["scaler"]  # bfloat16 needs no loss scaling: a disabled scaler has no state
    assert result["epoch"] == 1 and math.isfinite(result["test_mean_f1"])


# -------------------------------------------------------------------------- DDP, SyncBN, nccl
DDP_SCRIPT = textwrap.dedent("""
    import math, os, sys
    sys.path.insert(0, {tests!r})
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from engine_support import EngineTinyNet
    from IMDLBenCo.engine.builders import autocast, prepare_model
    from IMDLBenCo.engine.runtime import Runtime

    dev = torch.device("cuda", 0)
    torch.cuda.set_device(dev)
    dist.init_process_group("nccl", init_method="env://", rank=0, world_size=1, device_id=dev)
    runtime = Runtime(device=dev, rank=0, world_size=1, local_rank=0, distributed=True, backend="nccl")

    # the engine's wrapping: SyncBatchNorm on CUDA, then DDP on the local device
    torch.manual_seed(0)
    model = prepare_model(EngineTinyNet(width=8), runtime, train=True)
    assert isinstance(model, torch.nn.parallel.DistributedDataParallel), type(model)
    assert isinstance(model.module.bn, torch.nn.SyncBatchNorm), type(model.module.bn)
    assert model.device_ids == [0], model.device_ids
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cuda")
    g = torch.Generator().manual_seed(1)
    losses = []
    for step in range(4):
        image = torch.randn(4, 3, 32, 32, generator=g).to(dev)
        mask = (torch.rand(4, 1, 32, 32, generator=g) > 0.7).float().to(dev)
        label = (mask.flatten(1).amax(1) > 0).long()
        with autocast(runtime, True, "float16"):
            out = model(image=image, mask=mask, label=label)
        scaler.scale(out["backward_loss"]).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out["backward_loss"]))
    assert all(math.isfinite(x) for x in losses), losses
    assert int(model.module.bn.num_batches_tracked) == 4

    # the synchronised batch-norm kernels (nccl all-gather of the statistics), which a one-process
    # group skips inside SyncBatchNorm.forward, against plain batch norm: values and gradients
    try:
        from torch.nn.modules._functions import SyncBatchNorm as SyncBNFunction
    except ImportError:
        SyncBNFunction = None
    if SyncBNFunction is not None:
        x = torch.randn(6, 5, 9, 11, device=dev, requires_grad=True)
        w = torch.rand(5, device=dev, requires_grad=True)
        b = torch.randn(5, device=dev, requires_grad=True)
        rm, rv = torch.zeros(5, device=dev), torch.ones(5, device=dev)
        y = SyncBNFunction.apply(x, w, b, rm, rv, 1e-5, 0.1, dist.group.WORLD, 1)
        x2, w2, b2 = (t.detach().clone().requires_grad_() for t in (x, w, b))
        rm2, rv2 = torch.zeros(5, device=dev), torch.ones(5, device=dev)
        y2 = F.batch_norm(x2, rm2, rv2, w2, b2, True, 0.1, 1e-5)
        gy = torch.randn_like(y)
        y.backward(gy)
        y2.backward(gy)
        for a, c in ((y, y2), (x.grad, x2.grad), (w.grad, w2.grad), (b.grad, b2.grad), (rm, rm2), (rv, rv2)):
            assert torch.allclose(a, c, atol=1e-4, rtol=1e-4), (a - c).abs().max()

    # the runtime's collectives on nccl, as the training loop uses them
    runtime.barrier()
    t = torch.tensor([3.0], device=dev)
    assert float(runtime.all_reduce_(t, op="min")) == 3.0
    assert runtime.all_gather_object({{"a": 1}}) == [{{"a": 1}}]

    # evaluators reduce on the nccl group (their states travel through the GPU) as without a group
    from IMDLBenCo.evaluation import ImageAUC, PixelAUC, PixelF1
    def run():
        evs = [PixelF1(), PixelAUC(), ImageAUC()]
        gen = torch.Generator().manual_seed(2)
        for _ in range(3):
            m = (torch.rand(4, 1, 24, 24, generator=gen) > 0.6).float()
            p = (m * 0.5 + torch.rand(4, 1, 24, 24, generator=gen) * 0.5)
            s = torch.rand(4, generator=gen)
            lab = torch.tensor([1, 0, 1, 0])
            for ev in evs:
                ev.update({{"pred_mask": p.to(dev), "pred_label": s.to(dev)}}, {{"mask": m.to(dev), "label": lab.to(dev)}})
        res = {{}}
        for ev in evs:
            res.update(ev.compute())
        return res
    grouped = run()
    dist.destroy_process_group()
    alone = run()
    assert grouped.keys() == alone.keys()
    for k in grouped:
        assert grouped[k] == alone[k] or (math.isnan(grouped[k]) and math.isnan(alone[k])), (k, grouped[k], alone[k])
    print("peak GPU memory MB", torch.cuda.max_memory_allocated() / 2**20)
    print("DDP-SYNCBN-OK", losses)
""")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_syncbatchnorm_on_nccl(tmp_path):
    """prepare_model's DDP + SyncBatchNorm on a one-process nccl group (in a subprocess, so the
    group does not outlive the test): AMP steps, the sync-BN kernels, collectives, evaluators."""
    if not torch.distributed.is_nccl_available():
        pytest.skip("this PyTorch build has no nccl")
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(TESTS)))
    env = dict(os.environ, PYTHONPATH=str(REPO), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", OMP_NUM_THREADS="1")
    out = run_in_group([sys.executable, str(script)], tmp_path, env, timeout=180)
    assert "DDP-SYNCBN-OK" in out, out[-3000:]


# ------------------------------------------------------------------------------------ evaluators
def _all_evaluators():
    """One of every evaluator class that ``IMDLBenCo.evaluation`` exports, in every mode it has."""
    import inspect

    from IMDLBenCo import evaluation as E

    evs = []
    for name in E.__all__:
        cls = getattr(E, name)
        if not (inspect.isclass(cls) and issubclass(cls, E.Evaluator)) or cls is E.Evaluator:
            continue
        if "mode" in inspect.signature(cls).parameters:
            evs += [cls(mode=m) for m in ("origin", "reverse", "double")]
        else:
            evs.append(cls())
    return evs


def _feed(evaluators, batches, device):
    from IMDLBenCo.evaluation import share_batch_cache

    for ev in evaluators:
        ev.reset()
    share_batch_cache(evaluators)
    for out, batch in batches:
        out = {k: v.to(device) for k, v in out.items()}
        batch = {k: v.to(device) for k, v in batch.items()}
        for ev in evaluators:
            ev.update(out, batch)
    res = {}
    for ev in evaluators:
        res.update({k: float(v) for k, v in ev.compute().items()})
    return res


def test_every_evaluator_on_cuda_equals_cpu():
    """Identical random predictions, masks (with padding) and labels, in batches: every key of
    every evaluator (pixel and image level) within 1e-6 of the CPU's."""
    rng = np.random.default_rng(7)
    batches = []
    for b in range(4):
        n, size = 5, 48
        masks = np.zeros((n, 1, size, size), np.float32)
        for i in range(n):
            if (b + i) % 3 != 2:  # some authentic images
                y0, x0 = rng.integers(0, size // 2, 2)
                h, w = rng.integers(3, size // 2, 2)
                masks[i, 0, y0:y0 + h, x0:x0 + w] = 1
        preds = np.clip(masks * 0.4 + rng.random(masks.shape) * 0.6, 0, 1).astype(np.float32)
        if b == 3:
            preds = np.round(preds * 255) / 255  # ties (8-bit predictions)
        valid = np.ones_like(masks)
        valid[:, :, rng.integers(size // 2, size):, :] = 0  # padding at the bottom
        labels = masks.reshape(n, -1).max(1).astype(np.int64)
        scores = np.clip(rng.random(n) * 0.7 + labels * 0.3, 0, 1).astype(np.float32)
        batches.append(({"pred_mask": torch.from_numpy(preds.astype(np.float32)), "pred_label": torch.from_numpy(scores)},
                        {"mask": torch.from_numpy(masks), "label": torch.from_numpy(labels),
                         "shape_mask": torch.from_numpy(valid)}))
    evaluators = _all_evaluators()
    assert len({type(e).__name__ for e in evaluators}) >= 15
    cpu = _feed(evaluators, batches, "cpu")
    gpu = _feed(_all_evaluators(), batches, "cuda")
    assert cpu.keys() == gpu.keys()
    assert any(k.startswith("image_") for k in cpu) and any(k.startswith("pixel_") for k in cpu)
    bad = {k: (cpu[k], gpu[k]) for k in cpu
           if not (abs(cpu[k] - gpu[k]) <= 1e-6 or (math.isnan(cpu[k]) and math.isnan(gpu[k])))}
    assert not bad, bad


# ------------------------------------------------------------------------- loading and normalising
def test_pinned_loading_and_device_normalisation_equal_cpu(data):
    """The engine's loader pins memory on CUDA; the uint8 batch moved with non_blocking copies and
    normalised on the GPU equals the CPU normalisation of the same batch."""
    from IMDLBenCo.datasets import ManiDataset, normalize_batch
    from IMDLBenCo.engine.builders import batch_to_device, train_loader
    from IMDLBenCo.engine.config import DataConfig
    from IMDLBenCo.engine.runtime import Runtime

    dataset = ManiDataset(str(data), is_resizing=True, output_size=(SIZE, SIZE), edge_width=7,
                          defer_normalization=True)
    runtime = Runtime(device=torch.device("cuda", torch.cuda.current_device()))
    loader = train_loader(dataset, 4, DataConfig(image_size=SIZE, num_workers=0, pin_memory=True), runtime)
    assert loader.pin_memory
    seen = 0
    for batch in loader:
        assert batch["image"].dtype == torch.uint8 and batch["image"].is_pinned()
        assert batch["mask"].is_pinned()
        cpu = normalize_batch({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()})
        gpu = batch_to_device(batch, runtime.device)
        torch.cuda.synchronize()
        assert gpu["image"].device.type == "cuda" and gpu["image"].dtype == torch.float32
        for key in ("image", "mask", "edge_mask"):
            assert gpu[key].dtype == cpu[key].dtype == torch.float32, key
            assert torch.allclose(gpu[key].cpu(), cpu[key], atol=1e-6, rtol=0), (key, (gpu[key].cpu() - cpu[key]).abs().max())
        seen += batch["image"].shape[0]
    assert seen == 8
    # a batch above SMALL_CONVERSION elements takes torch's path on the CPU too (not numpy's)
    from IMDLBenCo.datasets.utils import SMALL_CONVERSION

    big = {"image": torch.randint(0, 256, (4, 3, 1200, 1200), dtype=torch.uint8)}
    assert big["image"].numel() >= SMALL_CONVERSION
    ref = normalize_batch({"image": big["image"].clone()})["image"]
    on_gpu = normalize_batch({"image": big["image"].pin_memory().to("cuda", non_blocking=True)})["image"]
    assert torch.allclose(on_gpu.cpu(), ref, atol=1e-6, rtol=0)
    # channels-last input keeps its layout through the on-device normalisation
    cl = big["image"].contiguous(memory_format=torch.channels_last).to("cuda")
    out = normalize_batch({"image": cl})["image"]
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out.cpu(), ref, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------- checkpoints across devices
def test_cuda_checkpoint_tested_on_cpu_gives_the_same_metrics(tmp_path, data):
    """A checkpoint written by a CUDA (AMP) training loads with --device cpu; test_main on the CPU
    and on CUDA (float32: --if_not_amp, TF32 off) give the same metrics within 1e-4."""
    from IMDLBenCo.engine import test_main, train_main
    from IMDLBenCo.evaluation import ImageAUC, ImageF1, PixelAUC, PixelF1

    train_main(_train_args(tmp_path, data, "--epochs", "1"), evaluators=[MeanF1()], train_transform=False)
    ckpt = tmp_path / "out" / "checkpoint-0.pth"
    assert ckpt.is_file()
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["args"]["device"] == "cuda"

    def evaluators():
        return [MeanF1(), PixelF1(), PixelAUC(), ImageF1(), ImageAUC()]

    common = ["--model", MODEL, "--image_size", str(SIZE), "--if_resizing", "--num_workers", "0",
              "--test_batch_size", "3", "--test_data_path", str(data), "--checkpoint_path", str(ckpt)]
    cpu = test_main(common + ["--device", "cpu", "--output_dir", str(tmp_path / "cpu")], evaluators=evaluators())
    with ieee_fp32():
        gpu = test_main(common + ["--device", "cuda", "--if_not_amp", "--output_dir", str(tmp_path / "gpu")],
                        evaluators=evaluators())
    (row_c,), (row_g,) = cpu["rows"], gpu["rows"]
    assert row_c.keys() == row_g.keys() and row_c["count"] == 8
    for key, value in row_c.items():
        if isinstance(value, float):
            assert row_g[key] == pytest.approx(value, abs=1e-4, nan_ok=True), key
        else:
            assert row_g[key] == value, key


# ------------------------------------------------------------------------------ sliding window
def test_sliding_window_on_cuda_equals_cpu():
    """Tiles cut, padded and blended on the GPU give the CPU's mask and label within 1e-5."""
    from IMDLBenCo.engine.builders import forward
    from IMDLBenCo.engine.sliding import black_pixel, sliding_shape, sliding_window_forward

    torch.manual_seed(0)
    model = EngineTinyNet(width=6).eval()
    g = torch.Generator().manual_seed(5)
    h, w = 150, 203  # 3×4 tiles of 64 with overlap 0.25, the last row and column padded
    assert sliding_shape(h, w, SIZE, 0.25) == (3, 4)
    batch = {"image": torch.randn(2, 3, h, w, generator=g), "mask": (torch.rand(2, 1, h, w, generator=g) > 0.8).float(),
             "label": torch.tensor([1, 0])}
    results = {}
    with torch.no_grad(), ieee_fp32():
        for device in ("cpu", "cuda"):
            net = model.to(device)
            on = {k: v.to(device) for k, v in batch.items()}
            results[device] = sliding_window_forward(lambda tile, net=net: forward(net, tile), on, SIZE, 0.25,
                                                     black_pixel(torch.device(device)))
    cpu, gpu = results["cpu"], results["cuda"]
    assert gpu["pred_mask"].device.type == "cuda" and gpu["pred_mask"].shape == (2, 1, h, w)
    assert torch.allclose(gpu["pred_mask"].cpu(), cpu["pred_mask"], atol=1e-5, rtol=0), \
        (gpu["pred_mask"].cpu() - cpu["pred_mask"]).abs().max()
    assert torch.allclose(gpu["pred_label"].cpu(), cpu["pred_label"], atol=1e-5, rtol=0)
    assert torch.allclose(gpu["backward_loss"].cpu(), cpu["backward_loss"], atol=1e-5, rtol=0)
