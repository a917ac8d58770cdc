"""CAT-Net: IMDL-BenCo state dict, forward contract on post-function inputs, options, configuration
files, pretrained streams, the JPEG post-function on real files, and one epoch through the engine.

Most model tests use a narrow configuration (``SMALL``, same code paths, ~1 % of the weights);
the full ``CAT_full`` network is checked against the reference manifest, in one forward/backward
pass at 64x64, and (slow) against the parity fixture.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from zoo_common import build_meta, parse_model_kwargs, train_help
from zoo_manifest import load_manifest, manifest_state_dict

from IMDLBenCo.datasets import ManiDataset, normalize_batch
from IMDLBenCo.model_zoo.cat_net import Cat_Net, cat_net_post_func, convert_authors_checkpoint
from IMDLBenCo.model_zoo.cat_net.config import load_config
from IMDLBenCo.model_zoo.cat_net.network import dct_histogram_volume

pytest.importorskip("jpeglib")

CASIA1 = "CASIA1_Sp_S_NNN_A_ani0041_ani0041_0199.jpg"
NIST16 = "NIST16_NC2016_2564.jpg"
CASIA2_TIF = "CASIA2_Tp_S_NNN_S_N_ani20009_ani20009_02052.tif"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _stage(block, blocks, channels, modules=1):
    return {"NUM_MODULES": modules, "BLOCK": block, "NUM_BLOCKS": blocks, "NUM_CHANNELS": channels}


#: CAT_full's layout with one module of one block per branch and narrow branches
SMALL = {
    "DATASET": {"NUM_CLASSES": 2},
    "TRAIN": {"IGNORE_LABEL": -1},
    "MODEL": {"EXTRA": {
        "FINAL_CONV_KERNEL": 1,
        "STAGE1": _stage("BOTTLENECK", [1], [8]),
        "STAGE2": _stage("BASIC", [1, 1], [8, 16]),
        "STAGE3": _stage("BASIC", [1, 1, 1], [8, 16, 32]),
        "STAGE4": _stage("BASIC", [1, 1, 1, 1], [8, 16, 32, 64]),
        "DC_STAGE3": _stage("BASIC", [1, 1], [16, 32]),
        "DC_STAGE4": _stage("BASIC", [1, 1, 1], [16, 32, 64]),
        "STAGE5": _stage("BASIC", [1, 1, 1, 1], [8, 8, 16, 16]),
    }},
}
RGB_PREFIXES = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition1.", "transition2.", "transition3.",
                "stage2.", "stage3.", "stage4.")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Hundreds of small convolutions: on a busy 2-core machine one intra-op thread is many times
    faster than a thread team waiting for a free core (the slow parity test sets its own)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_cfg(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("catnet_cfg") / "small.json"
    path.write_text(json.dumps(SMALL))
    return str(path)


@pytest.fixture(scope="module")
def small_model(small_cfg):
    torch.manual_seed(0)
    return Cat_Net(cfg_file=small_cfg)


@pytest.fixture(scope="module")
def misc(shared_datasets) -> Path:
    return shared_datasets / "MISC_samples"


# ------------------------------------------------------------------------------ helpers
_N = np.arange(8)
_C = np.sqrt(2 / 8) * np.cos(np.pi * (2 * _N[None, :] + 1) * _N[:, None] / 16)
_C[0] /= np.sqrt(2)  # orthonormal DCT-II matrix


def _idct_luma(coef: np.ndarray, qtable: np.ndarray) -> np.ndarray:
    """Luminance pixels from quantised coefficients in block layout (JPEG's inverse DCT, in float)."""
    h, w = coef.shape
    blocks = coef.astype(np.float64).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3) * qtable
    pixels = np.einsum("ku,ijkl,lv->ijuv", _C, blocks, _C) + 128.0
    return np.clip(pixels.transpose(0, 2, 1, 3).reshape(h, w), 0, 255)


def _pillow_luma(source) -> np.ndarray:
    """The decoder's own luminance plane (Pillow, no colour conversion)."""
    img = Image.open(source)
    img.draft("YCbCr", img.size)
    arr = np.asarray(img).astype(np.float64)
    return arr if arr.ndim == 2 else arr[..., 0]


