"""Mesorch: output contract, frequency views, pretrained loading, IMDL-BenCo state-dict
compatibility, options."""

from __future__ import annotations

import logging

import pytest
import torch
from zoo_common import parse_model_kwargs, train_help
from zoo_manifest import assert_params_close, load_manifest, manifest_state_dict

from IMDLBenCo.model_zoo.mesorch import Mesorch
from IMDLBenCo.model_zoo.mesorch.mesorch import convnext_key_map


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Mesorch()


def test_forward_backward_contract(model):
    from IMDLBenCo.engine import check_model_output

    model.train()
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, 32, 48, generator=g)  # not a multiple of 32, not square
    mask = torch.zeros(2, 1, 32, 48)
    mask[0, :, 4:20, 8:30] = 1
    out = model(image, mask)
    check_model_output(out, {"image": image, "mask": mask}, training=True)
    assert out["pred_mask"].shape == (2, 1, 32, 48)  # the input size, not a fixed 512
    assert out["pred_label"] is None
    expected = torch.nn.functional.binary_cross_entropy(out["pred_mask"].detach().clamp(1e-7, 1 - 1e-7), mask)
    torch.testing.assert_close(out["visual_loss"]["predict_loss"], expected, rtol=1e-4, atol=1e-5)
    out["backward_loss"].backward()
    for p in (model.convnext.stem[0].weight, model.segformer.patch_embed1.proj.weight, model.gate.conv2.weight,
              model.inverse[7].weight, model.upsample.upsamplec4[2].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_frequency_views(model):
    g = torch.Generator().manual_seed(2)
    image = torch.randn(2, 3, 40, 40, generator=g)
    high, low = model._frequency_views(image)
    assert high.shape == low.shape == image.shape
    for v in (high, low):
        assert float(v.min()) >= 0 and float(v.max()) <= 1
    # the low-pass view is smoother than the high-pass one
    tv = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    assert tv(low) < tv(high)


def test_params_and_strict_load(model):
    man = load_manifest("Mesorch")
    with torch.device("meta"):
        meta = Mesorch()
    assert_params_close(meta, "Mesorch")
    assert list(meta.state_dict()) == man.keys
    assert {k: list(v.shape) for k, v in meta.state_dict().items()} == man.shapes
    model.load_state_dict(manifest_state_dict("Mesorch"), strict=True)
    assert model.segformer.block3[17].norm2.eps == 1e-6 and model.segformer.norm4.eps == 1e-6


@pytest.mark.slow
def test_full_size_forward_and_amp(model):
    """Recommended size (512) in evaluation, and a bfloat16-autocast training step."""
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 512, 512))
    assert out["pred_mask"].shape == (1, 1, 512, 512)
    model.train()
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 10:30, 20:50] = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(1, 3, 64, 64), mask)
    assert torch.isfinite(out["backward_loss"])
    out["backward_loss"].backward()
    assert torch.isfinite(model.gate.conv1.weight.grad).all()
    model.zero_grad(set_to_none=True)


def test_pretrained_files_load_with_widened_stems(tmp_path, caplog, model):
    # runs after the tests that use the module's model: it overwrites its weights
    ref = model
    # SegFormer mit_b3.pth layout: 3-channel stem with bias, plus a classification head
    seg = {k: torch.full(v.shape, 0.5) for k, v in ref.segformer.state_dict().items()}
    seg["patch_embed1.proj.weight"] = torch.full((64, 3, 7, 7), 0.25)
    seg["patch_embed1.proj.bias"] = torch.zeros(64)
    seg["head.weight"] = torch.zeros(1000, 512)
    torch.save(seg, tmp_path / "mit_b3.pth")
    # official facebookresearch ConvNeXt names
    conv = {"downsample_layers.0.0.weight": torch.full((96, 3, 4, 4), 0.75),
            "stages.2.8.pwconv1.weight": torch.full((1536, 384), 0.125),
            "downsample_layers.3.1.weight": torch.full((768, 384, 2, 2), 0.5),
            "norm.weight": torch.full((768,), 2.0), "head.weight": torch.full((1000, 768), 3.0)}
    torch.save({"model": conv}, tmp_path / "convnext_tiny.pth")
    m = model
    with caplog.at_level(logging.INFO):
        m._load_pretrained(str(tmp_path / "mit_b3.pth"), True, str(tmp_path / "convnext_tiny.pth"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    stem = m.segformer.patch_embed1.proj.weight
    assert torch.all(stem[:, :3] == 0.25) and not torch.all(stem[:, 3:] == 0.25)
    assert torch.all(m.segformer.block3[17].mlp.fc2.weight == 0.5)
    assert "patch_embed1.proj.bias" in caplog.text  # reported as unexpected
    assert torch.all(m.convnext.stem[0].weight[:, :3] == 0.75)
    assert torch.all(m.convnext.stages[2].blocks[8].mlp.fc1.weight == 0.125)
    assert torch.all(m.convnext.stages[3].downsample[1].weight == 0.5)
    assert torch.all(m.convnext.head.norm.weight == 2.0) and torch.all(m.convnext.head.fc.weight == 3.0)


def test_convnext_key_map_keeps_timm_names():
    for k in ("stem.0.weight", "stages.1.downsample.1.weight", "stages.0.blocks.2.conv_dw.weight",
              "head.fc.bias", "head.norm.weight"):
        assert convnext_key_map(k) == k


def test_one_warning_without_weights(caplog):
    with caplog.at_level(logging.WARNING), torch.device("meta"):
        Mesorch(conv_pretrain=True)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "conv_pretrain_path" in warnings[0].getMessage()


def test_help_lists_options():
    text = train_help("Mesorch")
    for opt in ("--seg_pretrain_path", "--conv_pretrain", "--conv_pretrain_path"):
        assert opt in text
    # IMDL-BenCo's scripts pass --conv_pretrain True
    assert parse_model_kwargs("Mesorch", ["--conv_pretrain", "True"])["conv_pretrain"] is True


def test_pos_weight_weights_the_manipulated_pixels(model):
    import copy

    weighted = copy.copy(model)  # the same modules and weights; only the loss option differs
    weighted.pos_weight = 3.0  # what Mesorch(pos_weight=3.0) stores
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:12, 4:20] = 1
    model.eval()
    with torch.no_grad():
        a, b = model(image, mask), weighted(image, mask)
    logits = torch.logit(a["pred_mask"].double().clamp(1e-12, 1 - 1e-12))
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, mask.double(), pos_weight=torch.tensor([3.0]).double())
    torch.testing.assert_close(b["backward_loss"].double(), want, rtol=1e-4, atol=1e-6)
    assert float(b["backward_loss"]) > float(a["backward_loss"])
    assert parse_model_kwargs("Mesorch", ["--pos_weight", "2.5"])["pos_weight"] == 2.5
    with pytest.raises(ValueError, match="pos_weight"):
        Mesorch(pos_weight=0)
