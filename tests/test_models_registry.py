"""Every registered model, built small: one training forward on a tiny batch, the output contract
(IMDLBenCo.outputs.check_model_output), one backward with finite gradients.

Like timm's test over its model list: a model added to ``MODELS`` without an entry in ``SMALL``
fails ``test_every_registered_model_has_a_small_build``, so nothing is left out silently. Models
whose weights come from files are built with random initialisation (no file, no download). The
models without a small configuration (full width at a small input) are marked slow (--runslow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from IMDLBenCo.modules.backbones import BACKBONE_FAMILIES, BACKBONE_NAMES
from IMDLBenCo.outputs import check_model_output
from IMDLBenCo.registry import MODELS


def _stage(block, blocks, channels):
    return {"NUM_MODULES": 1, "BLOCK": block, "NUM_BLOCKS": blocks, "NUM_CHANNELS": channels}


#: CAT-Net's layout with one block per branch and narrow branches (written to a file: Cat_Net
#: takes its architecture from a configuration file)
CAT_NET_SMALL = {
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

#: backbone family -> smallest encoder options that work (extractor variants take the same)
BACKBONE_SMALL = {
    "resnet": dict(encoder_name="resnet18"),
    "vit": dict(encoder_name="vit_tiny_patch16_224", image_size=32, depth=1),
    "vit16": dict(encoder_name="vit_tiny_patch16_224", image_size=32, depth=1),
    "swin": dict(encoder_name="swin_tiny_patch4_window7_224", image_size=64),
    "segformer": dict(encoder_name="mit_b0"),
    "unet": dict(base_channels=8),
    "convnext": dict(encoder_name="convnext_atto"),
}
BACKBONE_SIZE = {"swin": 64, "segformer": 64, "resnet": 64}

#: name -> (constructor options, input size H = W); a callable gets tmp_path and returns options
SMALL: dict[str, tuple[object, int]] = {
    "IML_ViT": (dict(input_size=64, patch_size=16, embed_dim=96, fpn_channels=16, mlp_embeding_dim=16), 64),
    "ObjectFormer": (dict(input_size=32, embedding_dim=48, num_layers=1, num_prototypes=8), 32),
    "SparseViT": (dict(img_size=64, depth=[1, 1, 5, 1], s_blocks3=[8], s_blocks4=[8], embed_dim=[16, 32, 64, 128],
                       head_dim=16), 64),
    "SparseViTBackbone": (dict(img_size=64, layers=[1, 1, 5, 1], s_blocks3=[8], s_blocks4=[8],
                               embed_dim=[16, 32, 64, 128], head_dim=16), 64),
    "DINOv3_IML": (dict(backbone="vit_small_patch16_dinov3", backbone_depth=1, lora_rank=2, lora_alpha=4.0,
                        image_size=32), 32),
    "MSCDI_Net": (dict(backbone="mit_bit2", glca=0), 64),
    "Cat_Net": (lambda tmp: dict(cfg_file=_cat_net_cfg(tmp)), 32),
    "MantraNet": (dict(), 32),
    "SPAN": (dict(layers_steps=(1, 3)), 32),
    "MVSSNet": (dict(pretrained_base=False), 32),
    "PSCC_Net": (dict(), 32),
    "Mesorch": (dict(), 32),
    "Trufor": (dict(phase=2), 32),
    "DemoNet": (dict(width=4), 32),
}
for _name in BACKBONE_NAMES:
    _family = next(f for f in sorted(BACKBONE_FAMILIES, key=len, reverse=True) if _name.endswith(f))
    SMALL[_name] = (BACKBONE_SMALL[_family], BACKBONE_SIZE.get(_family, 32))

#: full-width models (no smaller configuration exists) whose build + step takes several seconds
#: on a 2-core CPU: run with --runslow
SLOW = {"Mesorch", "Trufor", "MVSSNet"}
#: models whose dependencies are optional extras: (module to import, extra)
NEEDS = {"DINOv3_IML": ("peft", "imdlbenco[dinov3]")}
#: registered for reuse inside other models: returns feature maps, not the output dict
FEATURE_EXTRACTORS = {"SparseViTBackbone"}


def _cat_net_cfg(tmp: Path) -> str:
    path = tmp / "cat_net_small.json"
    path.write_text(json.dumps(CAT_NET_SMALL))
    return str(path)


def _registered() -> list:
    """Every name the registry knows, plus DemoNet (found by name, not listed)."""
    import IMDLBenCo.model_zoo  # noqa: F401  (registers the zoo)
    import IMDLBenCo.modules.backbones  # noqa: F401

    # the package's own models (tests register small stand-ins of their own, e.g. EngineTinyNet)
    ours = {n for n, cls in MODELS.items() if getattr(cls, "__module__", "").startswith("IMDLBenCo.")}
    return sorted(ours | {"DemoNet"})


def _batch(name: str, size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, size, size, generator=g)
    mask = torch.zeros(2, 1, size, size)
    mask[0, :, size // 4: size // 2, size // 8: size - 4] = 1
    batch = {"image": image, "mask": mask, "edge_mask": mask.clone(), "label": torch.tensor([1, 0]),
             "shape": torch.tensor([[size, size], [size, size]])}
    if name == "Cat_Net":  # pixels 0..255 and a JPEG's luminance DCT coefficients and table
        batch["image"] = torch.randint(0, 256, (2, 3, size, size), generator=g).float()
        batch["DCT_coef"] = torch.randint(-30, 31, (2, size, size), generator=g).float()
        batch["qtables"] = torch.randint(1, 40, (2, 8, 8), generator=g).float()
    return batch


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.fixture(autouse=True)
def _one_thread():
    """Many small kernels: one intra-op thread is faster than a team on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_registered_model_has_a_small_build():
    names = _registered()
    assert len(names) >= 55
    assert not [n for n in names if n not in SMALL], "a registered model has no entry in SMALL"
    assert not [n for n in SMALL if n not in names], "SMALL names a model that is not registered"


@pytest.mark.parametrize("name", _params(sorted(SMALL)))
def test_model_builds_small_runs_and_trains(name: str, tmp_path: Path, monkeypatch):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name][0], reason=f"{name} needs {NEEDS[name][1]}")
    # no download may happen: a model that tried would fail here instead of hanging offline
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    options, size = SMALL[name]
    kwargs = options(tmp_path) if callable(options) else dict(options)
    torch.manual_seed(0)
    model = MODELS.get(name)(**kwargs)
    model.train()
    batch = _batch(name, size)
    if name in FEATURE_EXTRACTORS:
        features = model(batch["image"])
        if isinstance(features, dict):
            features = list(features.values())
        features = features if isinstance(features, (list, tuple)) else [features]
        assert features and all(f.ndim == 4 and f.shape[0] == 2 and torch.isfinite(f).all() for f in features)
        loss = sum(f.float().square().mean() for f in features)
    else:
        out = model(**batch)
        check_model_output(out, batch, training=True, where=name)
        loss = out["backward_loss"]
        assert torch.isfinite(loss)
    loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.requires_grad}
    assert grads, f"{name} has no trainable parameters"
    missing = [k for k, g in grads.items() if g is None]
    bad = [k for k, g in grads.items() if g is not None and not torch.isfinite(g).all()]
    assert not bad, f"{name}: non-finite gradients in {bad[:5]}"
    assert len(missing) < len(grads), f"{name}: the loss reaches none of the trainable parameters"
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values())


def _no_download(*args, **kwargs):
    raise AssertionError(f"a model tried to download weights: {args[:1]}")