def _pillow_luma_table(source) -> np.ndarray:
    img = Image.open(source)
    slot = img.layer[0][3] if getattr(img, "layer", None) else 0
    return np.asarray(img.quantization[slot], dtype=np.float32).reshape(8, 8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


#: the authors' way (the default), spelled out
FILE_POST = functools.partial(cat_net_post_func, dct_source="file")


def _sample(root: Path, name: str, **dataset_kwargs) -> dict:
    kwargs = dict(output_size=(512, 512), post_funcs=FILE_POST, defer_normalization=True)
    kwargs.update(dataset_kwargs)
    ds = ManiDataset(str(root), **kwargs)
    return ds[[Path(p).name for p in ds.image_paths].index(name)]


def _content(sample: dict):
    h, w = (int(v) for v in sample["shape"])
    return sample["image"].permute(1, 2, 0).numpy()[:h, :w], sample["DCT_coef"].numpy(), h, w


def _inputs(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)
    batch = {"image": pixels.clone(), "mask": torch.zeros(b, 1, size, size, dtype=torch.uint8)}
    batch["mask"][0, :, 4:20, 8:24] = 1
    normalize_batch(batch)
    batch["DCT_coef"] = torch.randint(-30, 31, (b, size, size), generator=g).float()
    batch["qtables"] = torch.randint(1, 40, (b, 8, 8), generator=g).float()
    return pixels, batch


# ------------------------------------------------------------------------------ state dict
def test_state_dict_matches_reference_manifest():
    man = load_manifest("Cat_Net")
    model = build_meta(Cat_Net, cfg_file="CAT_full.yaml")
    sd = model.state_dict()
    assert list(sd) == man.keys  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == man.shapes
    assert sum(p.numel() for p in model.parameters()) == man.params == 114_263_810
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == man.trainable_params


def test_strict_load_of_reference_state_dict():
    model = Cat_Net()
    model.load_state_dict(manifest_state_dict("Cat_Net"), strict=True)
    assert float(model.loss.criterion.weight.abs().sum()) == 0.0  # the class weights are in the state dict


# ------------------------------------------------------------------------------ full model
def test_forward_backward_on_post_function_inputs(misc):
    """CAT_full at 64x64, batch 2 (a JPEG and a TIFF), inputs prepared by the post-function."""
    from torch.utils.data import default_collate

    from IMDLBenCo.engine import check_model_output

    ds = ManiDataset(str(misc), is_resizing=True, output_size=(64, 64), post_funcs=cat_net_post_func,
                     defer_normalization=True)
    names = [Path(p).name for p in ds.image_paths]
    batch = normalize_batch(default_collate([ds[names.index(CASIA1)], ds[names.index(CASIA2_TIF)]]))
    assert batch["DCT_coef"].shape == (2, 64, 64) and batch["qtables"].shape == (2, 8, 8)
    torch.manual_seed(0)
    model = Cat_Net()
    model.train()
    out = model(**batch, if_predict_label=False, if_predcit_label=False)
    check_model_output(out, batch, training=True)
    assert set(out["visual_loss"]) == {"predict_loss"} and set(out["visual_image"]) == {"pred_mask"}
    out["backward_loss"].backward()
    for param in (model.model.conv1.weight, model.model.dc_layer0_dil[0].weight, model.model.last_layer[3].weight):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    check_model_output(out, batch, training=False)
    assert out["pred_mask"].shape == (2, 1, 64, 64) and out["pred_label"] is None


def test_dct_histogram_volume_matches_the_reference_definition():
    g = torch.Generator().manual_seed(0)
    coef = torch.randint(-40, 41, (2, 16, 16), generator=g).float()
    coef[0, 0, :6] = torch.tensor([0.5, 19.5, 20.5, -25.2, -0.0, 20.0])
    expected = torch.zeros(2, 21, 16, 16)
    expected[:, 0] += (coef == 0).float()
    for i in range(1, 20):
        expected[:, i] += (coef == i).float() + (coef == -i).float()
    expected[:, 20] += (coef >= 20).float() + (coef <= -20).float()
    assert torch.equal(dct_histogram_volume(coef), expected)


# ------------------------------------------------------------------------------ options, errors
def test_input_errors_name_what_is_wrong(small_model):
    _, batch = _inputs()
    with pytest.raises(ValueError, match="cat_net_post_func"):
        small_model(batch["image"], batch["mask"])
    _, odd = _inputs(size=36)
    with pytest.raises(ValueError, match="multiples of 8"):
        small_model(**odd)
    with pytest.raises(ValueError, match="DCT_coef has shape"):
        small_model(**dict(batch, DCT_coef=batch["DCT_coef"][:, :16]))
    with pytest.raises(ValueError, match="dct_source"):
        small_model(**batch, DCT_source=["benco", "benco"])
    small_model(**batch, DCT_source=["file", "file"])  # as the post-function records it


def test_rgb_scaling_and_rgb_from_normalized(small_cfg):
    model = Cat_Net(cfg_file=small_cfg)
    seen = []
    model.model.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    pixels, batch = _inputs()
    with torch.no_grad():
        model(**batch)
        model.rgb_from_normalized = True
        model(**batch)
    # IMDL-BenCo's scaling of the (normalised) image it is given, and the authors' [-1, 1]
    torch.testing.assert_close(seen[0], (batch["image"] - 127.5) / 127.5)
    torch.testing.assert_close(seen[1], (pixels.float() - 127.5) / 127.5, atol=1e-4, rtol=0)


def test_clamp_pred_mask(small_cfg):
    model = Cat_Net(cfg_file=small_cfg).eval()

    def step_logits(module, args, logits):
        out = torch.zeros_like(logits)
        out[:, 1, :, logits.shape[-1] // 2:] = 20.0  # a hard edge: bicubic upsampling overshoots
        out[:, 1, :, : logits.shape[-1] // 2] = -20.0
        return out

    model.model.register_forward_hook(step_logits)
    _, batch = _inputs()
    with torch.no_grad():
        clamped = model(**batch)["pred_mask"]
        model.clamp_pred_mask = False
        raw = model(**batch)["pred_mask"]
    assert raw.min() < 0 and raw.max() > 1  # the reference's values
    assert clamped.min() >= 0 and clamped.max() <= 1
    torch.testing.assert_close(clamped, raw.clamp(0, 1))


def test_ignore_padding_in_loss(small_cfg):
    model = Cat_Net(cfg_file=small_cfg).eval()
    _, batch = _inputs()
    shape_mask = torch.zeros(2, 1, 32, 32)
    shape_mask[..., :16] = 1
    other = batch["mask"].clone()
    other[..., 20:, 20:] = 1 - other[..., 20:, 20:]  # differs only inside the padding
    with torch.no_grad():
        losses = [float(model(**dict(batch, mask=m), shape_mask=shape_mask)["backward_loss"])
                  for m in (batch["mask"], other)]
        model.ignore_padding_in_loss = True
        ignoring = [float(model(**dict(batch, mask=m), shape_mask=shape_mask)["backward_loss"])
                    for m in (batch["mask"], other)]
    assert losses[0] != losses[1]  # IMDL-BenCo counts the padding as authentic
    assert ignoring[0] == ignoring[1]


def test_help_lists_options():
    text = train_help("Cat_Net")
    for option in ("--cfg_file", "--pretrained_rgb_path", "--pretrained_dct_path", "--dct_source",
                   "--rgb_from_normalized", "--clamp_pred_mask", "--ignore_padding_in_loss"):
        assert option in text
    kwargs = parse_model_kwargs("Cat_Net", ["--dct_source", "benco", "--clamp_pred_mask", "false"])
    assert kwargs["dct_source"] == "benco" and kwargs["clamp_pred_mask"] is False


# ------------------------------------------------------------------------------ configuration
def test_configuration_names_and_files(tmp_path, caplog):
    for name in ("CAT_full.yaml", "CAT_full", str(tmp_path / "configs" / "CAT_full.yaml")):
        cfg = load_config(name)  # IMDL-BenCo's ./configs/CAT_full.yaml need not exist
        assert cfg.source == "built-in CAT_full"
        assert cfg.stages["STAGE4"].channels == [48, 96, 192, 384] and cfg.stages["DC_STAGE3"].modules == 3
    with pytest.raises(FileNotFoundError, match="cfg_file 'CAT_lite.yaml'"):
        load_config("CAT_lite.yaml")
    broken = json.loads(json.dumps(SMALL))
    del broken["MODEL"]["EXTRA"]["STAGE5"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="MODEL.EXTRA.STAGE5 is missing"):
        load_config(str(tmp_path / "broken.json"))

    yaml = pytest.importorskip("yaml")
    # IMDL-BenCo's file layout, with its typo and pretrained paths on another machine
    data = json.loads(json.dumps(SMALL))
    data["MODEL"]["EXTRA"]["STAGE1"]["NUM_RANCHES"] = 1
    data["MODEL"]["PRETRAINED_RGB"] = "/mnt/elsewhere/hrnetv2_w48_imagenet_pretrained.pth"
    data["MODEL"]["PRETRAINED_DCT"] = "/mnt/elsewhere/DCT_djpeg.pth.tar"
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.WARNING):
        model = Cat_Net(cfg_file=str(tmp_path / "small.yaml"))
    assert model.model.stage4[0].branches[3][0].conv1.weight.shape[0] == 64
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "/mnt/elsewhere/DCT_djpeg.pth.tar" in warnings[0] and "does not exist" in warnings[0]


# ------------------------------------------------------------------------------ weights
def test_pretrained_streams(small_cfg, small_model, tmp_path, caplog):
    own = small_model.model.state_dict()
    rgb = {k: torch.full_like(v, 0.25) for k, v in own.items() if k.startswith(RGB_PREFIXES) and v.is_floating_point()}
    rgb["classifier.weight"] = torch.zeros(1000, 2048)  # the ImageNet head: reported, ignored
    torch.save(rgb, tmp_path / "hrnet.pth")
    dct = {k: torch.full_like(v, 0.5) for k, v in own.items() if k.startswith("dc_") and v.is_floating_point()}
    dct["last_layer.3.weight"] = torch.full((2, 8, 1, 1), 7.0)  # the double-JPEG head is not loaded
    # the authors' .pth.tar layout, with a NumPy score beside the weights
    torch.save({"epoch": 3, "best_p_mIoU": np.float64(0.61), "state_dict": dct}, tmp_path / "DCT_djpeg.pth.tar")
    with caplog.at_level(logging.WARNING):
        model = Cat_Net(cfg_file=small_cfg, pretrained_rgb_path=str(tmp_path / "hrnet.pth"),
                        pretrained_dct_path=str(tmp_path / "DCT_djpeg.pth.tar"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    net = model.model
    assert torch.all(net.conv1.weight == 0.25) and torch.all(net.stage4[0].branches[3][0].conv2.weight == 0.25)
    assert torch.all(net.dc_layer0_dil[0].bias == 0.5) and torch.all(net.dc_stage4[0].branches[2][0].bn1.weight == 0.5)
    assert not torch.any(net.last_layer[3].weight == 7.0)
    assert not torch.any(net.stage5[0].branches[0][0].conv1.weight == 0.25)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Cat_Net(cfg_file=small_cfg, pretrained_rgb_path=str(tmp_path / "hrnet.pth"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "--pretrained_dct_path is empty" in warnings[0]

    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no tensor of this file matches"):
        Cat_Net(cfg_file=small_cfg, pretrained_rgb_path=str(tmp_path / "other.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        Cat_Net(cfg_file=small_cfg, pretrained_dct_path=str(tmp_path / "missing.pth"))


def test_convert_authors_checkpoint(small_cfg, small_model, tmp_path):
    torch.save({"epoch": 40, "best_p_mIoU": np.float64(0.7), "state_dict": small_model.model.state_dict()},
               tmp_path / "CAT_full_v2.pth.tar")
    sd = convert_authors_checkpoint(str(tmp_path / "CAT_full_v2.pth.tar"))
    other = Cat_Net(cfg_file=small_cfg)
    other.load_state_dict(sd, strict=True)
    torch.testing.assert_close(other.model.last_layer[0].weight, small_model.model.last_layer[0].weight)
    assert other.loss.criterion.weight.tolist() == [0.5, 2.5]


# ------------------------------------------------------------------------------ post-function
def test_post_function_reads_the_original_jpeg(misc):
    """Padding keeps the file's pixels: coefficients and table come from the file itself."""
    s = _sample(misc, CASIA1, is_padding=True)
    content, coef, h, w = _content(s)
    assert (h, w) == (256, 384) and coef.shape == (512, 512) and s["DCT_coef"].dtype == torch.float32
    assert s["DCT_source"] == "file"
    path = misc / "Tp" / CASIA1
    qtable = s["qtables"].numpy()
    np.testing.assert_array_equal(qtable, _pillow_luma_table(path))
    # independent: the decoder's own luminance plane equals the inverse DCT of these coefficients
    assert np.abs(np.round(_idct_luma(coef[:h, :w], qtable)) - _pillow_luma(path)).max() <= 1
    assert not coef[h:].any() and not coef[:, w:].any()  # zero beyond the content


def _hflip(image, mask):
    return {"image": np.ascontiguousarray(image[:, ::-1]), "mask": np.ascontiguousarray(mask[:, ::-1])}


@pytest.mark.parametrize("name,kwargs", [
    (CASIA1, dict(is_resizing=True)),  # resized
    (NIST16, dict(is_padding=True)),  # 3488x2616 shrunk to fit 512
    (CASIA1, dict(is_padding=True, common_transforms=_hflip)),  # augmented at the file's size
], ids=["resized", "shrunk", "flipped"])
def test_post_function_reencodes_changed_content_with_the_file_tables(misc, name, kwargs):
    s = _sample(misc, name, **kwargs)
    content, coef, h, w = _content(s)
    qtable = s["qtables"].numpy()
    np.testing.assert_array_equal(qtable, _pillow_luma_table(misc / "Tp" / name))
    assert np.array_equal(coef, np.round(coef))
    # the coefficients describe the pixels the model sees (a misaligned grid would be far off)
    error = np.abs(_idct_luma(coef[: -(-h // 8) * 8, : -(-w // 8) * 8], qtable)[:h, :w] - _luma(content))
    assert error.mean() < 1.5, error.mean()


def test_post_function_encodes_non_jpeg_at_quality_100(misc, tmp_path):
    s = _sample(misc, CASIA2_TIF, is_padding=True)
    content, coef, h, w = _content(s)
    np.testing.assert_array_equal(s["qtables"].numpy(), np.ones((8, 8)))
    error = np.abs(_idct_luma(coef[: -(-h // 8) * 8, : -(-w // 8) * 8], np.ones((8, 8)))[:h, :w] - _luma(content))
    assert error.mean() < 0.6
    # JPEG or not is decided by the file's bytes, not its name
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for sub in ("Tp", "Gt"):
        (tmp_path / sub).mkdir()
    Image.fromarray(rgb).save(tmp_path / "Tp" / "x.png", format="JPEG", quality=80)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "Gt" / "x.png")
    s = _sample(tmp_path, "x.png", is_padding=True, output_size=(64, 64))
    np.testing.assert_array_equal(s["qtables"].numpy(), _pillow_luma_table(tmp_path / "Tp" / "x.png"))
    assert np.abs(np.round(_idct_luma(s["DCT_coef"].numpy(), s["qtables"].numpy()))
                  - _pillow_luma(tmp_path / "Tp" / "x.png")).max() <= 1


def test_post_function_benco_reproduces_imdlbenco_reencoding(misc):
    """IMDL-BenCo: normalised floats cast to uint8, saved with Pillow's defaults, read back."""
    if np.array([-1.5], np.float32).astype(np.uint8)[0] != 255:
        pytest.skip("NumPy's float->uint8 cast does not wrap on this platform (the reference ran on x86)")
    ds = ManiDataset(str(misc), is_resizing=True, output_size=(256, 256), defer_normalization=True)
    sample = ds[[Path(p).name for p in ds.image_paths].index(CASIA1)]
    pixels = sample["image"].permute(1, 2, 0).numpy().astype(np.float64)
    normalised = ((pixels / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    with np.errstate(invalid="ignore"):
        cast = normalised.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(cast).save(buf, format="JPEG")
    cat_net_post_func(sample, dct_source="benco")
    assert sample["DCT_source"] == "benco"
    qtable = sample["qtables"].numpy()
    np.testing.assert_array_equal(qtable, _pillow_luma_table(io.BytesIO(buf.getvalue())))
    decoded = _pillow_luma(io.BytesIO(buf.getvalue()))
    assert np.abs(np.round(_idct_luma(sample["DCT_coef"].numpy(), qtable)) - decoded).max() <= 1
    # the same from a sample normalised in the dataset (IMDL-BenCo's form)
    as_float = normalize_batch({"image": sample["image"]})
    cat_net_post_func(as_float, dct_source="benco")
    assert torch.equal(as_float["DCT_coef"], sample["DCT_coef"])


def test_engine_binds_the_model_option_to_the_post_function():
    """``--dct_source`` is one option: the engine hands the model's value to the post-function."""
    import pickle

    from IMDLBenCo.engine.builders import find_post_function

    assert find_post_function("Cat_Net", {}) is cat_net_post_func
    bound = find_post_function("Cat_Net", {"dct_source": "benco", "clamp_pred_mask": True})
    assert bound.keywords == {"dct_source": "benco"}
    assert pickle.loads(pickle.dumps(bound)).keywords == {"dct_source": "benco"}  # reaches worker processes
    assert find_post_function("MVSSNet", {"dct_source": "benco"}) is None


def test_post_function_in_a_dataloader_worker(misc):
    from torch.utils.data import DataLoader

    ds = ManiDataset(str(misc), is_resizing=True, output_size=(128, 128), post_funcs=FILE_POST,
                     defer_normalization=True)
    batches = list(DataLoader(ds, batch_size=2, num_workers=1))
    assert sum(len(b["name"]) for b in batches) == len(ds)
    for i, batch in enumerate(batches):
        assert batch["DCT_coef"].shape[1:] == (128, 128) and batch["qtables"].shape[1:] == (8, 8)
        assert batch["DCT_source"] == ["file"] * len(batch["name"])
        for j in range(len(batch["name"])):
            local = ds[2 * i + j]
            assert torch.equal(batch["DCT_coef"][j], local["DCT_coef"])
            assert torch.equal(batch["qtables"][j], local["qtables"])


# ------------------------------------------------------------------------------ engine
def test_one_epoch_through_the_engine(tmp_path, small_cfg):
    """One epoch with ``--dct_source benco`` on generated PNGs, tested on JPEG copies: the engine
    finds the post-function by the model name and hands it the model's ``dct_source`` (else the
    model would refuse batches prepared the default way, ``file``)."""
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=64, seed=0)
    test_src, test_jpeg = Path(info["splits"]["test"]), tmp_path / "test_jpeg"
    shutil.copytree(test_src / "Gt", test_jpeg / "Gt")
    (test_jpeg / "Tp").mkdir()
    for png in (test_src / "Tp").iterdir():
        Image.open(png).convert("RGB").save(test_jpeg / "Tp" / (png.stem + ".jpg"), quality=90)
    res = engine.train_main([
        "--model", "Cat_Net", "--cfg_file", small_cfg, "--dct_source", "benco", "--data_path", info["splits"]["train"],
        "--test_data_path", str(test_jpeg), "--output_dir", str(tmp_path / "out"), "--epochs", "1",
        "--batch_size", "2", "--test_batch_size", "2", "--image_size", "64", "--if_padding", "--accum_iter", "1",
        "--warmup_epochs", "0", "--num_workers", "0", "--device", "cpu", "--test_period", "1"], train_transform=False)
    assert res["train_predict_loss"] == res["train_predict_loss"] and 0 < res["train_predict_loss"] < 1e3
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    assert (tmp_path / "out" / "checkpoint-0.pth").exists()


# ------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_parity_raw_outputs():
    """The parity fixture with the reference's raw pred_mask (clamp off): outputs, losses and every
    gradient norm; with the default clamp, pred_mask equals the clamped reference."""
    import parity

    from IMDLBenCo.registry import MODELS

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        report = parity.run_model_fixture("Cat_Net", build=lambda n, kw: MODELS.get(n)(**kw, clamp_pred_mask=False))
        assert report.ok, report.problems
        fx = parity.load_fixture("Cat_Net")
        inputs = parity.load_inputs(fx["input_file"])
        torch.manual_seed(0)
        model = Cat_Net(**json.loads(fx["kwargs_json"]))
        model.load_state_dict(parity.filled_state_dict(model), strict=True)
        model.eval()
        with torch.no_grad():
            out = parity._call(model, inputs)
        tol = max(parity.TOL_PROB, parity.SENSITIVITY_FACTOR * fx["sensitivity"]["eval_pred_mask"])
        assert float((out["pred_mask"] - fx["eval"]["pred_mask"].clamp(0, 1)).abs().max()) <= tol
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_full_size_forward(misc):
    from torch.utils.data import default_collate

    s = _sample(misc, CASIA1, is_resizing=True)
    batch = normalize_batch(default_collate([s]))
    model = Cat_Net().eval()
    with torch.no_grad():
        out = model(**batch)
    assert out["pred_mask"].shape == (1, 1, 512, 512)
    assert 0 <= float(out["pred_mask"].min()) and float(out["pred_mask"].max()) <= 1
