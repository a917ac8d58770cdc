"""pred_label from pred_mask, sliding-window inference, and ``benco predict`` (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from engine_support import MODEL
from PIL import Image

from IMDLBenCo.engine.sliding import sliding_window_forward, tile_starts
from IMDLBenCo.modules.label_from_mask import attach_label_from_mask, label_from_mask
from IMDLBenCo.registry import MODELS


# ------------------------------------------------------------------------------ label from mask
def _reference_label(mask: np.ndarray, mode: str, k: int, valid=None) -> float:
    values = mask.ravel() if valid is None else mask.ravel()[valid.ravel() > 0]
    if values.size == 0:
        return 0.0
    if mode == "max":
        return float(values.max())
    return float(np.sort(values)[::-1][:k].mean())


@pytest.mark.parametrize("mode,k", [("max", 1), ("topk", 1), ("topk", 7), ("topk", 5000)])
def test_label_from_mask_matches_a_direct_computation(mode, k):
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 1, 20, 30, generator=gen)
    valid = torch.zeros(3, 1, 20, 30)
    valid[0] = 1
    valid[1, :, :5, :4] = 1  # 20 valid pixels: fewer than k=5000
    got = label_from_mask(mask, mode, k, valid)
    for i in range(3):
        want = _reference_label(mask[i, 0].numpy(), mode, k, valid[i, 0].numpy())
        assert got[i].item() == pytest.approx(want, abs=1e-6)
    assert got[2].item() == 0.0  # no valid pixel
    plain = label_from_mask(mask, mode, k)
    assert plain[2].item() == pytest.approx(_reference_label(mask[2, 0].numpy(), mode, k), abs=1e-6)


def test_label_from_mask_refuses_bad_rules():
    with pytest.raises(ValueError, match="mode"):
        label_from_mask(torch.zeros(1, 1, 2, 2), "mean")
    with pytest.raises(ValueError, match="topk"):
        label_from_mask(torch.zeros(1, 1, 2, 2), "topk", 0)


def test_hook_adds_pred_label_and_leaves_the_model_alone():
    model = MODELS.get(MODEL)()
    keys = list(model.state_dict())
    handle = attach_label_from_mask(model, "max")
    batch = {"image": torch.randn(2, 3, 16, 16), "mask": torch.zeros(2, 1, 16, 16), "label": torch.zeros(2)}
    model.eval()
    out = model(**batch)
    assert torch.allclose(out["pred_label"], out["pred_mask"].amax(dim=(1, 2, 3)))
    assert list(model.state_dict()) == keys  # checkpoints unchanged
    handle.remove()
    assert not torch.allclose(model(**batch)["pred_label"], out["pred_mask"].amax(dim=(1, 2, 3)))


# ------------------------------------------------------------------------------ sliding window
class Pixelwise(nn.Module):
    """Each output pixel depends on its own input pixel only: tiles must reproduce the whole."""

    def forward(self, image, mask=None, **kwargs):
        seen = kwargs.get("seen")
        if seen is not None:
            seen.append((tuple(image.shape), tuple(kwargs["shape"][0].tolist())))
        return {"pred_mask": torch.sigmoid(image.sum(dim=1, keepdim=True)),
                "pred_label": torch.sigmoid(image.mean(dim=(1, 2, 3))), "backward_loss": image.mean()}


@pytest.mark.parametrize("h,w", [(64, 64), (40, 50), (150, 97), (200, 64)])
def test_tiles_cover_the_image_on_the_8_pixel_grid(h, w):
    for length in (h, w):
        starts = tile_starts(length, 64, 0.25)
        assert starts[0] == 0 and starts[-1] + 64 >= length
        assert all(s % 8 == 0 for s in starts)
        assert all(b - a <= 64 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("tiles_per_call", [1, 3, None])
@pytest.mark.parametrize("h,w,overlap", [(150, 97, 0.25), (64, 200, 0.5), (40, 50, 0.25), (129, 129, 0.0)])
def test_sliding_window_reproduces_a_pixelwise_model(h, w, overlap, tiles_per_call):
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, h, w, generator=gen)
    model = Pixelwise()
    seen = []
    batch = {"image": image, "mask": torch.zeros(2, 1, h, w), "DCT_coef": torch.zeros(2, h, w), "seen": seen,
             "qtables": torch.ones(2, 8, 8)}
    out = sliding_window_forward(lambda b: model(**b), batch, 64, overlap, torch.zeros(3),
                                 tiles_per_call=tiles_per_call)
    whole = model(image)
    assert out["pred_mask"].shape == (2, 1, h, w)
    torch.testing.assert_close(out["pred_mask"], whole["pred_mask"], rtol=0, atol=1e-6)
    tiles = len(tile_starts(h, 64, overlap)) * len(tile_starts(w, 64, overlap))
    per_call = tiles if tiles_per_call is None else tiles_per_call  # the default takes all of these at once
    # every tile is S×S; a call holds up to tiles_per_call tiles of each of the 2 images
    assert [shape for shape, _ in seen] == [(2 * min(per_call, tiles - i), 3, 64, 64) for i in range(0, tiles, per_call)]
    assert out["pred_label"].shape == (2,)


def test_sliding_window_pads_like_the_dataset():
    """A tile past the image holds the normalised black of --if_padding and a shape_mask."""
    from IMDLBenCo.engine.sliding import black_pixel

    got = {}

    def call(b):
        got.setdefault("tiles", []).append(b)
        return {"pred_mask": torch.zeros(1, 1, 64, 64)}

    sliding_window_forward(call, {"image": torch.ones(1, 3, 40, 50)}, 64, 0.25, black_pixel(torch.device("cpu")))
    (tile,) = got["tiles"]
    assert torch.allclose(tile["image"][0, :, 50, 60], black_pixel(torch.device("cpu")))
    assert tile["shape_mask"][0, 0, :40, :50].all() and tile["shape_mask"].sum() == 40 * 50
    assert tile["shape"].tolist() == [[40, 50]]


# ------------------------------------------------------------------------------ scripts and predict
def _photos(folder: Path) -> dict:
    """JPEGs and PNGs of different sizes, two larger than the 64-px input."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    (folder / "sub").mkdir()
    sizes = {"a.jpg": (48, 40), "b.png": (150, 97), "sub/c.jpg": (64, 64), "sub/d.png": (70, 200)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return sizes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of the engine's tiny model trained one epoch at 64 px, and its data."""
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    root = tmp_path_factory.mktemp("predict")
    info = synth.make_synthetic_dataset(str(root / "data"), n=6, size=64, seed=0)
    engine.train_main(["--model", MODEL, "--data_path", info["splits"]["train"], "--output_dir", str(root / "run"),
                       "--epochs", "1", "--batch_size", "2", "--image_size", "64", "--if_resizing",
                       "--accum_iter", "1", "--warmup_epochs", "0", "--num_workers", "0", "--device", "cpu",
                       "--if_predict_label"])
    return {"root": root, "checkpoint": root / "run" / "checkpoint-0.pth", "test": info["splits"]["test"]}


def test_predict_folder_of_mixed_images(trained, tmp_path):
    from IMDLBenCo.engine.predict import predict_main

    sizes = _photos(tmp_path / "photos")
    out = tmp_path / "pred_out"
    # the model, its options and --image_size come from the checkpoint's run
    res = predict_main([str(tmp_path / "photos"), "--checkpoint_path", str(trained["checkpoint"]),
                        "--output_dir", str(out), "--device", "cpu", "--num_workers", "0"])
    scores = json.loads((out / "scores.json").read_text())
    assert scores == res["scores"] and set(scores) == {"a.jpg", "b.png", "c.jpg", "d.png"}
    config = json.loads((out / "config.json").read_text())
    assert config["args"]["model"] == MODEL and config["args"]["sliding_window"] is True
    assert config["args"]["image_size"] == 64
    for rel, (h, w) in sizes.items():
        e = scores[Path(rel).name]
        mask = np.asarray(Image.open(out / e["mask"]))
        assert mask.shape == (h, w) and mask.dtype == np.uint8
        assert Image.open(out / e["overlay"]).size == (w, h)
        assert (e["height"], e["width"]) == (h, w)
        assert e["max_probability"] == pytest.approx(mask.max() / 255, abs=1e-4)
        assert 0 <= e["pred_label"] <= 1 and e["label_source"] == "model"


def test_predict_label_from_mask_and_resizing(trained, tmp_path):
    from IMDLBenCo.engine.predict import predict_main

    _photos(tmp_path / "photos")
    out = tmp_path / "o"
    predict_main([str(tmp_path / "photos" / "b.png"), str(tmp_path / "photos" / "sub"), "--model", MODEL,
                  "--checkpoint_path", str(trained["checkpoint"]), "--image_size", "64", "--if_resizing",
                  "--label_from_mask", "max", "--output_dir", str(out), "--device", "cpu", "--num_workers", "0"])
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == {"b.png", "c.jpg", "d.png"}
    for e in scores.values():
        assert e["label_source"] == "max"
        # the label is the highest pixel of the 64x64 prediction; the saved PNG is that map resized
        assert abs(e["pred_label"] - e["max_probability"]) < 0.05


@pytest.mark.parametrize("argv,message", [
    ([], "at least one image"),
    (["missing_folder"], "no such file"),
    (["notes.txt"], "not an image"),
    (["."], "--checkpoint_path"),
])
def test_predict_mistakes_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    from IMDLBenCo.cli import main

    (tmp_path / "notes.txt").write_text("x")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_test_and_save_images_with_sliding_window(trained, tmp_path):
    """test.py and test_save_images.py on images larger than --image_size, slid."""
    from engine_support import MeanF1

    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "big"), n=6, size=150, seed=3)
    res = engine.test_main(["--model", MODEL, "--checkpoint_path", str(trained["checkpoint"]),
                            "--test_data_path", info["splits"]["test"], "--image_size", "64", "--sliding_window",
                            "--output_dir", str(tmp_path / "eval"), "--device", "cpu", "--num_workers", "0",
                            "--test_batch_size", "4", "--label_from_mask", "topk", "--label_topk", "10"],
                           evaluators=[MeanF1()])
    assert res  # metrics were computed on the 150-px masks
    saved = engine.save_images_main(["--model", MODEL, "--checkpoint_path", str(trained["checkpoint"]),
                                     "--test_data_path", info["splits"]["test"], "--image_size", "64",
                                     "--sliding_window", "--output_dir", str(tmp_path / "save"), "--device", "cpu",
                                     "--num_workers", "0"])
    for rec in saved["predictions"]:
        assert np.asarray(Image.open(tmp_path / "save" / rec["pred_path"])).shape == (150, 150)


