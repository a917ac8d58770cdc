"""SPAN: IMDL-BenCo state-dict compatibility (plus the registered last layers), loading reference
checkpoints that lack those layers, output contract, pixel attention, weight files, options, one
epoch through the engine, and the parity fixture.

IMDL-BenCo 0.1.45 draws SPAN's last four convolutions from the global RNG inside every forward
call. ``redraw_last_layer=True`` reproduces that (state dict = the reference's), which is how the
whole fixture is matched (``test_parity_fixture_reference_mode``); the default model, whose
registered ``last_layer`` holds the same draws, is checked against the fixture too."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from zoo_common import build_meta, check_output_contract, parse_model_kwargs, shapes_of, train_help
from zoo_manifest import assert_params_close, load_manifest, manifest_state_dict

from IMDLBenCo.model_zoo.mantra_net import IMTFE
from IMDLBenCo.model_zoo.span import SPAN, PixelAttention
from IMDLBenCo.model_zoo.span.span import _last_layer

LAST = ["last_layer.0.weight", "last_layer.0.bias", "last_layer.2.weight", "last_layer.2.bias",
        "last_layer.4.weight", "last_layer.4.bias", "last_layer.6.weight", "last_layer.6.bias"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SPAN()


def _batch(size=64, b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(b, 3, size, size, generator=g)
    mask = torch.zeros(b, 1, size, size)
    mask[0, :, size // 4: size // 2, size // 3: size - 2] = 1
    return image, mask


def _seeded_last_layer(seed: int = 0) -> dict:
    """The weights IMDL-BenCo's per-call layers get right after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return {f"last_layer.{k}": v for k, v in _last_layer().state_dict().items()}


# ------------------------------------------------------------------ state dict
def test_state_dict_and_params():
    man = load_manifest("SPAN")
    meta = build_meta(SPAN)
    keys = list(meta.state_dict())
    assert keys[: len(man.keys)] == man.keys and keys[len(man.keys):] == LAST
    assert list(meta.optional_checkpoint_keys()) == LAST
    assert {k: v for k, v in shapes_of(meta).items() if k in man.shapes} == man.shapes
    assert_params_close(meta, "SPAN")  # 16,929 more (the registered last layers): +0.42 %
    assert sum(p.numel() for p in meta.parameters()) - man.params == 16 * 32 * 25 + 16 + 8 * 16 * 25 + 8 + 4 * 8 * 25 + 4 + 4 * 25 + 1
    assert [k for k, p in meta.named_parameters() if not p.requires_grad] == man.frozen
    # the reference mode is the reference's state dict exactly
    ref = build_meta(SPAN, redraw_last_layer=True)
    assert list(ref.state_dict()) == man.keys and ref.optional_checkpoint_keys() == ()
    assert sum(p.numel() for p in ref.parameters()) == man.params
    assert sum(p.numel() for p in ref.parameters() if p.requires_grad) == man.trainable_params


