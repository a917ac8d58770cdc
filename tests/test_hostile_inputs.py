"""Hostile and odd inputs to the engine (issue 21): each gives one message or works."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from IMDLBenCo.errors import CheckpointError, DatasetError, UsageError

REPO = Path(__file__).resolve().parents[1]


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("size", [(13000, 13000), (40000, 3000), (30000, 30000)])
def test_an_image_whose_header_claims_a_huge_size_is_not_decoded(tmp_path, size):
    from IMDLBenCo.datasets.io import load_rgb, try_open_image

    bomb = _png_claiming(tmp_path / "bomb.png", *size)
    assert bomb.stat().st_size < 2000
    img, reason = try_open_image(str(bomb))
    assert img is None and "max_pixels" in reason and "not decoded" in reason
    with pytest.raises(DatasetError, match="max_pixels"):
        load_rgb(str(bomb))
    if size[0] * size[1] < 170_000_000:  # below Pillow's own ceiling, --max_pixels decides
        img, reason = try_open_image(str(bomb), max_pixels=size[0] * size[1] + 1)  # allowed: fails as truncated
        assert img is None and "max_pixels" not in reason


def test_predict_skips_and_lists_unreadable_images_and_writes_the_rest(tmp_path, capsys):
    import IMDLBenCo.demo.model  # noqa: F401
    from IMDLBenCo.engine import save_checkpoint
    from IMDLBenCo.engine.builders import build_model
    from IMDLBenCo.engine.predict import predict_main

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)).save(photos / f"ok{i}.png")
    (photos / "text.png").write_text("not an image")
    good = photos / "ok0.png"
    (photos / "cut.png").write_bytes(good.read_bytes()[:60])  # truncated
    _png_claiming(photos / "bomb.png", 20000, 20000)
    save_checkpoint(tmp_path / "w.pth", {"model": build_model("DemoNet", {}).state_dict()})
    out = tmp_path / "photos" / "pred_out"  # inside the input folder
    argv = [str(photos), "--checkpoint_path", str(tmp_path / "w.pth"), "--model", "DemoNet", "--image_size", "32",
            "--device", "cpu", "--num_workers", "0", "--output_dir", str(out)]
    result = predict_main(argv)
    assert sorted(Path(p).name for p in result["skipped"]) == ["bomb.png", "cut.png", "text.png"]
    assert len(result["scores"]) == 5 and len(list((out / "pred").iterdir())) == 5
    assert "skipped" in capsys.readouterr().err
    again = predict_main(argv)  # its own masks and overlays are not inputs
    assert len(again["scores"]) == 5


def test_a_float_tiff_is_read_by_its_value_range(tmp_path):
    from IMDLBenCo.datasets.io import load_rgb

    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    rgb = np.asarray(load_rgb(str(tmp_path / "f.tif")))
    assert rgb.max() == 255 and rgb[0, 0, 0] == 0 and abs(int(rgb[4, 0, 0]) - round(32 / 63 * 255)) <= 1
    Image.fromarray((values * 200).astype(np.int32), mode="I").save(tmp_path / "i.tif")
    assert np.asarray(load_rgb(str(tmp_path / "i.tif"))).max() == 200  # 8-bit values in a 32-bit file


def test_a_checkpoint_that_would_run_code_is_refused_without_unsafe_advice(tmp_path):
    import argparse

    from IMDLBenCo.engine.checkpoint import read_checkpoint

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "PWNED"),))

    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1), "x": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / "evil.pth")
    text = str(info.value)
    assert "system" in text and "weights_only=False" in text and "Do not" in text
    assert "torch.load(p, weights_only=False)" not in text
    assert not (tmp_path / "PWNED").exists()
    # IMDL-BenCo's own checkpoints (args as a Namespace, NumPy scalars) load safely
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1), "v": np.float64(2.0)},
               tmp_path / "ref.pth")
    assert set(read_checkpoint(tmp_path / "ref.pth")) == {"model", "args", "v"}


def test_a_full_file_size_limit_is_one_message(tmp_path):
    script = textwrap.dedent(f"""
        import resource, torch
        from IMDLBenCo.engine.checkpoint import save_checkpoint
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 18, 1 << 18))
        try:
            save_checkpoint({str(tmp_path / 'c.pth')!r}, {{"model": {{"w": torch.zeros(1 << 18)}}}})
        except Exception as err:
            print(type(err).__name__, err)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.stdout.startswith("OutputWriteError") and "File too large" in out.stdout and "ulimit" in out.stdout
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_an_unknown_timm_encoder_is_one_message():
    from IMDLBenCo.engine.builders import build_model

    with pytest.raises(UsageError, match=r"--encoder_name resnet5O: timm has no model.*resnet50"):
        build_model("resnet", {"encoder_name": "resnet5O"})


@pytest.fixture
def cam_data(tmp_path):
    from IMDLBenCo.datasets.synth import make_synthetic_dataset

    info = make_synthetic_dataset(str(tmp_path / "synth"), n=12, size=32, seed=3)
    return Path(info["json"]["test"])


