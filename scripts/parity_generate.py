"""Regenerate the parity fixtures of ../shared/reference/parity/README.md from IMDL-BenCo 0.1.45 itself.

Runs in the environment that ``scripts/parity.sh`` makes (``.parity-venv``: the *reference* package
``IMDLBenCo`` 0.1.45 from the package registry, never ours). It follows the README exactly:
§1 the weight fill (shared with ``tests/parity.py``), §2 the inputs, §3 the procedure per model,
§4 the dataset pipeline, §5 the robustness attacks. Source images come from ``--datasets``
(../shared/datasets: COVERAGE and MISC_samples) when present; otherwise the generator makes
synthetic ones with the same names and sizes from a fixed seed and stores them with the fixtures
(``<out>/sources``), so that the tests read the same files.

    python scripts/parity_generate.py --out DIR [--models a,b | all | none] [--no-data]
    python scripts/parity_generate.py compare OURS THEIRS     # regenerated vs stored, any environment

Nothing is downloaded: the network is blocked in this process, pretrained timm weights are turned
off and weight files the reference insists on are given an empty placeholder (the fill overwrites
every floating tensor anyway, README §1). A model the reference cannot build here is listed in
``<out>/models/NOT_BUILT.json`` with the reason, printed, and makes the exit status 3.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
# README §1 fill and §3 dropout bookkeeping: one implementation for both sides (tests/parity.py
# imports nothing heavy at module level and nothing of ours)
sys.path.insert(0, str(REPO / "tests"))
import parity as rules  # noqa: E402

REFERENCE_VERSION = "0.1.45"
SIZES = (224, 256, 512)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: README §3's fixture table: constructor arguments as recorded (weight files null), input file,
#: which arguments name weight files the reference insists on, which name shipped config files
MODEL_CONFIGS: dict[str, dict] = {
    "Cat_Net": dict(kwargs={"cfg_file": "CAT_full.yaml"}, input="inputs_jpeg_256.pt", configs=["cfg_file"],
                    note="cfg_file is the configuration shipped with the reference"),
    "IML_ViT": dict(kwargs={"input_size": 256, "vit_pretrain_path": None}, input="inputs_256.pt"),
    "MSCDI_Net": dict(kwargs={"backbone_weights_path": None}, input="inputs_256.pt",
                      weights=["backbone_weights_path"]),
    "MVSSNet": dict(kwargs={}, input="inputs_256.pt",
                    note="built with the default ImageNet resnet50 download replaced by a random state dict"),
    "MantraNet": dict(kwargs={}, input="inputs_256.pt"),
    "Mesorch": dict(kwargs={"seg_pretrain_path": None, "conv_pretrain": False}, input="inputs_512.pt"),
    "ObjectFormer": dict(kwargs={"input_size": 224, "init_weight_path": None}, input="inputs_224.pt"),
    "PSCC_Net": dict(kwargs={"input_size": 256, "pretrain_path": None}, input="inputs_256.pt",
                     weights=["pretrain_path"]),
    "SPAN": dict(kwargs={"weight_path": None}, input="inputs_256.pt", weights=["weight_path"]),
    "SparseViT": dict(kwargs={"img_size": 512, "pretrained_path": None}, input="inputs_512.pt"),
    "Trufor": dict(kwargs={"phase": 2, "np_pretrain_weights": None, "mit_b2_pretrain_weights": None,
                           "config_path": "trufor.yaml"}, input="inputs_256.pt",
                   weights=["np_pretrain_weights", "mit_b2_pretrain_weights"], configs=["config_path"],
                   note="config_path is the configuration shipped with the reference"),
}
for _name in ("resnet", "bayar_resnet", "dct_resnet", "fft_resnet", "sobel_resnet", "srm_resnet",
              "unet", "fft_unet", "sobel_unet"):
    MODEL_CONFIGS[_name] = dict(kwargs={}, input="inputs_256.pt")
for _name in ("segformer", "bayar_segformer", "dct_segformer", "srm_segformer"):
    MODEL_CONFIGS[_name] = dict(kwargs={"pretrain_pth_path": None}, input="inputs_256.pt",
                                weights=["pretrain_pth_path"])
for _name in ("vit", "bayar_vit", "srm_vit", "vit16", "dct_vit16", "swin", "fft_swin", "sobel_swin"):
    MODEL_CONFIGS[_name] = dict(kwargs={}, input="inputs_512.pt")

#: README §4: (fixture id, dataset folder, image, mask or None for the authentic image)
DATA_SOURCES = [
    ("cov_13t", "COVERAGE", "Tp/13t.png", "Gt/13t.png"),
    ("cov_1t", "COVERAGE", "Tp/1t.png", "Gt/1t.png"),
    ("cov_80t", "COVERAGE", "Tp/80t.png", "Gt/80t.png"),
    ("casia1", "MISC_samples", "Tp/CASIA1_Sp_S_NNN_A_ani0041_ani0041_0199.jpg",
     "Gt/CASIA1_Sp_S_NNN_A_ani0041_ani0041_0199.png"),
    ("casia2", "MISC_samples", "Tp/CASIA2_Tp_S_NNN_S_N_ani20009_ani20009_02052.tif",
     "Gt/CASIA2_Tp_S_NNN_S_N_ani20009_ani20009_02052.png"),
    ("cov_au2", "COVERAGE", "Au/2.png", None),
]
DATA_MODES = [("resize256", dict(is_resizing=True, output_size=(256, 256))),
              ("resize512", dict(is_resizing=True, output_size=(512, 512))),
              ("pad1024", dict(is_padding=True, output_size=(1024, 1024)))]
#: README §5: attacked images
ROBUST_SOURCES = ["cov_80t", "casia1"]
BLUR_PARAMS = [3, 7, 11, 15, 19, 23]
JPEG_PARAMS = [50, 60, 70, 80, 90, 100]
NOISE_PARAMS = [3, 7, 11, 15, 19, 23]
#: sizes (W, H) of the source images, for the synthetic stand-ins when ../shared is absent
SOURCE_SIZES = {"Tp/13t.png": (752, 472), "Tp/1t.png": (424, 421), "Tp/80t.png": (334, 190), "Au/2.png": (450, 401),
                "Tp/CASIA1_Sp_S_NNN_A_ani0041_ani0041_0199.jpg": (384, 256),
                "Tp/CASIA2_Tp_S_NNN_S_N_ani20009_ani20009_02052.tif": (470, 387)}


class BuildError(Exception):
    """The reference could not build a model in this environment."""


# ------------------------------------------------------------------------------ offline guards
class PlaceholderWeights(dict):
    """An empty state dict standing in for a weight file or a download (README §1: every floating
    tensor is overwritten by the fill, so what is loaded at construction cannot matter)."""

    def __missing__(self, key):  # ``torch.load(p)["state_dict"]`` and the like
        return PlaceholderWeights()


def install_offline_guards(placeholder_file: Path) -> None:
    """Block the network and replace every weight download or weight file by a placeholder."""
    import timm
    import torch
    import torch.hub
    import torch.nn as nn
    import torch.utils.model_zoo

    def no_network(*_a, **_k):
        raise OSError("network access is blocked while generating parity fixtures (offline build)")

    socket.socket.connect = no_network
    socket.create_connection = no_network
    socket.getaddrinfo = no_network

    create_model = timm.create_model

    def create_model_offline(*args, **kwargs):
        kwargs["pretrained"] = False
        return create_model(*args, **kwargs)

    timm.create_model = create_model_offline
    timm.models.create_model = create_model_offline

    def fake_download(*_a, **_k):
        return PlaceholderWeights()

    torch.hub.load_state_dict_from_url = fake_download
    torch.utils.model_zoo.load_url = fake_download
    try:
        import torchvision.models._api as tv_api

        tv_api.load_state_dict_from_url = fake_download
    except ImportError:
        pass

    load = torch.load

    def load_or_placeholder(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and Path(f) == placeholder_file:
            return PlaceholderWeights()
        return load(f, *args, **kwargs)

    torch.load = load_or_placeholder

    load_state_dict = nn.Module.load_state_dict

    def load_state_dict_or_skip(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, PlaceholderWeights):
            from torch.nn.modules.module import _IncompatibleKeys

            return _IncompatibleKeys([], [])
        return load_state_dict(self, state_dict, *args, **kwargs)

    nn.Module.load_state_dict = load_state_dict_or_skip
    # README §3: Cat_Net's CUDA transfers made no-ops for CPU
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self


def import_reference():
    """The reference package, refusing ours (both are called ``IMDLBenCo``)."""
    try:
        import IMDLBenCo
    except Exception as err:
        raise SystemExit(f"parity_generate: cannot import IMDL-BenCo {REFERENCE_VERSION}: "
                         f"{type(err).__name__}: {err}. Run it through scripts/parity.sh.") from err
    location = Path(IMDLBenCo.__file__).resolve()
    version = getattr(IMDLBenCo, "__version__", "?")
    if location.parent == (REPO / "IMDLBenCo").resolve() or version != REFERENCE_VERSION:
        raise SystemExit(f"parity_generate: IMDLBenCo at {location} is version {version}, not the reference "
                         f"{REFERENCE_VERSION}. Run it through scripts/parity.sh (its own environment).")
    return IMDLBenCo


# ------------------------------------------------------------------------------ sources (§2, §4)
def make_synthetic_sources(root: Path) -> None:
    """Deterministic stand-ins for the README's source images (same names, sizes and formats):
    smooth colour fields with texture, one rectangle-and-ellipse forgery mask per tampered image."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(20240145)
    for rel, (w, h) in SOURCE_SIZES.items():
        folder = "MISC_samples" if "CASIA" in rel else "COVERAGE"
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        channels = []
        for _ in range(3):
            fx, fy, ph = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * math.pi)
            base = 128 + 90 * np.sin(2 * math.pi * (fx * xx / w + fy * yy / h) + ph)
            channels.append(base + rng.normal(0, 12, (h, w)))
        rgb = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
        path = root / folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(rgb)
        if rel.endswith(".jpg"):
            image.save(path, quality=85)
        else:
            image.save(path)
        if rel.startswith("Tp/"):
            mask = Image.new("L", (w, h), 0)
            draw = ImageDraw.Draw(mask)
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            draw.rectangle([x0, y0, x0 + w // 4, y0 + h // 5], fill=255)
            cx, cy = int(rng.integers(w // 3, w)), int(rng.integers(h // 3, h))
            draw.ellipse([cx - w // 8, cy - h // 8, cx, cy], fill=255)
            gt = root / folder / "Gt" / (Path(rel).stem + ".png")
            gt.parent.mkdir(parents=True, exist_ok=True)
            mask.save(gt)


def make_inputs(datasets: Path, out: Path) -> None:
    """README §2: inputs_<S>.pt and inputs_jpeg_256.pt from COVERAGE Tp/1t.png and Au/2.png."""
    import io

    import jpeglib
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    cov = datasets / "COVERAGE"
    rgb = [Image.open(cov / "Tp/1t.png").convert("RGB"), Image.open(cov / "Au/2.png").convert("RGB")]
    gt = Image.open(cov / "Gt/1t.png").convert("L")
    mean = np.array(MEAN, np.float32).reshape(1, 1, 3)
    std = np.array(STD, np.float32).reshape(1, 1, 3)
    out.mkdir(parents=True, exist_ok=True)

    def masks(size: int) -> dict:
        m = np.zeros((2, 1, size, size), np.float32)
        m[0, 0] = (np.asarray(gt.resize((size, size), Image.NEAREST)) > 127).astype(np.float32)
        mask = torch.from_numpy(m)
        edge = (F.max_pool2d(mask, 7, 1, 3) - (-F.max_pool2d(-mask, 7, 1, 3))).clamp(0, 1)
        return {"mask": mask, "edge_mask": edge, "label": torch.tensor([1, 0]),
                "shape": torch.tensor([[size, size], [size, size]])}

    for size in SIZES:
        images = []
        for im in rgb:
            x = np.asarray(im.resize((size, size), Image.BILINEAR), np.float32) / 255.0
            images.append(torch.from_numpy(((x - mean) / std).transpose(2, 0, 1).copy()))
        torch.save({"image": torch.stack(images), **masks(size)}, out / f"inputs_{size}.pt")

    images, dcts, qts = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, im in enumerate(rgb):
            buf = io.BytesIO()
            im.resize((256, 256), Image.BILINEAR).save(buf, format="JPEG", quality=90)
            path = Path(tmp) / f"{i}.jpg"
            path.write_bytes(buf.getvalue())
            images.append(torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32).transpose(2, 0, 1).copy()))
            jpeg = jpeglib.read_dct(str(path))
            y = np.asarray(jpeg.Y)  # [block row, block col, u, v]
            dcts.append(torch.from_numpy(y.transpose(0, 2, 1, 3).reshape(y.shape[0] * 8, y.shape[1] * 8).astype(np.float32)))
            qts.append(torch.from_numpy(np.asarray(jpeg.qt[0], np.float32)))
    torch.save({"image": torch.stack(images), **masks(256), "DCT_coef": torch.stack(dcts),
                "qtables": torch.stack(qts), "jpeg_quality": torch.tensor(90)}, out / "inputs_jpeg_256.pt")


# ------------------------------------------------------------------------------ models (§1, §3)
def _contiguous_tensors(model) -> None:
    """README §1: expanded zero-stride parameters/buffers cannot be loaded into; copy them."""
    import torch.nn as nn

    def zero_stride(t) -> bool:
        return t is not None and any(s == 0 and n > 1 for s, n in zip(t.stride(), t.shape))

    for module in model.modules():
        for key, p in list(module._parameters.items()):
            if zero_stride(p):
                module._parameters[key] = nn.Parameter(p.detach().contiguous().clone(), requires_grad=p.requires_grad)
        for key, b in list(module._buffers.items()):
            if zero_stride(b):
                module._buffers[key] = b.contiguous().clone()


def build_reference(name: str, reference, placeholder_file: Path):
    import torch

    cfg = MODEL_CONFIGS[name]
    kwargs = dict(cfg["kwargs"])
    for key in cfg.get("weights", []):
        kwargs[key] = str(placeholder_file)
    configs = Path(reference.__file__).parent / "statics" / "model_zoo" / "configs"
    for key in cfg.get("configs", []):
        kwargs[key] = str(configs / kwargs[key])
    from IMDLBenCo.registry import MODELS

    if name not in MODELS:
        raise BuildError(f"{name} is not registered in IMDL-BenCo {REFERENCE_VERSION}")
    torch.manual_seed(0)
    try:
        model = MODELS.get(name)(**kwargs)
    except Exception as err:
        why = f"{type(err).__name__}: {err}".strip()
        if "internet" in why or "network" in why:
            why += (" (the reference fetches code or weights from the network when it builds this model; "
                    "nothing can be fetched here)")
        raise BuildError(why) from err
    _contiguous_tensors(model)
    return model.float()


def _outputs(out: dict) -> dict:
    import torch

    label = out.get("pred_label")
    visual = {}
    for k, v in (out.get("visual_loss") or {}).items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            visual[k] = float(v.detach())
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            visual[k] = float(v)
    return {"pred_mask": out["pred_mask"].detach().float().clone(),
            "pred_label": None if label is None else label.detach().float().clone(),
            "backward_loss": float(out["backward_loss"].detach()),
            "visual_loss": visual}


def _shift(a: dict, b: dict) -> dict[str, float]:
    def max_abs(x, y):
        return 0.0 if x is None or y is None or x.numel() == 0 else float((x.double() - y.double()).abs().max())

    return {"pred_mask": max_abs(a["pred_mask"], b["pred_mask"]),
            "pred_label": max_abs(a["pred_label"], b["pred_label"]),
            "loss_rel": abs(a["backward_loss"] - b["backward_loss"]) / max(abs(a["backward_loss"]), 1e-12)}


def model_fixture(name: str, reference, inputs_dir: Path, placeholder_file: Path) -> dict:
    """README §3 procedure on the reference's model: the fixture dict."""
    import torch

    cfg = MODEL_CONFIGS[name]
    model = build_reference(name, reference, placeholder_file)
    sd = rules.filled_state_dict(model)
    model.load_state_dict(sd, strict=True)
    inputs = torch.load(inputs_dir / cfg["input"], weights_only=True)
    shifted_inputs = dict(inputs, image=inputs["image"] * (1 + 2.0 ** -23))

    def call(batch):
        return model(**{k: v.clone() for k, v in batch.items() if k != "jpeg_quality"})

    def eval_pass(batch):
        model.load_state_dict(sd, strict=True)
        model.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            return _outputs(call(batch))

    def train_pass(batch, seed=0):
        model.load_state_dict(sd, strict=True)
        rules.zero_dropout(model)
        model.train()
        torch.manual_seed(seed)
        with torch.no_grad():
            return _outputs(call(batch))

    dropout_p = rules.dropout_probs(model)  # as built, before any pass zeroes them
    ev = eval_pass(inputs)
    # gradients (eval mode: running statistics, dropout off)
    model.load_state_dict(sd, strict=True)
    model.eval()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    out = call(inputs)
    out["backward_loss"].backward()
    grad_loss = float(out["backward_loss"].detach())
    grad_norms = {k: (None if p.grad is None else float(p.grad.detach().double().norm()))
                  for k, p in model.named_parameters()}
    del out
    model.zero_grad(set_to_none=True)
    tr = train_pass(inputs)
    tr_other = train_pass(inputs, seed=1)
    deterministic = all(
        (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
        for a, b in ((tr["pred_mask"], tr_other["pred_mask"]), (tr["pred_label"], tr_other["pred_label"]))
    ) and tr["backward_loss"] == tr_other["backward_loss"]
    ev_shift = _shift(ev, eval_pass(shifted_inputs))
    tr_shift = _shift(tr, train_pass(shifted_inputs))
    sensitivity = {f"{phase}_{k}": v for phase, s in (("eval", ev_shift), ("train", tr_shift)) for k, v in s.items()}
    return {
        "name": name,
        "reference": f"IMDL-BenCo {REFERENCE_VERSION}",
        "kwargs_json": json.dumps(cfg["kwargs"]),
        "input_file": cfg["input"],
        "note": cfg.get("note", ""),
        "state_sums": rules.state_sums(sd),
        "dropout_p": dropout_p,
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "torch_version": str(torch.__version__),
        "eval": ev,
        "grad_norms": grad_norms,
        "grad_loss": grad_loss,
        "train": tr,
        "train_deterministic": bool(deterministic),
        "sensitivity": sensitivity,
    }


# ------------------------------------------------------------------------------ data (§4, §5)
def data_fixtures(datasets: Path, out: Path) -> list[dict]:
    import numpy as np

    from IMDLBenCo.datasets import JsonDataset, ManiDataset

    out.mkdir(parents=True, exist_ok=True)
    mean = np.array(MEAN).reshape(3, 1, 1)
    std = np.array(STD).reshape(3, 1, 1)
    index = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode, geometry in DATA_MODES:
            for fid, folder, image_rel, mask_rel in DATA_SOURCES:
                image = datasets / folder / image_rel
                if mask_rel is None:
                    listing = Path(tmp) / f"{fid}.json"
                    listing.write_text(json.dumps([[str(image), "Negative"]]))
                    ds = JsonDataset(str(listing), edge_width=7, common_transforms=None, **geometry)
                    dataset = "JsonDataset(Negative)"
                else:  # a folder with this one pair: ManiDataset pairs Tp/ and Gt/ by sorted name
                    pair = Path(tmp) / f"{mode}_{fid}"
                    (pair / "Tp").mkdir(parents=True)
                    (pair / "Gt").mkdir(parents=True)
                    os.symlink(image, pair / "Tp" / image.name)
                    os.symlink(datasets / folder / mask_rel, pair / "Gt" / Path(mask_rel).name)
                    ds = ManiDataset(str(pair), edge_width=7, common_transforms=None, **geometry)
                    dataset = "ManiDataset"
                item = ds[0]
                x = item["image"].numpy().astype(np.float64)
                unnorm = (x * std + mean) * 255
                img = np.round(unnorm).astype(np.uint8)
                renorm = (img.astype(np.float32) / 255 - mean.astype(np.float32)) / std.astype(np.float32)
                fields = {
                    "image": img,
                    "mask": item["mask"].numpy().astype(np.uint8),
                    "edge_mask": item["edge_mask"].numpy().astype(np.uint8),
                    "label": np.int64(item["label"]),
                    "shape": np.asarray(item["shape"].tolist(), np.int64),
                    "original_shape": np.asarray(item["origin_shape"].tolist(), np.int64),
                    "mode": np.str_(mode), "image_file": np.str_(image.name),
                    "mask_file": np.str_("" if mask_rel is None else Path(mask_rel).name),
                    "dataset": np.str_(dataset),
                }
                if "shape_mask" in item:
                    fields["shape_mask"] = item["shape_mask"].numpy().astype(np.uint8)
                np.savez_compressed(out / f"{mode}__{fid}.npz", **fields)
                index.append({"file": f"{mode}__{fid}.npz", "image": list(img.shape), "label": int(fields["label"]),
                              "shape": fields["shape"].tolist(), "original_shape": fields["original_shape"].tolist(),
                              "mask_px": int(fields["mask"].sum()), "edge_px": int(fields["edge_mask"].sum()),
                              "max_unnorm_rounding": float(np.abs(unnorm - np.round(unnorm)).max()),
                              "roundtrip": float(np.abs(renorm - item["image"].numpy()).max())})
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return index


def robust_fixtures(datasets: Path, out: Path) -> None:
    import random

    import numpy as np
    from PIL import Image

    from IMDLBenCo.transforms.robustness_wrapper import (
        GaussianBlurWrapper,
        GaussianNoiseWrapper,
        JpegCompressionWrapper,
    )

    sources = {fid: (folder, rel) for fid, folder, rel, _ in DATA_SOURCES}
    for fid in ROBUST_SOURCES:
        folder, rel = sources[fid]
        x = np.asarray(Image.open(datasets / folder / rel).convert("RGB"))
        mask = np.zeros(x.shape[:2], np.uint8)
        fields = {"input": x, "image_file": np.str_(Path(rel).name)}
        for k, transform in GaussianBlurWrapper(BLUR_PARAMS):
            fields[f"blur_{k}"] = transform(image=x, mask=mask)["image"]
        for q, transform in JpegCompressionWrapper(JPEG_PARAMS):
            # the wrapper draws the quality from {q-1, q}: store both outcomes, labelled by the
            # reference's own transform at that quality, and check seeded draws give one of them
            outcomes = {j: transform.apply(x, quality=j, image_type=".jpg") for j in (q - 1, q)}
            seen = set()
            for seed in range(12):
                random.seed(seed)
                np.random.seed(seed)
                got = transform(image=x, mask=mask)["image"]
                hits = [j for j, o in outcomes.items() if np.array_equal(got, o)]
                if not hits:
                    raise RuntimeError(f"JPEG {q}: a draw of the reference equals neither quality {q - 1} nor {q}")
                seen.update(hits)
            if seen != {q - 1, q}:
                raise RuntimeError(f"JPEG {q}: 12 seeded draws gave only qualities {sorted(seen)}")
            for j, o in outcomes.items():
                fields[f"jpeg_{q}_q{j}"] = o
        np.savez_compressed(out / f"robust__{fid}.npz", **fields)

    grey = np.full((512, 512, 3), 128, np.uint8)
    rows = []
    random.seed(0)
    np.random.seed(0)
    for p, transform in GaussianNoiseWrapper(NOISE_PARAMS):
        o = transform(image=grey, mask=np.zeros((512, 512), np.uint8))["image"]
        d = o.astype(np.float64) - 128
        rows.append({"param": p, "dtype": str(o.dtype), "std": float(d.std()), "mean": float(d.mean()),
                     "std_per_channel": [float(d[..., c].std()) for c in range(3)],
                     "channel_corr01": float(np.corrcoef(d[..., 0].ravel(), d[..., 1].ravel())[0, 1])})
    (out / "robust_gaussian_noise.json").write_text(json.dumps(
        {"input": "constant grey 128 image, 512x512x3 uint8", "rows": rows}, indent=1))


# ------------------------------------------------------------------------------ compare
def compare(ours: Path, theirs: Path) -> int:
    """Regenerated fixtures against stored ones: the largest difference of each kind."""
    import numpy as np
    import torch

    worst = 0.0
    print(f"comparing {ours} with {theirs}")
    for path in sorted((ours / "inputs").glob("*.pt")):
        other = theirs / "inputs" / path.name
        if not other.is_file():
            continue
        a, b = torch.load(path, weights_only=True), torch.load(other, weights_only=True)
        diffs = {k: float((a[k].double() - b[k].double()).abs().max()) for k in b if k in a}
        print(f"  inputs/{path.name}: max |diff| " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    rows = []
    for path in sorted((ours / "models").glob("*.pt")):
        other = theirs / "models" / path.name
        if not other.is_file():
            print(f"  models/{path.name}: not in {theirs}")
            continue
        a, b = torch.load(path, weights_only=True), torch.load(other, weights_only=True)
        sums = max((abs(x - y) / max(abs(y), 1e-30) for k in b["state_sums"] if k in a["state_sums"]
                    for x, y in zip(a["state_sums"][k], b["state_sums"][k])), default=0.0)
        keys_equal = set(a["state_sums"]) == set(b["state_sums"])
        row = {"name": path.stem, "keys": keys_equal, "sums_rel": sums}
        for phase in ("eval", "train"):
            for key in ("pred_mask", "pred_label"):
                x, y = a[phase][key], b[phase][key]
                row[f"{phase}_{key}"] = (None if x is None or y is None or x.shape != y.shape
                                         else float((x.double() - y.double()).abs().max()))
            row[f"{phase}_loss_rel"] = abs(a[phase]["backward_loss"] - b[phase]["backward_loss"]) / max(
                abs(b[phase]["backward_loss"]), 1e-12)
        largest = max((v for v in b["grad_norms"].values() if v is not None), default=0.0)
        grads = [abs(a["grad_norms"][k] - v) / max(v, 1e-6 * largest) for k, v in b["grad_norms"].items()
                 if v is not None and a["grad_norms"].get(k) is not None]
        row["grad_rel"] = max(grads, default=0.0)
        row["grad_sets_equal"] = ({k for k, v in a["grad_norms"].items() if v is None}
                                  == {k for k, v in b["grad_norms"].items() if v is None})
        row["dropout"] = len(a["dropout_p"]) == len(b["dropout_p"]) and all(
            abs(x - y) <= 1e-6 for x, y in zip(a["dropout_p"], b["dropout_p"]))
        row["sensitivity"] = max((abs(a["sensitivity"][k] - v) for k, v in b["sensitivity"].items()
                                  if k in a["sensitivity"]), default=0.0)
        row["same_meta"] = all(a[k] == b[k] for k in ("kwargs_json", "input_file", "n_params", "train_deterministic"))
        rows.append(row)
        worst = max(worst, row["eval_pred_mask"] or 0.0)
    if rows:
        print("| model | keys, sums | eval mask | eval label | eval loss rel | train mask | train loss rel | grad rel | "
              "no-grad sets | dropout | 1-ulp shifts | kwargs/input/n_params/train det. |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")

        def g(v):
            return "-" if v is None else f"{v:.2g}"

        for r in rows:
            print(f"| {r['name']} | {'same' if r['keys'] else 'DIFFERENT'} {g(r['sums_rel'])} | {g(r['eval_pred_mask'])} | "
                  f"{g(r['eval_pred_label'])} | {g(r['eval_loss_rel'])} | {g(r['train_pred_mask'])} | "
                  f"{g(r['train_loss_rel'])} | {g(r['grad_rel'])} | {'same' if r['grad_sets_equal'] else 'DIFFERENT'} | "
                  f"{'same' if r['dropout'] else 'DIFFERENT'} | {g(r['sensitivity'])} | "
                  f"{'same' if r['same_meta'] else 'DIFFERENT'} |")
    for path in sorted((ours / "data").glob("*.npz")):
        other = theirs / "data" / path.name
        if not other.is_file():
            continue
        a, b = np.load(path), np.load(other)
        off = [k for k in b.files if k not in a.files or not np.array_equal(a[k], b[k])]
        print(f"  data/{path.name}: " + ("identical" if not off else "differs in " + ", ".join(off)))
    noise = ours / "data" / "robust_gaussian_noise.json"
    if noise.is_file() and (theirs / "data" / noise.name).is_file():
        ra = json.loads(noise.read_text())["rows"]
        rb = json.loads((theirs / "data" / noise.name).read_text())["rows"]
        d = max(abs(x["std"] - y["std"]) / y["std"] for x, y in zip(ra, rb))
        print(f"  data/{noise.name}: std within {d:.2%} of the stored statistics")
    return 0


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        if len(argv) != 3:
            raise SystemExit("usage: parity_generate.py compare OURS THEIRS")
        return compare(Path(argv[1]), Path(argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to write (emptied first)")
    ap.add_argument("--models", default="all",
                    help="comma-separated fixture names, 'all' (README §3's table) or 'none'")
    ap.add_argument("--no-data", action="store_true", help="skip the dataset and attack fixtures (§4, §5)")
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets",
                    help="folder with COVERAGE/ and MISC_samples/ (synthetic stand-ins when absent)")
    args = ap.parse_args(argv)

    names = (sorted(MODEL_CONFIGS, key=str.lower) if args.models == "all"
             else [] if args.models == "none" else [n for n in args.models.split(",") if n])
    unknown = [n for n in names if n not in MODEL_CONFIGS]
    if unknown:
        raise SystemExit(f"parity_generate: unknown fixture name(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(MODEL_CONFIGS, key=str.lower))}")
    reference = import_reference()
    import torch

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "models").mkdir(parents=True)
    placeholder = (out / ".placeholder_weights.pth").resolve()
    torch.save({}, placeholder)
    install_offline_guards(placeholder)

    datasets = args.datasets
    needed = [datasets / f / r for _, f, r, _ in DATA_SOURCES]
    synthetic = not all(p.is_file() for p in needed)
    if synthetic:
        print(f"[generate] {datasets} lacks the README's source images: making synthetic ones in {out / 'sources'}")
        datasets = out / "sources"
        make_synthetic_sources(datasets)
    t0 = time.time()
    make_inputs(datasets, out / "inputs")
    print(f"[generate] inputs from {datasets} ({time.time() - t0:.1f} s)", flush=True)

    not_built = {}
    for name in names:
        t0 = time.time()
        try:
            fixture = model_fixture(name, reference, out / "inputs", placeholder)
        except BuildError as err:
            not_built[name] = str(err)
            print(f"[generate] NOT BUILT {name}: {err}", flush=True)
            continue
        except Exception as err:  # the reference failed while running: report, go on with the rest
            not_built[name] = f"failed while running: {type(err).__name__}: {err}"
            print(f"[generate] FAILED {name}: {type(err).__name__}: {err}", flush=True)
            traceback.print_exc()
            continue
        torch.save(fixture, out / "models" / f"{name}.pt")
        print(f"[generate] model {name}: eval loss {fixture['eval']['backward_loss']:.6g} "
              f"({time.time() - t0:.1f} s)", flush=True)
    if not args.no_data:
        t0 = time.time()
        data_fixtures(datasets, out / "data")
        robust_fixtures(datasets, out / "data")
        print(f"[generate] data and attack fixtures ({time.time() - t0:.1f} s)", flush=True)
    placeholder.unlink()
    manifest = {"reference": f"IMDL-BenCo {REFERENCE_VERSION}", "torch": str(torch.__version__),
                "models": [n for n in names if n not in not_built], "not_built": not_built,
                "data": not args.no_data, "sources": "synthetic (sources/)" if synthetic else str(args.datasets)}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    if not_built:
        (out / "models" / "NOT_BUILT.json").write_text(json.dumps(not_built, indent=1))
        print("[generate] the reference could not produce these fixtures here:")
        for n, why in not_built.items():
            print(f"  {n}: {why.splitlines()[0] if why else ''}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