def test_reference_checkpoint_loads_strictly_with_a_message(caplog):
    torch.manual_seed(0)
    m = SPAN()
    before = {k: v.clone() for k, v in m.last_layer.state_dict().items()}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = m.load_state_dict(manifest_state_dict("SPAN"), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.all(m.featex.init_conv.weight == 0)
    assert all(torch.equal(v, before[k]) for k, v in m.last_layer.state_dict().items())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "last_layer" in warnings[0] and "untrained" in warnings[0]
    # a state dict with only part of last_layer is still incomplete
    partial = dict(manifest_state_dict("SPAN"), **{LAST[0]: torch.zeros(16, 32, 5, 5)})
    with pytest.raises(RuntimeError, match="last_layer.0.bias"):
        m.load_state_dict(partial, strict=True)
    # also when SPAN sits inside another module
    outer = torch.nn.Sequential(m)
    outer.load_state_dict({f"0.{k}": v for k, v in manifest_state_dict("SPAN").items()}, strict=True)


def test_engine_loads_a_reference_checkpoint(tmp_path):
    from IMDLBenCo.engine import load_checkpoint

    torch.save({"model": manifest_state_dict("SPAN")}, tmp_path / "checkpoint-0.pth")
    load_checkpoint(tmp_path / "checkpoint-0.pth", build_meta(SPAN).to_empty(device="cpu"))


# ------------------------------------------------------------------ forward
def test_forward_backward_contract(model):
    from IMDLBenCo.engine import check_model_output

    model.train()
    image, mask = _batch(64)
    out = model(image=image, mask=mask, edge_mask=mask, label=torch.tensor([1, 0]), shape=None)
    check_model_output(out, {"image": image, "mask": mask}, training=True)
    check_output_contract(out, 2, (64, 64))
    expected = F.binary_cross_entropy(out["pred_mask"].detach().double(), mask.double()).float()
    torch.testing.assert_close(out["backward_loss"].detach(), expected, rtol=1e-4, atol=1e-5)
    out["backward_loss"].backward()
    for p in (model.featex.init_conv.weight, model.featex.BayarConv2D.weight, model.outlier_trans.weight,
              model.pixel_attention[0].k_p.weight, model.pixel_attention[4].ff3.weight,
              model.last_layer[0].weight, model.last_layer[6].bias):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.featex.SRMConv2D.weight.grad is None
    model.zero_grad(set_to_none=True)


def test_prediction_is_deterministic_unlike_the_reference(model):
    model.eval()
    image, _ = _batch(16, b=1)
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(image)["pred_mask"]
        torch.manual_seed(1)
        b = model(image)["pred_mask"]
        ref = SPAN(redraw_last_layer=True)
        ref.load_state_dict(model.state_dict(), strict=False)  # everything but last_layer
        ref.eval()
        torch.manual_seed(0)
        r0 = ref(image)["pred_mask"]
        torch.manual_seed(1)
        r1 = ref(image)["pred_mask"]
    # equal up to the float drift of the in-place Bayar projection (as in the reference)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert float((r0 - r1).abs().max()) > 1e-3  # the reference's output follows the global RNG
    assert a.shape == (1, 1, 16, 16)


def test_default_model_computes_the_reference_function(model):
    """With ``last_layer`` holding the reference's seed-0 draws, the default model equals the
    reference mode run after ``torch.manual_seed(0)`` (outputs, loss and gradients)."""
    ref = SPAN(redraw_last_layer=True)
    ref.load_state_dict(model.state_dict(), strict=False)
    ours = SPAN()
    ours.load_state_dict(dict(model.state_dict(), **_seeded_last_layer(0)), strict=True)
    image, mask = _batch(24)
    outs = []
    for m in (ours, ref):
        m.eval()
        torch.manual_seed(0)
        out = m(image, mask)
        out["backward_loss"].backward()
        outs.append(out)
    torch.testing.assert_close(outs[0]["pred_mask"], outs[1]["pred_mask"], rtol=0, atol=0)
    torch.testing.assert_close(outs[0]["backward_loss"], outs[1]["backward_loss"], rtol=0, atol=0)
    torch.testing.assert_close(ours.outlier_trans.weight.grad, ref.outlier_trans.weight.grad, rtol=0, atol=0)


def test_per_pixel_attention_attends_over_each_pixels_neighbours():
    torch.manual_seed(0)
    block = PixelAttention(in_channels=2, shift=2, per_pixel=True)
    x = torch.randn(1, 2, 5, 6)
    with torch.no_grad():
        got = block(x)
        k, v, q = block.k_p(x), block.v_p(x), block.q_p(x)
        attended = torch.zeros_like(x)
        for y in range(5):
            for xx in range(6):
                scores, vals = [], []
                for n, (dy, dx) in enumerate((dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2)):
                    yy, xn = y + dy, xx + dx
                    inside = 0 <= yy < 5 and 0 <= xn < 6
                    kn = k[0, 2 * n:2 * n + 2, yy, xn] if inside else torch.zeros(2)
                    vals.append(v[0, 2 * n:2 * n + 2, yy, xn] if inside else torch.zeros(2))
                    scores.append(float(kn @ q[0, :, y, xx]) * float(inside) / 8)
                alpha = torch.softmax(torch.tensor(scores), dim=0)
                attended[0, :, y, xx] = sum(a * vn for a, vn in zip(alpha, vals))
        t = x + attended
        expected = t + F.relu(block.ff3(F.relu(block.ff2(F.relu(block.ff1(t))))))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    block.per_pixel = False  # the reference's reinterpretation gives something else
    with torch.no_grad():
        assert not torch.allclose(block(x), expected)


# ------------------------------------------------------------------ weight files
def test_feature_extractor_weight_files(tmp_path, caplog):
    torch.manual_seed(5)
    imtfe = {k: v + 0.25 for k, v in IMTFE().state_dict().items()}
    torch.save(imtfe, tmp_path / "IMTFEv4.pt")  # the port's layout: bare IMTFE keys
    torch.save({f"IMTFE.{k}": v for k, v in imtfe.items()} | {"AnomalyDetector.sigma_F": torch.zeros(1, 64, 1, 1)},
               tmp_path / "MantraNetv4.pt")
    for name in ("IMTFEv4.pt", "MantraNetv4.pt"):
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            m = SPAN(weight_path=str(tmp_path / name))
        assert not caplog.records
        assert all(torch.equal(v, imtfe[k]) for k, v in m.featex.state_dict().items())
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        SPAN(weight_path=str(tmp_path / "missing.pt"))
    torch.save({k: v for k, v in imtfe.items() if not k.startswith("middle")}, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match=r"--weight_path .*cut\.pt.*middle_and_last_block"):
        SPAN(weight_path=str(tmp_path / "cut.pt"))


def test_one_warning_without_weights(caplog):
    with caplog.at_level(logging.WARNING):
        build_meta(SPAN, weight_path=None)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "--weight_path" in warnings[0].getMessage()


def test_options():
    text = train_help("SPAN")
    for opt in ("--weight_path", "--layers_steps", "--redraw_last_layer", "--per_pixel_attention"):
        assert opt in text
    kw = parse_model_kwargs("SPAN", ["--layers_steps", "1", "3", "--weight_path", "IMTFEv4.pt"])
    assert list(kw["layers_steps"]) == [1, 3] and kw["weight_path"] == "IMTFEv4.pt"
    assert len(build_meta(SPAN, layers_steps=[1, 3]).pixel_attention) == 2
    with pytest.raises(ValueError, match="layers_steps"):
        build_meta(SPAN, layers_steps=[0])


# ------------------------------------------------------------------ engine
def test_one_epoch_through_the_training_entry(tmp_path):
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=32, seed=0)
    res = engine.train_main([
        "--model", "SPAN", "--data_path", info["splits"]["train"], "--test_data_path", info["splits"]["test"],
        "--output_dir", str(tmp_path / "out"), "--epochs", "1", "--batch_size", "2", "--test_batch_size", "2",
        "--image_size", "32", "--if_resizing", "--accum_iter", "1", "--warmup_epochs", "0", "--num_workers", "0",
        "--device", "cpu", "--test_period", "1"], train_transform=False)
    assert 0.0 < res["train_predict_loss"] < 10.0
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    saved = torch.load(tmp_path / "out" / "checkpoint-0.pth", weights_only=True)["model"]
    assert set(LAST) <= set(saved)  # the last layers are saved
    SPAN().load_state_dict(saved, strict=True)


