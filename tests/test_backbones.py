"""Backbones: manifest keys/shapes/params (meta device), strict loads, small CPU forward/backward,
pretrained files, options."""

import logging

import pytest
import torch
from zoo_common import build_meta, check_output_contract, parse_model_kwargs, shapes_of, train_help
from zoo_manifest import assert_params_close, load_manifest, manifest_state_dict

from IMDLBenCo.modules.backbones import BACKBONE_FAMILIES, BACKBONE_NAMES, EXTRACTOR_PREFIXES
from IMDLBenCo.registry import MODELS

WITH_MANIFEST = [n for n in BACKBONE_NAMES if "convnext" not in n]

# small encoders so that a forward + backward of every family takes about a second on a laptop CPU
SMALL = {
    "resnet": dict(encoder_name="resnet18"),
    "vit": dict(encoder_name="vit_tiny_patch16_224", image_size=64),
    "vit16": dict(encoder_name="vit_tiny_patch16_224", image_size=64, depth=2),
    "swin": dict(encoder_name="swin_tiny_patch4_window7_224", image_size=64),
    "segformer": dict(encoder_name="mit_b0"),
    "unet": dict(base_channels=8),
    "convnext": dict(encoder_name="convnext_atto"),
}


def test_all_names_registered():
    expected = {f"{p}_{f}" if p else f for f in BACKBONE_FAMILIES for p in (None, *EXTRACTOR_PREFIXES)}
    assert set(BACKBONE_NAMES) == expected and len(expected) == 42
    for name in expected:
        assert name in MODELS


@pytest.mark.parametrize("name", WITH_MANIFEST)
def test_keys_shapes_params_match_manifest(name):
    man = load_manifest(name)
    model = build_meta(MODELS.get(name))
    assert shapes_of(model) == man.shapes
    assert_params_close(model, name)


@pytest.mark.parametrize("name", WITH_MANIFEST)
def test_strict_load_of_manifest_state_dict(name):
    model = build_meta(MODELS.get(name))
    sd = manifest_state_dict(name)
    model.load_state_dict({"model": sd}["model"], strict=True, assign=True)
    assert all(not t.is_meta for t in model.state_dict().values())


def test_strict_load_real_model_and_forward_after():
    # a full-size model on real memory: load the zero checkpoint, then the output is exactly 0.5
    torch.manual_seed(0)
    model = MODELS.get("srm_segformer")()
    model.load_state_dict(manifest_state_dict("srm_segformer"), strict=True)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert torch.allclose(out["pred_mask"], torch.full((1, 1, 64, 64), 0.5))


@pytest.mark.parametrize("family", sorted(BACKBONE_FAMILIES))
def test_family_forward_backward_small(family):
    # with the label head; test_non_square_and_other_size_than_built covers pred_label None
    label = True
    torch.manual_seed(0)
    model = MODELS.get(family)(if_predict_label=label, **SMALL[family])
    x = torch.randn(2, 3, 64, 64)
    mask = (torch.rand(2, 1, 64, 64) > 0.5).float()
    out = model(x, mask, torch.tensor([0, 1]))
    check_output_contract(out, 2, (64, 64), want_label=label)
    out["backward_loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    if label:
        assert set(out["visual_loss"]) == {"predict_loss", "label_loss", "combined_loss"}


@pytest.mark.parametrize("prefix,family", [(p, "segformer") for p in EXTRACTOR_PREFIXES]
                         + [("sobel", "vit"), ("srm", "vit16")])
def test_extractor_variants_forward_backward(prefix, family):
    torch.manual_seed(0)
    model = MODELS.get(f"{prefix}_{family}")(**SMALL[family])
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    out = model(x, torch.ones(1, 1, 64, 64))
    check_output_contract(out, 1, (64, 64))
    out["backward_loss"].backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_non_square_and_other_size_than_built():
    torch.manual_seed(0)
    vit = MODELS.get("dct_vit")(**SMALL["vit"])  # position grid built for 64x64
    out = vit(torch.randn(1, 3, 96, 48), torch.zeros(1, 1, 96, 48))
    check_output_contract(out, 1, (96, 48))
    unet = MODELS.get("unet")(base_channels=8)
    out = unet(torch.randn(1, 3, 70, 50), torch.zeros(1, 1, 70, 50))
    check_output_contract(out, 1, (70, 50))


def test_wrong_input_channels_is_a_clear_error():
    model = MODELS.get("unet")(base_channels=8)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 4, 32, 32))


def test_random_init_warns_once(caplog):
    with caplog.at_level(logging.WARNING):
        MODELS.get("unet")(base_channels=8)
    msgs = [r.getMessage() for r in caplog.records if "no pretrained weights" in r.getMessage()]
    assert len(msgs) == 1 and "unet" in msgs[0]


def test_pretrained_path_round_trip_and_report(tmp_path, caplog):
    torch.manual_seed(0)
    src = MODELS.get("bayar_unet")(base_channels=8)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": src.state_dict()}, path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dst = MODELS.get("bayar_unet")(base_channels=8, pretrained_path=str(path))
    assert not [r for r in caplog.records if "no pretrained weights" in r.getMessage()]
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_timm_resnet_weights_map_and_widen_first_conv(tmp_path):
    import timm

    torch.manual_seed(0)
    ref = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    model = MODELS.get("srm_resnet")(encoder_name="resnet18", pretrained_path=str(path))
    w = model.backbone[0].weight
    assert w.shape[1] == 12 and torch.equal(w[:, :3], ref.conv1.weight)
    assert torch.equal(model.backbone[6][0].conv1.weight, ref.layer3[0].conv1.weight)
    report = model.load_pretrained(str(path))
    assert "fc.weight" in report.unexpected and "backbone.0.weight" in report.adapted


def test_missing_pretrained_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        MODELS.get("unet")(base_channels=8, pretrained_path=str(tmp_path / "nope.pth"))


def test_segformer_accepts_imdlbenco_option_name(tmp_path):
    src = MODELS.get("segformer")(encoder_name="mit_b0")
    path = tmp_path / "mit.pth"
    torch.save(src.state_dict(), path)
    dst = MODELS.get("segformer")(encoder_name="mit_b0", pretrain_pth_path=str(path))
    assert torch.equal(src.patch_embed1.proj.weight, dst.patch_embed1.proj.weight)


@pytest.mark.parametrize("name", ["bayar_resnet", "vit", "segformer", "convnext"])
def test_help_lists_model_options(name):
    text = train_help(name)
    for opt in ("--encoder_name", "--pretrained_path"):
        assert opt in text
    kwargs = parse_model_kwargs(name, ["--encoder_name", "x_small"])
    assert kwargs["encoder_name"] == "x_small"
    if name == "vit":
        # the script's --image_size reaches the model that needs it
        assert parse_model_kwargs(name, ["--image_size", "256"])["image_size"] == 256


def test_outputs_pass_the_engine_check():
    from IMDLBenCo import engine
    torch.manual_seed(0)
    model = MODELS.get("srm_segformer")(encoder_name="mit_b0", if_predict_label=True)
    batch = {"image": torch.randn(2, 3, 64, 64), "mask": torch.zeros(2, 1, 64, 64),
             "label": torch.tensor([0, 1]), "shape": torch.tensor([[64, 64]] * 2), "name": ["a", "b"]}
    engine.check_model_output(model(**batch), batch, training=True)
    model.eval()
    with torch.no_grad():
        engine.check_model_output(model(image=batch["image"]), {"image": batch["image"]}, training=False)
