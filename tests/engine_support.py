"""Tiny model, data and evaluator for the engine tests (imported by tests and by torchrun workers)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from IMDLBenCo.registry import MODELS

MODEL = "EngineTinyNet"


@MODELS.register_module(name=MODEL, force=True)
class EngineTinyNet(nn.Module):
    """Two convolutions and a BatchNorm; mask and label heads; obeys the output contract."""

    def __init__(self, width: int = 4, broken: str = "") -> None:
        super().__init__()
        self.broken = broken
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 1, 3, padding=1)
        self.drop = nn.Dropout(0.1)

    def forward(self, image, mask, label, *args, **kwargs) -> dict[str, Any]:
        logits = self.conv2(self.drop(F.relu(self.bn(self.conv1(image)))))
        label_logit = logits.mean(dim=(1, 2, 3))
        seg_loss = F.binary_cross_entropy_with_logits(logits, mask)
        cls_loss = F.binary_cross_entropy_with_logits(label_logit, label.float())
        loss = seg_loss + cls_loss
        pred_mask, pred_label = torch.sigmoid(logits), torch.sigmoid(label_logit)
        if self.broken == "logits":
            pred_mask = logits * 10
        elif self.broken == "label_b1":
            pred_label = pred_label[:, None]
        elif self.broken == "nan":
            loss = loss * float("nan")
        return {
            "backward_loss": loss,
            "pred_mask": pred_mask,
            "pred_label": pred_label,
            "visual_loss": {"seg_loss": seg_loss, "cls_loss": cls_loss},
            "visual_image": {"logits": logits},
        }


@MODELS.register_module(name="FailingTinyNet", force=True)
class FailingTinyNet(EngineTinyNet):
    """EngineTinyNet whose forward raises a DatasetError on rank ``fail_rank`` at its
    ``fail_call``-th call in train (``phase="train"``) or eval mode (``phase="test"``)."""

    def __init__(self, fail_rank: int = 1, fail_call: int = 2, phase: str = "train") -> None:
        super().__init__()
        self.fail_rank, self.fail_call, self.phase = fail_rank, fail_call, phase
        self.calls = 0

    def forward(self, image, mask, label, *args, **kwargs):
        if self.training == (self.phase == "train"):
            self.calls += 1
        if int(os.environ.get("RANK", "0")) == self.fail_rank and self.calls == self.fail_call:
            from IMDLBenCo.datasets.io import DatasetError

            raise DatasetError(f"/data/Tp/broken.png: cannot be read (raised on rank {self.fail_rank})")
        return super().forward(image, mask, label)


class MeanF1:
    """A stand-in evaluator (per-image pixel F1 averaged, exact under any process count)."""

    name = "mean_f1"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = torch.zeros(2, dtype=torch.float64)

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        pred = (outputs["pred_mask"] > 0.5).double()
        mask = batch["mask"].double()
        tp = (pred * mask).sum((1, 2, 3))
        f1 = 2 * tp / (pred.sum((1, 2, 3)) + mask.sum((1, 2, 3)) + 1e-8)
        self.total += torch.stack([f1.sum().cpu(), torch.tensor(float(len(f1)), dtype=torch.float64)])

    def compute(self) -> dict[str, float]:
        total = self.total.clone()
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)
        return {"mean_f1": float(total[0] / total[1]), "count": float(total[1])}

    def definitions(self) -> dict[str, str]:
        return {"mean_f1": "test evaluator", "count": "images evaluated"}


def make_mani(root: Path, n: int, size=(40, 48), seed: int = 0, sub: str = "") -> Path:
    """A ManiDataset folder of ``n`` random images with rectangle masks (sizes vary a little)."""
    rng = np.random.default_rng(seed)
    (root / "Tp").mkdir(parents=True, exist_ok=True)
    (root / "Gt").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = size[0] + int(rng.integers(0, 8)), size[1] + int(rng.integers(0, 8))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        mask[y:y + h // 3, x:x + w // 3] = 255
        img[mask > 0] = np.clip(img[mask > 0].astype(int) // 3 + 150, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "Tp" / f"img{i:02d}.png")
        Image.fromarray(mask).save(root / "Gt" / f"img{i:02d}_gt.png")
    return root


def make_json(root: Path, mani: Path, negatives: int = 0) -> Path:
    """A JsonDataset file listing ``mani`` (+ ``negatives`` authentic images)."""
    pairs: list[list[str]] = []
    for tp in sorted((mani / "Tp").iterdir()):
        pairs.append([str(tp), str(mani / "Gt" / (tp.stem + "_gt.png"))])
    for i in range(negatives):
        p = root / f"au{i}.png"
        Image.fromarray(np.full((36, 44, 3), 90 + i, np.uint8)).save(p)
        pairs.append([str(p), "Negative"])
    path = root / "set.json"
    path.write_text(json.dumps(pairs))
    return path


def base_args(tmp: Path, data: Path, **extra: Any) -> list[str]:
    args = ["--model", MODEL, "--data_path", str(data), "--image_size", "32", "--if_resizing",
            "--batch_size", "2", "--test_batch_size", "3", "--epochs", "2", "--accum_iter", "1",
            "--lr", "1e-2", "--warmup_epochs", "1", "--num_workers", "0", "--device", "cpu",
            "--output_dir", str(tmp / "out")]
    for key, value in extra.items():
        args += [f"--{key}"] + ([] if value is True else [str(value)])
    return args


def read_jsonl(path: os.PathLike) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def run_in_group(cmd: list[str], cwd: os.PathLike, env: dict[str, str], timeout: float = 300,
                 check: bool = True):
    """Run ``cmd`` in its own process group and return its stdout (``check=False``: the
    ``CompletedProcess``); a failure shows the output's tail, and on timeout the whole group
    (torchrun workers too) is killed and the test fails."""
    import signal
    import subprocess

    import pytest

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd} timed out after {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    if not check:
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    assert proc.returncode == 0, f"{cmd} failed:\n{out[-3000:]}\n{err[-3000:]}"
    return out
