"""PSCC-Net: output contract, losses, AMP, IMDL-BenCo state-dict compatibility, options."""

from __future__ import annotations

import logging

import pytest
import torch
from zoo_common import parse_model_kwargs, train_help
from zoo_manifest import assert_params_close, load_manifest, manifest_state_dict

from IMDLBenCo.model_zoo.pscc_net import PSCC_Net, convert_official_checkpoints
from IMDLBenCo.model_zoo.pscc_net.pscc_net import balanced_bce_with_logits


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PSCC_Net()


def _batch(b=2, h=40, w=56):
    g = torch.Generator().manual_seed(1)
    image = torch.randn(b, 3, h, w, generator=g)
    mask = torch.zeros(b, 1, h, w)
    mask[0, :, 8:24, 10:40] = 1
    return image, mask, torch.tensor([1, 0])


def test_forward_backward_contract(model):
    from IMDLBenCo.engine import check_model_output

    model.train()
    image, mask, label = _batch(h=36, w=52)  # not a multiple of 8: output still at input size
    out = model(image, mask, label)
    check_model_output(out, {"image": image, "mask": mask, "label": label}, training=True)
    assert out["pred_mask"].shape == mask.shape
    assert out["pred_label"].shape == (2,)
    assert set(out["visual_loss"]) == {"seg_loss", "cls_loss", "combined_loss"}
    vl = out["visual_loss"]
    torch.testing.assert_close(out["backward_loss"].detach(), vl["seg_loss"] + vl["cls_loss"])
    out["backward_loss"].backward()
    assert model.SegNet.getmask4.theta.weight.grad.abs().sum() > 0
    assert model.ClsNet.classifier[2].weight.grad.abs().sum() > 0
    assert model.FENet.conv1.weight.grad.abs().sum() > 0
    assert model.weights.grad is None  # frozen class weights
    model.zero_grad(set_to_none=True)


def test_masks_are_progressive(model):
    model.eval()
    image = _batch(b=1)[0]
    with torch.no_grad():
        feats = model._features(image)
        logits = model.SegNet(feats)
    assert [tuple(lg.shape[-2:]) for lg in logits] == [(40, 56), (20, 28), (10, 14), (5, 7)]


def test_amp_bfloat16_forward_backward(model):
    """Losses are on logits, so the model trains under autocast (IMDL-BenCo needed --if_not_amp)."""
    model.train()
    image, mask, label = _batch(b=2, h=32, w=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(image, mask, label)
    assert torch.isfinite(out["backward_loss"])
    out["backward_loss"].backward()
    assert torch.isfinite(model.FENet.conv1.weight.grad).all()
    model.zero_grad(set_to_none=True)


def test_balanced_bce():
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    logits = torch.zeros(4)
    # every pixel's BCE is log 2; weights 0.5*4/1 = 2 for the positive, 0.5*4/3 for negatives
    expected = torch.log(torch.tensor(2.0)) * (2 + 3 * (2 / 3)) / 4
    torch.testing.assert_close(balanced_bce_with_logits(logits, target), expected)
    torch.testing.assert_close(balanced_bce_with_logits(logits, torch.zeros(4)), torch.log(torch.tensor(2.0)))


def test_params_and_strict_load(model):
    man = load_manifest("PSCC_Net")
    assert_params_close(model, "PSCC_Net")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == man.trainable_params
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == man.shapes
    model.load_state_dict(manifest_state_dict("PSCC_Net"), strict=True)


def test_pretrained_backbone_and_official_converter(tmp_path, caplog):
    ref = PSCC_Net()
    fe = {k: torch.full_like(v, 0.25) if v.is_floating_point() else v for k, v in ref.FENet.state_dict().items()}
    fe["incre_modules.0.0.conv1.weight"] = torch.zeros(32, 64, 1, 1)  # ImageNet head: reported, ignored
    torch.save(fe, tmp_path / "hrnet.pth")
    with caplog.at_level(logging.INFO):
        m = PSCC_Net(pretrain_path=str(tmp_path / "hrnet.pth"))
    assert torch.all(m.FENet.stage4[0].branches[3][1].conv2.weight == 0.25)
    assert "incre_modules.0.0.conv1.weight" in caplog.text  # the unexpected key is named
    torch.save({"module." + k: v for k, v in ref.SegNet.state_dict().items()}, tmp_path / "seg.pth")
    torch.save(ref.ClsNet.state_dict(), tmp_path / "cls.pth")
    torch.save(ref.FENet.state_dict(), tmp_path / "fe.pth")
    sd = convert_official_checkpoints(str(tmp_path / "fe.pth"), str(tmp_path / "seg.pth"), str(tmp_path / "cls.pth"))
    m.load_state_dict(sd, strict=True)
    torch.testing.assert_close(m.SegNet.getmask1.phi.weight, ref.SegNet.getmask1.phi.weight)


def test_help_lists_options():
    text = train_help("PSCC_Net")
    assert "--input_size" in text and "--pretrain_path" in text
    kwargs = parse_model_kwargs("PSCC_Net", ["--input_size", "512"])
    assert kwargs["input_size"] == 512 and kwargs.get("pretrain_path") is None


@pytest.mark.slow
def test_full_size_forward(model):
    """Recommended size (256) in evaluation: masks at 256/128/64/32, output at the input size."""
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 256))
    assert out["pred_mask"].shape == (2, 1, 256, 256) and out["pred_label"].shape == (2,)