def test_sliding_window_is_refused_in_training(capsys):
    from IMDLBenCo import engine

    with pytest.raises(SystemExit):
        engine.train_main(["--model", MODEL, "--data_path", "x", "--sliding_window"])
    assert "--sliding_window" in capsys.readouterr().err


def test_predict_says_what_the_model_is_first_and_in_scores(tmp_path, capsys):
    """A checkpoint that carries a note (benco demo's) has it printed first and kept in scores.json."""
    import json

    import numpy as np
    from PIL import Image

    import IMDLBenCo.demo.model  # noqa: F401
    from IMDLBenCo.engine import save_checkpoint
    from IMDLBenCo.engine.builders import build_model
    from IMDLBenCo.engine.predict import predict_main

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "x.png")
    save_checkpoint(tmp_path / "w.pth", {"model": build_model("DemoNet", {}).state_dict(),
                                         "note": "a demo model, not a detector for real photos"})
    predict_main([str(tmp_path / "x.png"), "--checkpoint_path", str(tmp_path / "w.pth"), "--model", "DemoNet",
                  "--image_size", "32", "--device", "cpu", "--num_workers", "0", "--output_dir", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert out.lstrip().startswith("note: a demo model")
    assert json.loads((tmp_path / "p" / "scores.json").read_text())["_note"].startswith("a demo model")
