"""Class-activation maps: `benco cam` / test_cam.py (IMDLBenCo.engine.cam) and their place in the report.

Small and seeded: a 20-image synthetic dataset at 64 px (its 3-image test split), DemoNet with
random weights (saved as {"model": state_dict} by the project's checkpoint writer), tiny
backbones (segformer mit_b0, a one-block ViT-Tiny at 32 px).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

import IMDLBenCo.demo.model  # noqa: F401  registers DemoNet
from IMDLBenCo.cli import main as benco
from IMDLBenCo.errors import UsageError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture
def grad_cam():
    return pytest.importorskip("pytorch_grad_cam")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from IMDLBenCo.datasets.synth import make_synthetic_dataset

    root = tmp_path_factory.mktemp("cam_data")
    info = make_synthetic_dataset(str(root / "synth"), n=20, size=64, seed=3)
    return Path(info["json"]["test"])  # a JsonDataset of 3 images: splice, copymove, authentic


def _checkpoint(folder: Path, model: str, options=()) -> Path:
    """A randomly initialised ``model`` (built from its command-line options) saved as {"model": sd}."""
    from IMDLBenCo.engine import save_checkpoint
    from IMDLBenCo.engine.arguments import parse_script_args
    from IMDLBenCo.engine.builders import build_model

    args, kwargs = parse_script_args("test_save_images", ["--model", model, *options, "--checkpoint_path", "x",
                                                          "--test_data_path", "x", "--if_resizing"])
    torch.manual_seed(0)
    net = build_model(model, kwargs)
    path = folder / f"{model}.pth"
    save_checkpoint(path, {"model": net.state_dict()})
    return path


@pytest.fixture(scope="module")
def demo_ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("cam_ckpt"), "DemoNet")


def _argv(data: Path, ckpt: Path, out: Path, model=("--model", "DemoNet"), size="48", sizing="--if_resizing", extra=()):
    return [*model, "--checkpoint_path", str(ckpt), "--test_data_path", str(data), "--image_size", size, sizing,
            "--device", "cpu", "--num_workers", "0", "--output_dir", str(out), *extra]


def _records(out: Path):
    cam = json.loads((out / "cam.json").read_text())
    return cam, cam["records"]


def _save_and_cam(out: Path, data: Path, ckpt: Path, size: str, sizing: str):
    """test_save_images then cam into the same folder (as the launchers of `benco init` do)."""
    from IMDLBenCo.engine import save_images_main
    from IMDLBenCo.engine.cam import cam_main

    save_images_main(_argv(data, ckpt, out, size=size, sizing=sizing))
    return cam_main(_argv(data, ckpt, out, size=size, sizing=sizing))


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, data, demo_ckpt):
    pytest.importorskip("pytorch_grad_cam")
    out = tmp_path_factory.mktemp("cam_shared") / "run"
    return out, _save_and_cam(out, data, demo_ckpt, "48", "--if_resizing")


@pytest.mark.parametrize("sizing", ["--if_resizing", "--if_padding"])
def test_cam_next_to_saved_masks_at_original_size(tmp_path, data, demo_ckpt, shared_run, sizing):
    """Default layer chosen and recorded; heat maps and overlays at the original size beside pred/."""
    if sizing == "--if_resizing":  # 64 px images resized to 48
        out, result = shared_run
    else:  # 64 px images zero-padded to 80
        out = tmp_path / "run"
        result = _save_and_cam(out, data, demo_ckpt, "80", sizing)
    cam, records = _records(out)
    assert cam["target_layer"] == "dec1" and cam["target_layer_auto"] is True  # DemoNet's last decoder block
    assert cam["method"] == "gradcam" and cam["target"] == "mask" and cam["layer_output_shape"][1] == 16
    assert result["records"] == records and len(records) == 3
    preds = {p["name"]: p for p in json.loads((out / "predictions.json").read_text())}
    assert set(preds) == {r["name"] for r in records}
    for r in records:
        assert r["target_layer"] == "dec1" and r["method"] == "gradcam" and r["target"] == "mask"
        stem = preds[r["name"]]["pred_path"][len("pred/"):-len(".png")]  # the saved mask's unique name
        assert r["cam_path"] == f"cam/{stem}.png" and r["overlay_path"] == f"cam/{stem}_overlay.jpg"
        with Image.open(r["image_path"]) as im:
            original = im.size
        with Image.open(out / r["cam_path"]) as heat:
            assert heat.mode == "L" and heat.size == original == (64, 64)
            assert heat.getextrema()[1] == 255  # scaled over the image's own region
        with Image.open(out / r["overlay_path"]) as overlay:
            assert overlay.format == "JPEG" and overlay.mode == "RGB" and overlay.size == original
    # the folder stays the save-images run's: its config.json is not replaced
    assert json.loads((out / "config.json").read_text())["script"] == "test_save_images"


def test_explicit_layer_method_and_image_folder(tmp_path, data, demo_ckpt, grad_cam):
    from IMDLBenCo.engine.cam import cam_main

    out = tmp_path / "run"
    folder = data.parent / "test" / "Tp"  # a plain folder of images, no ground truth
    cam_main(_argv(folder, demo_ckpt, out, extra=["--target_layer", "enc3", "--cam_method", "gradcam++"]))
    cam, records = _records(out)
    assert cam["target_layer"] == "enc3" and cam["target_layer_auto"] is False and cam["method"] == "gradcam++"
    assert len(records) == len(os.listdir(folder)) and all(r["mask_path"] is None for r in records)
    assert all((out / r["overlay_path"]).is_file() for r in records)
    # a folder of its own gets a config.json saying what wrote it
    assert json.loads((out / "config.json").read_text())["script"] == "test_cam"


def test_user_mistakes_are_one_line_with_exit_status_2(tmp_path, data, demo_ckpt, grad_cam, capsys):
    argv = ["cam", "--import", "IMDLBenCo.demo.model",
            *_argv(data, demo_ckpt, tmp_path / "a", extra=["--target_layer", "dec9"])]
    assert benco(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benco cam: --target_layer dec9: DemoNet has no module of this name")
    assert "close names: " in err[0] and "dec1" in err[0]
    from IMDLBenCo.engine.cam import cam_main

    with pytest.raises(UsageError, match=r"label_head: its output has shape \(1, 1\)"):  # not 4-D, not tokens
        cam_main(_argv(data, demo_ckpt, tmp_path / "b", extra=["--target_layer", "label_head"]))
    # a layer the target does not reach: segformer's mask decoder for its label target
    options = ("--model", "segformer", "--encoder_name", "mit_b0", "--if_predict_label")
    ckpt = _checkpoint(tmp_path, "segformer", options[2:])
    with pytest.raises(UsageError, match="the label target does not depend on this layer"):
        cam_main(_argv(data, ckpt, tmp_path / "c", model=options, size="64",
                       extra=["--cam_target", "label", "--target_layer", "deconv_model.3"]))


def test_label_target_with_a_label_head(tmp_path, data, grad_cam):
    from IMDLBenCo.engine.cam import cam_main

    options = ("--model", "segformer", "--encoder_name", "mit_b0", "--if_predict_label")
    ckpt = _checkpoint(tmp_path, "segformer", options[2:])
    cam_main(_argv(data, ckpt, tmp_path / "run", model=options, size="64", extra=["--cam_target", "label"]))
    cam, records = _records(tmp_path / "run")
    # the label head pools the encoder's last stage: the layer is there, not in the mask decoder
    assert cam["target"] == "label" and cam["target_layer"].startswith("block4.") and cam["target_layer_auto"]
    assert all((tmp_path / "run" / r["cam_path"]).is_file() for r in records)
    without = ("--model", "segformer", "--encoder_name", "mit_b0")
    (tmp_path / "x").mkdir()
    ckpt2 = _checkpoint(tmp_path / "x", "segformer", without[2:])
    with pytest.raises(UsageError, match="returned no pred_label"):
        cam_main(_argv(data, ckpt2, tmp_path / "run2", model=without, size="64", extra=["--cam_target", "label"]))


def test_vit_tokens_are_reshaped(tmp_path, data, grad_cam):
    from IMDLBenCo.engine.cam import cam_main

    options = ("--model", "vit", "--encoder_name", "vit_tiny_patch16_224", "--depth", "1")
    ckpt = _checkpoint(tmp_path, "vit", [*options[2:], "--image_size", "32"])
    out = tmp_path / "run"
    cam_main(_argv(data, ckpt, out, model=options, size="32", extra=["--target_layer", "blocks.0"]))
    cam, records = _records(out)
    # 32 px / patch 16 = a 2x2 grid: 5 tokens = 1 class token + 4, reshaped to (B, 192, 2, 2)
    assert cam["layer_output_shape"] == [1, 5, 192]
    assert cam["reshape_tokens"] == {"prefix_tokens": 1, "grid": [2, 2], "layout": "B,N,C"}
    with Image.open(out / records[0]["cam_path"]) as heat:
        assert heat.size == (64, 64)
    with pytest.raises(UsageError, match="is not a square grid"):
        cam_main(_argv(data, ckpt, tmp_path / "b", model=options, size="32",
                       extra=["--target_layer", "blocks.0", "--reshape_tokens", "2"]))
    with pytest.raises(UsageError, match="--reshape_tokens off"):
        cam_main(_argv(data, ckpt, tmp_path / "c", model=options, size="32",
                       extra=["--target_layer", "norm", "--reshape_tokens", "off"]))


def test_token_grid_and_names():
    from IMDLBenCo.engine.cam import cam_paths, is_feature_map, token_grid

    grid = token_grid("norm", (2, 1 + 16, 8), "auto")
    tokens = torch.arange(2 * 17 * 8, dtype=torch.float32).reshape(2, 17, 8)
    fmap = grid(tokens)
    assert fmap.shape == (2, 8, 4, 4) and torch.equal(fmap[1, :, 0, 1], tokens[1, 2])  # class token dropped
    assert token_grid("x", (1, 16, 8), "auto").prefix == 0 and token_grid("x", (1, 5 + 16, 8), 5).side == 4
    assert not is_feature_map((1, 3, 17, 64), 1, (64, 64))  # attention heads (B, heads, N, d)
    assert is_feature_map((1, 16, 32, 32), 1, (64, 64)) and not is_feature_map((1, 1, 32, 32), 1, (64, 64))
    assert cam_paths(["a.jpg", "a.png", "b.png"]) == {
        "a.jpg": ("cam/a.jpg.png", "cam/a.jpg_overlay.jpg"), "a.png": ("cam/a.png.png", "cam/a.png_overlay.jpg"),
        "b.png": ("cam/b.png", "cam/b_overlay.jpg")}


def test_report_shows_the_cam_overlay(tmp_path, data, demo_ckpt, shared_run):
    import shutil

    from IMDLBenCo.engine.cam import cam_main
    from IMDLBenCo.report import build_report

    out = tmp_path / "run"
    shutil.copytree(shared_run[0], out)
    cam_json = (out / "cam.json").read_text()
    (out / "cam.json").unlink()
    shutil.rmtree(out / "cam")
    html = build_report([out], out=tmp_path / "plain.html").read_text()
    assert "class activation" not in html  # no cam.json, no cam/: no column
    (out / "cam.json").write_text(cam_json)
    shutil.copytree(shared_run[0] / "cam", out / "cam")
    page = build_report([out], out=tmp_path / "report.html")
    html = page.read_text()
    assert "class activation (CAM)" in html and "gradcam, layer dec1 (chosen automatically), target mask" in html
    cams = sorted((tmp_path / "report_files").glob("*_cam.png"))
    assert len(cams) == 3 and all(f'report_files/{p.name}"' in html for p in cams)
    # cam/ without cam.json: the overlays are still found beside the masks
    (out / "cam.json").unlink()
    html = build_report([out], out=tmp_path / "nojson.html").read_text()
    assert "no cam.json" in html and len(list((tmp_path / "nojson_files").glob("*_cam.png"))) == 3
    # a CAM run in a folder of its own is a run folder too: its samples come from cam.json
    alone = tmp_path / "alone"
    cam_main(_argv(data, demo_ckpt, alone, extra=["--cam_method", "eigencam"]))
    html = build_report([alone], out=tmp_path / "alone.html").read_text()
    assert "test_cam, model DemoNet" in html and "eigencam, layer dec1" in html
    assert len(list((tmp_path / "alone_files").glob("*_cam.png"))) == 3


def test_missing_grad_cam_is_one_line(tmp_path, data, demo_ckpt, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # import fails as if not installed
    assert benco(["cam", *_argv(data, demo_ckpt, tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install grad-cam" in err[0]
    assert not (tmp_path / "out").exists()  # nothing started


def test_help_lists_cam_and_script_options(capsys):
    with pytest.raises(SystemExit) as done:
        benco(["cam", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--target_layer" in text and "--cam_method" in text and "--checkpoint_path" in text


SCRIPT = textwrap.dedent("""
    import IMDLBenCo.demo.model  # registers DemoNet
    from IMDLBenCo.engine import cam_main
    cam_main({argv!r})
""")


@pytest.mark.dist
def test_two_processes_write_each_image_once(tmp_path, data, demo_ckpt, grad_cam):
    from engine_support import run_in_group

    out = tmp_path / "run"
    script = tmp_path / "cam_run.py"
    script.write_text(SCRIPT.format(argv=_argv(data, demo_ckpt, out, extra=["--test_batch_size", "1"])))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    run_in_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
                 tmp_path, env, timeout=240)
    cam, records = _records(out)
    names = [r["name"] for r in records]
    assert len(names) == 3 == len(set(names))  # every image once, in dataset order, over both ranks
    files = sorted(p.name for p in (out / "cam").iterdir())  # no temporary file left behind either
    assert files == sorted([Path(r["cam_path"]).name for r in records] + [Path(r["overlay_path"]).name for r in records])
    assert json.loads((out / "config.json").read_text())["env"]["world_size"] == 2