# ---------------------------------------------------------------------------------- reference order
# PSCC-Net is ill-conditioned enough that a few-ulp difference grows into visible mask and gradient
# differences (issue 28), so these pin the order of IMDL-BenCo's arithmetic, bit for bit.
def _fill_deterministic(module: torch.nn.Module, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) * (0.3 if t.dim() > 1 else 0.1))


def test_hrnet_fusion_sums_branches_in_reference_order():
    """Fused output i = contribution of branch 0 + branch 1 + ... + branch n-1, in that order
    (branch i contributes its own map), as HRNet's reference code adds them."""
    import torch.nn.functional as F

    from IMDLBenCo.model_zoo.pscc_net.hrnet import HighResolutionModule

    module = HighResolutionModule((1, 1, 1, 1), (4, 6, 8, 10))
    _fill_deterministic(module)
    module.eval()
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(2, c, 32 // 2 ** k, 32 // 2 ** k, generator=g) * 3 for k, c in enumerate((4, 6, 8, 10))]
    with torch.no_grad():
        out = module(list(xs))
        branch_out = [branch(x) for branch, x in zip(module.branches, xs)]

        def contribution(i, j):
            if j == i:
                return branch_out[i]
            z = module.fuse_layers[i][j](branch_out[j])
            return F.interpolate(z, size=branch_out[i].shape[-2:], mode="bilinear", align_corners=True) if j > i else z

        for i in range(4):
            parts = [contribution(i, j) for j in range(4)]
            reference = parts[0]
            for part in parts[1:]:
                reference = reference + part
            assert torch.equal(out[i], torch.relu(reference)), f"fused output {i} is not summed in branch order"
            if i >= 2:  # the data tell the orders apart: starting from the own branch rounds differently
                own_first = parts[i]
                for j in (j for j in range(4) if j != i):
                    own_first = own_first + parts[j]
                assert not torch.equal(torch.relu(own_first), out[i])


def test_non_local_convolutions_get_contiguous_inputs():
    """The attention outputs reach W_s / W_c in the default (contiguous) layout, as in the reference:
    at reduce_scale 1 a channels-last view would run PyTorch's channels-last kernel, which rounds
    differently. The detection head pools with avg_pool2d, as the reference."""
    import torch.nn.functional as F

    from IMDLBenCo.model_zoo.pscc_net.pscc_net import DetectionHead, NLCDetection

    seg = NLCDetection((4, 6, 8, 10))
    _fill_deterministic(seg)
    seg.eval()
    seen = []
    hooks = [conv.register_forward_pre_hook(lambda mod, args, tag=tag: seen.append((tag, args[0].is_contiguous())))
             for name, head in seg.named_children() for tag, conv in ((f"{name}.W_s", head.W_s), (f"{name}.W_c", head.W_c))]
    g = torch.Generator().manual_seed(7)
    feats = [torch.randn(2, c, 32 // 2 ** k, 32 // 2 ** k, generator=g) for k, c in enumerate((4, 6, 8, 10))]
    with torch.no_grad():
        seg(feats)
    for h in hooks:
        h.remove()
    assert len(seen) == 8 and all(ok for _, ok in seen), [tag for tag, ok in seen if not ok]

    head = DetectionHead((4, 6, 8, 10))
    _fill_deterministic(head)
    head.eval()
    pooled_in = {}
    head.final_layer.register_forward_hook(lambda mod, args, out: pooled_in.setdefault("y", out))
    with torch.no_grad():
        logits = head([torch.randn(2, c, 24 // 2 ** k, 24 // 2 ** k, generator=g) for k, c in enumerate((4, 6, 8, 10))])
        y = pooled_in["y"]
        expected = head.classifier(F.avg_pool2d(y, kernel_size=y.shape[-2:]).flatten(1))
    assert torch.equal(logits, expected)
