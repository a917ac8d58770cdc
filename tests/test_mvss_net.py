"""MVSS-Net: output contract, losses, IMDL-BenCo state-dict compatibility, options."""

from __future__ import annotations

import logging

import pytest
import torch
from zoo_common import parse_model_kwargs, train_help
from zoo_manifest import assert_params_close, load_manifest, manifest_state_dict

from IMDLBenCo.model_zoo.mvss_net.mvss_net import BayarConv2d, MVSSNet, dice_loss


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MVSSNet(pretrained_base=False)


def _batch(b=2, s=32):
    g = torch.Generator().manual_seed(1)
    image = torch.randn(b, 3, s, s + 16, generator=g)  # not square: no square-input assumption
    mask = torch.zeros(b, 1, s, s + 16)
    mask[0, :, 8:20, 10:30] = 1
    edge = torch.zeros_like(mask)
    edge[0, :, 6:12, 8:32] = 1
    label = torch.tensor([1, 0])
    return image, mask, edge, label


@pytest.fixture(scope="module")
def train_out(model):
    model.train()
    image, mask, edge, label = _batch()
    return model(image, mask, edge, label)


def test_forward_backward_contract(model, train_out):
    from IMDLBenCo.engine import check_model_output

    image, mask, edge, label = _batch()
    out = train_out
    check_model_output(out, {"image": image, "mask": mask, "label": label}, training=True)
    assert out["pred_mask"].shape == mask.shape
    assert out["pred_label"].shape == (2,)
    assert set(out["visual_loss"]) == {"predict_loss", "edge_loss", "label_loss", "combined_loss"}
    for v in out["visual_loss"].values():
        assert torch.isfinite(v)
    # the label score is the max pixel probability
    torch.testing.assert_close(out["pred_label"], out["pred_mask"].flatten(1).max(1).values)
    vl = out["visual_loss"]
    torch.testing.assert_close(out["backward_loss"].detach(),
                               0.16 * vl["predict_loss"] + 0.04 * vl["label_loss"] + 0.8 * vl["edge_loss"])
    out["backward_loss"].backward()
    assert model.constrain_conv.kernel.grad is not None and model.constrain_conv.kernel.grad.abs().sum() > 0
    assert model.erb_db_4.conv1.weight.grad is not None
    assert model.sobel_x1[0].weight.grad is None  # Sobel kernels are frozen
    model.zero_grad(set_to_none=True)


def test_eval_without_mask(model):
    model.eval()
    image = _batch(b=1)[0]
    with torch.no_grad():
        out = model(image)
    assert out["pred_mask"].shape == (1, 1, 32, 48)
    assert 0 <= float(out["pred_mask"].min()) and float(out["pred_mask"].max()) <= 1


def test_label_loss_is_the_reference_bce_with_logits_of_the_max_probability(train_out):
    # IMDL-BenCo 0.1.45 (the default): BCE-with-logits applied to the max *probability*
    label = _batch()[3]
    out = train_out
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out["pred_label"].detach(), label.float())
    torch.testing.assert_close(out["visual_loss"]["label_loss"], expected, rtol=1e-5, atol=1e-6)


def test_corrected_label_loss_is_an_option():
    torch.manual_seed(0)
    m = MVSSNet(pretrained_base=False, label_loss_on_logits=True).train()
    image, mask, edge, label = _batch()
    out = m(image, mask, edge, label)
    p = out["pred_label"].detach().double()
    expected = torch.nn.functional.binary_cross_entropy(p, label.double())
    torch.testing.assert_close(out["visual_loss"]["label_loss"].double(), expected, rtol=1e-4, atol=1e-5)
    assert parse_model_kwargs("MVSSNet", ["--label_loss_on_logits", "true"])["label_loss_on_logits"] is True
    assert "--label_loss_on_logits" in train_help("MVSSNet")


def test_dice_loss_values():
    g = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert float(dice_loss(g, g)) == pytest.approx(0.0)
    assert float(dice_loss(1 - g, g)) == pytest.approx(1 - 1 / 5)


def test_bayar_kernel_is_projected_in_place_before_the_convolution():
    conv = BayarConv2d(1, 3, 5, padding=2)
    x = torch.randn(2, 1, 12, 12)
    y = conv(x)  # the forward pass rewrites ``kernel`` (IMDL-BenCo 0.1.45)
    torch.testing.assert_close(conv.kernel.detach().sum(-1), torch.ones(1, 3))
    k = conv.constrained_kernel()
    assert k.shape == (3, 1, 5, 5)
    torch.testing.assert_close(k[:, 0, 2, 2], -torch.ones(3))
    torch.testing.assert_close(k.sum(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    # the gradient is the plain convolution gradient of the applied kernel, not through the projection
    y.square().sum().backward()
    kk = k.detach().clone().requires_grad_(True)
    torch.nn.functional.conv2d(x, kk, padding=2).square().sum().backward()
    ctr = 12
    expected = torch.cat([kk.grad.reshape(1, 3, 25)[..., :ctr], kk.grad.reshape(1, 3, 25)[..., ctr + 1:]], -1)
    torch.testing.assert_close(conv.kernel.grad, expected)


def test_params_and_strict_load(model):
    man = load_manifest("MVSSNet")
    assert_params_close(model, "MVSSNet")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == man.trainable_params
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert own == man.shapes
    model.load_state_dict(manifest_state_dict("MVSSNet"), strict=True)


def test_no_base_weights_warns_once(caplog):
    with caplog.at_level(logging.WARNING):
        MVSSNet(constrain=False)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "random" in warnings[0].getMessage()


def test_base_weights_load_into_both_streams(tmp_path, model):
    # a torchvision-named ResNet-50 state dict (the RGB stream has exactly those names)
    sd = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in model.model.state_dict().items()}
    path = tmp_path / "resnet50.pth"
    torch.save(sd, path)
    m = MVSSNet(resnet50_weights=str(path))
    assert torch.all(m.model.layer3[2].conv2.weight == 0.5)
    assert torch.all(m.noise_extractor.model.layer4[0].conv1.weight == 0.5)


def test_help_lists_options():
    text = train_help("MVSSNet")
    for opt in ("--nclass", "--sobel", "--if_label", "--constrain", "--pretrained_base", "--resnet50_weights"):
        assert opt in text
    kwargs = parse_model_kwargs("MVSSNet", ["--no-pretrained_base", "--aux", "true"])
    assert kwargs["pretrained_base"] is False and kwargs["aux"] is True


@pytest.mark.slow
def test_full_size_forward_and_amp(model):
    """Recommended size (512) in evaluation, and a bfloat16-autocast training step."""
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 512, 512))
    assert out["pred_mask"].shape == (1, 1, 512, 512)
    model.train()
    image, mask, edge, label = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(image, mask, edge, label)
    assert torch.isfinite(out["backward_loss"])
    out["backward_loss"].backward()
    assert torch.isfinite(model.head.conv_p1[0].weight.grad).all()
    model.zero_grad(set_to_none=True)