# ------------------------------------------------------------------ parity fixture (256 px: minutes on a CPU)
@pytest.fixture
def _reference_numerics():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_parity_fixture_reference_mode(_reference_numerics):
    """The whole fixture (eval outputs, loss, every gradient norm) with the reference's per-call
    last layers."""
    from parity import MODELS_DIR, run_model_fixture

    if not (MODELS_DIR / "SPAN.pt").is_file():
        pytest.skip("SPAN parity fixture not present")
    rep = run_model_fixture("SPAN", build=lambda name, kw: SPAN(**kw, redraw_last_layer=True))
    assert rep.ok, rep.problems


@pytest.mark.slow
def test_parity_fixture_default_model(_reference_numerics):
    """The default model, filled by the fixture's rule, with ``last_layer`` set to the draws the
    reference made after ``torch.manual_seed(0)``: same eval outputs, loss and gradient norms of
    every reference parameter."""
    from parity import MODELS_DIR, Report, compare_grads, compare_outputs, filled_state_dict, load_fixture, load_inputs

    if not (MODELS_DIR / "SPAN.pt").is_file():
        pytest.skip("SPAN parity fixture not present")
    fx = load_fixture("SPAN")
    inputs = load_inputs(fx["input_file"])
    torch.manual_seed(0)
    m = SPAN(weight_path=None)
    sd = filled_state_dict(m)
    sd.update(_seeded_last_layer(0))
    m.load_state_dict(sd, strict=True)
    m.eval()
    rep = Report("SPAN")
    with torch.no_grad():
        out = m(**{k: v.clone() for k, v in inputs.items()})
    compare_outputs(rep, "eval", out, fx["eval"], fx["sensitivity"])
    m.zero_grad(set_to_none=True)
    m(**{k: v.clone() for k, v in inputs.items()})["backward_loss"].backward()
    grads = {k: None if p.grad is None else float(p.grad.double().norm())
             for k, p in m.named_parameters() if not k.startswith("last_layer.")}
    compare_grads(rep, grads, fx["grad_norms"])
    assert rep.ok, rep.problems