def _odd_layers_model():
    import torch.nn as nn

    from IMDLBenCo.registry import MODELS

    class OddLayers(nn.Module):
        """A stem conv, a Conv1d over the flattened positions, a channels-last permute."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.seq = nn.Conv1d(4, 4, 1)
            self.last = nn.Identity()
            self.head = nn.Conv2d(4, 1, 1)

        def forward(self, image, mask, label, **kw):
            x = torch.relu(self.stem(image))
            b, c, h, w = x.shape
            x = self.seq(x.flatten(2)).reshape(b, c, h, w)
            x = self.last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            logits = self.head(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, mask)
            return {"backward_loss": loss, "pred_mask": torch.sigmoid(logits), "pred_label": None, "visual_loss": {},
                    "visual_image": {}}

    MODELS.register_module(name="OddLayers", force=True)(OddLayers)
    return OddLayers


@pytest.mark.parametrize("layer, layout", [("seq", "B,C,N"), ("last", "B,H,W,C")])
def test_cam_reads_one_d_and_channels_last_layers_by_their_layout(tmp_path, cam_data, layer, layout):
    pytest.importorskip("pytorch_grad_cam")
    from IMDLBenCo.engine import save_checkpoint
    from IMDLBenCo.engine.cam import cam_main

    net = _odd_layers_model()()
    save_checkpoint(tmp_path / "odd.pth", {"model": net.state_dict()})
    out = tmp_path / f"cam_{layer}"
    cam = cam_main(["--model", "OddLayers", "--checkpoint_path", str(tmp_path / "odd.pth"), "--test_data_path",
                    str(cam_data), "--image_size", "32", "--if_resizing", "--device", "cpu", "--num_workers", "0",
                    "--output_dir", str(out), "--target_layer", layer])
    assert cam["reshape_tokens"]["layout"] == layout
    assert len(cam["records"]) == len(json.loads(cam_data.read_text())) and all((out / r["cam_path"]).is_file() for r in cam["records"])


def test_cam_empty_target_layer_is_named_as_such(tmp_path, cam_data):
    pytest.importorskip("pytorch_grad_cam")
    from IMDLBenCo.engine import save_checkpoint
    from IMDLBenCo.engine.cam import cam_main

    net = _odd_layers_model()()
    save_checkpoint(tmp_path / "odd.pth", {"model": net.state_dict()})
    with pytest.raises(UsageError, match="is empty"):
        cam_main(["--model", "OddLayers", "--checkpoint_path", str(tmp_path / "odd.pth"), "--test_data_path",
                  str(cam_data), "--image_size", "32", "--if_resizing", "--device", "cpu", "--num_workers", "0",
                  "--output_dir", str(tmp_path / "c"), "--target_layer", ""])


def test_the_demo_checkpoint_is_found_without_import_and_options_come_from_its_run(tmp_path):
    """A checkpoint written by train.py names its model and options: predict and cam rebuild it."""
    import IMDLBenCo.demo.model  # noqa: F401  (registers DemoNet for the training run)
    from IMDLBenCo.datasets.synth import make_synthetic_dataset
    from IMDLBenCo.engine import train_main
    from IMDLBenCo.engine.predict import config_from_checkpoint

    info = make_synthetic_dataset(str(tmp_path / "synth"), n=8, size=32, seed=1)
    train_main(["--model", "DemoNet", "--width", "6", "--data_path", info["json"]["train"], "--image_size", "32",
                "--if_resizing", "--epochs", "1", "--batch_size", "2", "--accum_iter", "1", "--warmup_epochs", "0",
                "--device", "cpu", "--num_workers", "0", "--output_dir", str(tmp_path / "run")], train_transform=False)
    ckpt = tmp_path / "run" / "checkpoint-0.pth"
    assert torch.load(ckpt, weights_only=True)["model_module"] == "IMDLBenCo.demo.model"
    config = config_from_checkpoint(str(ckpt))
    assert config["model"] == "DemoNet" and config["width"] == 6 and config["image_size"] == 32


def test_max_pixels_is_checked_before_a_run_and_while_loading(tmp_path):
    from engine_support import MeanF1, base_args, make_mani

    from IMDLBenCo.engine import train_main

    data = make_mani(tmp_path / "data", 3, seed=1)
    bomb = _png_claiming(data / "Tp" / "img01.png", 12000, 12000)
    Image.new("L", (12000 // 100, 120)).save(data / "Gt" / "img01_gt.png")  # a mask of another size
    with pytest.raises(DatasetError, match=r"img01\.png.*max_pixels"):
        train_main(base_args(tmp_path, data, epochs=1), evaluators=[MeanF1()], train_transform=False)
    bomb.unlink()
    (data / "Gt" / "img01_gt.png").unlink()
    with pytest.raises(DatasetError, match="max_pixels"):  # a limit below the data's own images
        train_main(base_args(tmp_path, data, epochs=1, max_pixels=100), evaluators=[MeanF1()], train_transform=False)
    with pytest.raises(DatasetError, match="max_pixels"):  # the loader checks too (no header check first)
        train_main(base_args(tmp_path, data, epochs=1, max_pixels=100, skip_data_check=True, overwrite=True),
                   evaluators=[MeanF1()], train_transform=False)
