"""ManTra-Net: IMDL-BenCo state-dict compatibility, output contract, the reference's arithmetic
(symmetric padding, hard sigmoid, Bayar projection), weight files, options, one epoch through the
engine. The full parity fixture runs in tests/test_parity.py (``python tests/parity.py MantraNet``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from zoo_common import build_meta, check_output_contract, parse_model_kwargs, shapes_of, train_help
from zoo_manifest import assert_params_close, load_manifest, manifest_state_dict

from IMDLBenCo.model_zoo.mantra_net import IMTFE, MantraNet
from IMDLBenCo.model_zoo.mantra_net.imtfe import symmetric_pad, to_mantra_range
from IMDLBenCo.model_zoo.mantra_net.mantra_net import tf_hard_sigmoid


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MantraNet()


def _batch(size=(32, 32), b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(b, 3, *size, generator=g)
    mask = torch.zeros(b, 1, *size)
    mask[0, :, size[0] // 4: size[0] // 2, size[1] // 3: size[1] - 2] = 1
    return image, mask


# ------------------------------------------------------------------ state dict
def test_state_dict_and_params_match_the_reference():
    man = load_manifest("MantraNet")
    meta = build_meta(MantraNet)
    assert list(meta.state_dict()) == man.keys  # names and order
    assert shapes_of(meta) == man.shapes
    assert_params_close(meta, "MantraNet")
    assert sum(p.numel() for p in meta.parameters()) == man.params
    assert sum(p.numel() for p in meta.parameters() if p.requires_grad) == man.trainable_params
    frozen = [k for k, p in meta.named_parameters() if not p.requires_grad]
    assert frozen == man.frozen == ["IMTFE.SRMConv2D.weight"]


def test_strict_load_of_a_reference_checkpoint(model):
    model.load_state_dict(manifest_state_dict("MantraNet"), strict=True)
    assert torch.all(model.IMTFE.init_conv.weight == 0)
    torch.manual_seed(0)
    model.load_state_dict(MantraNet().state_dict())  # back to usable weights for the other tests


def test_gru_variant_keys():
    keys = list(build_meta(MantraNet, with_GRU=True).state_dict())
    assert "AnomalyDetector.conv_gru.cell_list.0.conv1.weight" in keys
    assert not any("conv_lstm" in k for k in keys)


# ------------------------------------------------------------------ forward
def test_forward_backward_contract(model):
    from IMDLBenCo.engine import check_model_output

    model.train()
    image, mask = _batch(size=(64, 64))
    out = model(image=image, mask=mask, edge_mask=mask, label=torch.tensor([1, 0]), shape=None)
    check_model_output(out, {"image": image, "mask": mask}, training=True)
    check_output_contract(out, 2, (64, 64))
    # IMDL-BenCo's loss: BCE-with-logits applied to the probabilities
    expected = F.binary_cross_entropy_with_logits(out["pred_mask"].detach(), mask)
    torch.testing.assert_close(out["backward_loss"].detach(), expected)
    out["backward_loss"].backward()
    for p in (model.IMTFE.init_conv.weight, model.IMTFE.BayarConv2D.weight, model.IMTFE.middle_and_last_block[22].bias,
              model.AnomalyDetector.adaptation.weight, model.AnomalyDetector.conv_lstm.cell_list[0].conv.weight,
              model.AnomalyDetector.end[0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.IMTFE.SRMConv2D.weight.grad is None
    # the Bayar kernel was projected in place: centre -1, the other 24 weights sum to 1
    w = model.IMTFE.BayarConv2D.weight.detach()
    assert torch.all(w[:, :, 2, 2] == -1)
    torch.testing.assert_close(w.sum(dim=(2, 3)) + 1, torch.ones(3, 3))
    model.zero_grad(set_to_none=True)


def test_inference_without_mask_and_changing_sizes(model):
    """No mask: loss 0. Training at two sizes works (IMDL-BenCo caches the first training size
    for the global statistics)."""
    model.train()
    with torch.no_grad():
        for size in ((32, 32), (24, 40)):
            image, mask = _batch(size=size, b=1)
            out = model(image, mask)
            assert out["pred_mask"].shape == (1, 1, *size)
        model.eval()
        out = model(_batch(size=(20, 28), b=1)[0])
    assert out["pred_mask"].shape == (1, 1, 20, 28) and float(out["backward_loss"]) == 0.0


def test_loss_on_logits_option(model):
    corrected = MantraNet(loss_on_logits=True)
    corrected.load_state_dict(model.state_dict())
    corrected.eval()
    image, mask = _batch(size=(24, 24))
    with torch.no_grad():
        out = corrected(image, mask)
    # a true BCE of the probabilities, not BCE-with-logits of them
    expected = F.binary_cross_entropy(out["pred_mask"].double(), mask.double()).float()
    torch.testing.assert_close(out["backward_loss"], expected, rtol=1e-4, atol=1e-5)
    assert not torch.isclose(out["backward_loss"], F.binary_cross_entropy_with_logits(out["pred_mask"], mask))


def test_anomaly_detector_runs_in_float32_under_autocast(model):
    model.eval()
    image, mask = _batch(size=(16, 16), b=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(image, mask)
    assert out["pred_mask"].dtype == torch.float32 and torch.isfinite(out["pred_mask"]).all()


# ------------------------------------------------------------------ the reference's arithmetic
def test_symmetric_pad_is_numpy_symmetric():
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).view(2, 3, 5, 4)
    for pad in (1, 2):
        ours = symmetric_pad(x, pad).numpy()
        ref = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="symmetric")
        assert np.array_equal(ours, ref)
    with pytest.raises(ValueError, match="larger than the input"):
        symmetric_pad(x[..., :1, :], 2)


def test_hard_sigmoid_is_keras():
    x = torch.tensor([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 2.6], requires_grad=True)
    y = tf_hard_sigmoid(x)
    torch.testing.assert_close(y.detach(), torch.tensor([0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.0]))


def test_input_mapping_and_srm_bank():
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(to_mantra_range((rgb - mean) / std), rgb * 2 - 1)
    w = IMTFE().SRMConv2D.weight
    # output 3k + c reads only colour channel c
    assert torch.count_nonzero(w[4, 0]) == 0 and torch.count_nonzero(w[4, 1]) > 0
    assert float(w[3:6].abs().sum(dim=(1, 2, 3)).min()) > 0 and float(w[0, 0].sum()) == 0.0


# ------------------------------------------------------------------ weight files
def test_weight_files_load(tmp_path, caplog, model):
    torch.manual_seed(3)
    source = MantraNet()
    full = {k: v + 0.5 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    # IMDL-BenCo's modify_weights.py layout ({"model": sd}) and the bare MantraNetv4.pt
    torch.save({"model": full}, tmp_path / "checkpoint-0.pth")
    torch.save(full, tmp_path / "MantraNetv4.pt")
    for name in ("checkpoint-0.pth", "MantraNetv4.pt"):
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            m = MantraNet(weight_path=str(tmp_path / name))
        assert not caplog.records
        for k, v in m.state_dict().items():
            assert torch.equal(v, full[k]), k
    # IMTFEv4.pt: the extractor alone (bare keys); the anomaly detector keeps its own init
    imtfe = {k[len("IMTFE."):]: v for k, v in full.items() if k.startswith("IMTFE.")}
    torch.save(imtfe, tmp_path / "IMTFEv4.pt")
    m = MantraNet(weight_path=str(tmp_path / "IMTFEv4.pt"))
    assert all(torch.equal(v, imtfe[k]) for k, v in m.IMTFE.state_dict().items())
    assert not torch.equal(m.AnomalyDetector.adaptation.weight, full["AnomalyDetector.adaptation.weight"])


def test_weight_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        MantraNet(weight_path=str(tmp_path / "nope.pt"))
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"--weight_path .*other\.pt.*IMTFEv4\.pt"):
        MantraNet(weight_path=str(tmp_path / "other.pt"))
    torch.save(MantraNet().state_dict(), tmp_path / "lstm.pt")
    with pytest.raises(ValueError, match="with_GRU"):
        MantraNet(with_GRU=True, weight_path=str(tmp_path / "lstm.pt"))


def test_one_warning_without_weights(caplog):
    with caplog.at_level(logging.WARNING):
        build_meta(MantraNet)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "--weight_path" in warnings[0].getMessage()


def test_options():
    text = train_help("MantraNet")
    for opt in ("--in_channel", "--eps", "--with_GRU", "--weight_path", "--loss_on_logits"):
        assert opt in text
    kw = parse_model_kwargs("MantraNet", ["--with_GRU", "true", "--eps", "1e-5"])
    assert kw["with_GRU"] is True and kw["eps"] == 1e-5
    with pytest.raises(ValueError, match="in_channel must be 3"):
        build_meta(MantraNet, in_channel=1)


# ------------------------------------------------------------------ engine
def test_one_epoch_through_the_training_entry(tmp_path):
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=32, seed=0)
    res = engine.train_main([
        "--model", "MantraNet", "--data_path", info["splits"]["train"], "--test_data_path", info["splits"]["test"],
        "--output_dir", str(tmp_path / "out"), "--epochs", "1", "--batch_size", "2", "--test_batch_size", "2",
        "--image_size", "32", "--if_resizing", "--accum_iter", "1", "--warmup_epochs", "0", "--num_workers", "0",
        "--device", "cpu", "--test_period", "1"], train_transform=False)
    assert 0.0 < res["train_predict_loss"] < 2.0
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    ckpt = torch.load(tmp_path / "out" / "checkpoint-0.pth", weights_only=True)
    MantraNet().load_state_dict(ckpt["model"], strict=True)


@pytest.mark.slow
def test_recommended_size_forward(model):
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 512, 512))
    assert out["pred_mask"].shape == (1, 1, 512, 512)
