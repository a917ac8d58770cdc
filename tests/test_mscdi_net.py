"""MSCDI_Net: manifest keys/shapes/params, strict load, GLCA attention, upsampler, options, small
CPU forward/backward, loss, pretrained loading, one epoch through the training entry.

The default configuration (MiT-B4, GLCA, cross-attention fusion) is compared with IMDL-BenCo by
tests/test_parity.py; here the small MiT-B2 without GLCA (``SMALL``) exercises the same decoder
at 64 px, and the GLCA attention is tested on its own.
"""

import logging

import pytest
import torch
import torch.nn.functional as F
from zoo_common import build_meta, check_output_contract, parse_model_kwargs, shapes_of, train_help
from zoo_manifest import assert_params_close, count_params, load_manifest, manifest_state_dict

from IMDLBenCo.model_zoo.mscdi_net.blocks import DySampleUpsample
from IMDLBenCo.model_zoo.mscdi_net.glca_mit import GLCAAttention, _unwindow, _windows
from IMDLBenCo.registry import MODELS

SMALL = dict(backbone="mit_bit2", glca=0)


def _batch(b=2, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, h, w, generator=g)
    mask = torch.zeros(b, 1, h, w)
    mask[:, :, h // 4: h // 2, w // 4: w // 2] = 1
    edge = torch.zeros_like(mask)
    edge[:, :, h // 4 - 2: h // 4 + 2, :] = 1
    return x, mask, edge


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return MODELS.get("MSCDI_Net")(**SMALL)


# ------------------------------------------------------------------ state dict
def test_manifest_keys_order_shapes_params():
    man = load_manifest("MSCDI_Net")
    model = build_meta(MODELS.get("MSCDI_Net"))
    assert list(model.state_dict()) == man.keys
    assert shapes_of(model) == man.shapes
    assert_params_close(model, "MSCDI_Net")
    assert count_params(model) == man.params == 81_476_461
    # 41 blocks, stochastic depth rising linearly 0 -> 0.1: 40 non-zero probabilities
    probs = sorted(m.drop_path for m in model.modules() if isinstance(getattr(m, "drop_path", None), float))
    assert len(probs) == 41 and probs[0] == 0 and probs[1] == pytest.approx(0.0025) and probs[-1] == pytest.approx(0.1)
    # GLCA on the first 12 blocks of stage 3 and on all 3 of stage 4
    enc = model.segformer.segformer
    assert [b.attn.fusion is not None for b in enc.block3].count(True) == 12
    assert all(b.attn.fusion is not None for b in enc.block4)
    assert all(b.attn.fusion is None for b in list(enc.block1) + list(enc.block2))
    assert enc.block3[0].norm1.eps == 1e-5 and enc.norm3.eps == 1e-6


def test_strict_load_of_manifest_state_dict():
    model = build_meta(MODELS.get("MSCDI_Net"))
    model.load_state_dict(manifest_state_dict("MSCDI_Net"), strict=True, assign=True)


def test_option_variants_keep_reference_key_names():
    sd = build_meta(MODELS.get("MSCDI_Net"), backbone="mit_bit5", glca=0, fusion_mode=0, noise_model="SRM").state_dict()
    assert "segformer.segformer.block3.39.mlp.fc2.weight" in sd and not any(".fusion." in k for k in sd)
    assert {"fusion_conv42.weight", "fusion_conv31.weight", "fusion_conv_noise.weight",
            "NoiseExtractor.srm_conv.weight", "NoiseExtractor.srm_conv.bias",
            "NoiseExtractor.downsample.3.weight"} <= set(sd)
    sd = build_meta(MODELS.get("MSCDI_Net"), backbone="mit_bit3", fusion_mode=1, noise_model="Bayar").state_dict()
    assert {"SE_fusion42.SEBock.fc.0.weight", "SE_fusion_noise.SEBock.fc.2.weight", "NoiseExtractor.bayar.weight",
            "NoiseExtractor.bayar.bias", "segformer.segformer.block3.11.attn.fusion.fuse_gate.0.weight"} <= set(sd)
    assert "segformer.segformer.block3.12.attn.fusion.fuse_gate.0.weight" not in sd


# ------------------------------------------------------------------ building blocks
def test_windows_round_trip():
    x = torch.arange(2 * 16 * 8 * 3, dtype=torch.float32).view(2, 16, 8, 3)
    w = _windows(x, 4)
    assert w.shape == (2 * 4 * 2, 16, 3)
    assert torch.equal(w[1], x[0, 0:4, 4:8].reshape(16, 3))  # second window: top row, right half
    assert torch.equal(_unwindow(w, 4, 16, 8), x)


@pytest.mark.parametrize("sr_ratio", [1, 2])
def test_glca_local_branch_matches_a_per_window_loop(sr_ratio):
    torch.manual_seed(0)
    dim, heads, h, w = 16, 2, 16, 8
    attn = GLCAAttention(dim, heads, sr_ratio=sr_ratio, use_local=True).eval()
    x = torch.randn(2, h * w, dim)
    q = attn.q(x).reshape(2, h * w, heads, dim // heads).transpose(1, 2)
    src = x if sr_ratio == 1 else attn.norm(attn.sr(x.transpose(1, 2).reshape(2, dim, h, w)).flatten(2).transpose(1, 2))
    kv = attn.kv(src).reshape(2, -1, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
    kh, kw = h // sr_ratio, w // sr_ratio
    local = attn._local(q, kv[0], kv[1], h, w, kh, kw, 0.0)
    # independent computation: one window at a time, all heads as one
    qm = q.transpose(1, 2).reshape(2, h, w, dim)
    km = kv[0].transpose(1, 2).reshape(2, kh, kw, dim)
    vm = kv[1].transpose(1, 2).reshape(2, kh, kw, dim)
    ws, ks = 8, 8 // sr_ratio
    want = torch.empty_like(qm)
    for i in range(h // ws):
        for j in range(w // ws):
            qq = qm[:, i * ws:(i + 1) * ws, j * ws:(j + 1) * ws].reshape(2, -1, dim)
            kk = km[:, i * ks:(i + 1) * ks, j * ks:(j + 1) * ks].reshape(2, -1, dim)
            vv = vm[:, i * ks:(i + 1) * ks, j * ks:(j + 1) * ks].reshape(2, -1, dim)
            a = torch.softmax(qq @ kk.transpose(1, 2) * (dim // heads) ** -0.5, dim=-1)
            want[:, i * ws:(i + 1) * ws, j * ws:(j + 1) * ws] = (a @ vv).view(2, ws, ws, dim)
    torch.testing.assert_close(local, want, rtol=1e-5, atol=1e-6)


def test_glca_layout_option_and_gradients():
    torch.manual_seed(0)
    ref = GLCAAttention(32, 2, sr_ratio=2, use_local=True)
    fixed = GLCAAttention(32, 2, sr_ratio=2, use_local=True, spatial_local_layout=True)
    fixed.load_state_dict(ref.state_dict())
    for m in (ref, fixed):
        for ca in (m.fusion.cross_att1, m.fusion.cross_att2):
            ca.gamma.data.fill_(0.5)  # let the attention paths count
    x = torch.randn(1, 16 * 16, 32)
    a, b = ref(x, 16, 16), fixed(x, 16, 16)
    assert a.shape == b.shape == (1, 256, 32)
    assert not torch.allclose(a, b)  # the reference's reshape really permutes the local map
    a.sum().backward()
    assert ref.fusion.cross_att2.query.weight.grad.abs().sum() > 0 and ref.q.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiples of 256"):
        ref(torch.randn(1, 12 * 12, 32), 12, 12)


def test_dysample_with_zero_offsets_is_bilinear_upsampling():
    up = DySampleUpsample(8, scale=2, groups=4)
    torch.nn.init.zeros_(up.offset_conv.weight)
    x = torch.randn(2, 8, 5, 7)
    want = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(up(x), want, rtol=1e-5, atol=1e-5)
    # each group of channels follows its own offsets
    with torch.no_grad():
        up.offset_conv.bias[:8] = 4.0  # x offsets (one pixel) of groups 0 and 1 = channels 0-3
    y = up(x)
    assert not torch.allclose(y[:, :2], want[:, :2]) and torch.allclose(y[:, 6:], want[:, 6:], atol=1e-5)


# ------------------------------------------------------------------ the model
def test_forward_backward_contract(small):
    from IMDLBenCo.engine import check_model_output

    small.train()
    x, mask, edge = _batch()
    out = small(image=x, mask=mask, edge_mask=edge, label=torch.tensor([1, 1]), shape=torch.tensor([[64, 64]] * 2))
    check_output_contract(out, 2, (64, 64))
    check_model_output(out, {"image": x, "mask": mask}, training=True)
    assert out["mask"] is mask  # IMDL-BenCo's pass-through of the ground truth
    logits = torch.logit(out["pred_mask"].detach().double(), eps=0)
    bce = F.binary_cross_entropy_with_logits(logits, mask.double())
    edge_term = 20 * F.binary_cross_entropy_with_logits(logits, mask.double(), weight=edge.double())
    vl = out["visual_loss"]
    torch.testing.assert_close(vl["bce_loss"].double(), bce, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(vl["edge_loss"].double(), edge_term, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["backward_loss"].detach(), vl["bce_loss"] + vl["edge_loss"])
    out["backward_loss"].backward()
    for p in (small.segformer.segformer.patch_embed1.proj.weight, small.downf1.proj.weight,
              small.interfuse1.cross_att1.gamma, small.interfuse2.fuse_gate[0].weight,
              small.upsamplingers[4][1].offset_conv.weight,
              small.final_conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    small.zero_grad(set_to_none=True)


def test_missing_edge_mask_warns_once_and_drops_the_edge_term(small, caplog):
    small.train()
    small._warned_no_edge = False
    x, mask, _ = _batch(b=1, seed=3)
    with caplog.at_level(logging.WARNING), torch.no_grad():
        out = small(x, mask)
        small(x, mask)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "edge_mask" in r.getMessage()]
    assert len(warnings) == 1 and "--edge_mask_width" in warnings[0].getMessage()
    assert float(out["visual_loss"]["edge_loss"]) == 0.0
    assert float(out["backward_loss"]) == pytest.approx(float(out["visual_loss"]["bce_loss"]))
    small.eval()
    with torch.no_grad():
        out = small(x)  # inference without ground truth
    assert out["pred_mask"].shape == (1, 1, 64, 64) and "mask" not in out


@pytest.mark.parametrize("fusion_mode,noise_model", [(0, "SRM"), (1, "Bayar")])
def test_noise_branch_and_fusion_modes(fusion_mode, noise_model):
    """Noise branch (512 wide: IMDL-BenCo's LayerNorm(64) over the 1/8 columns) with the concat
    fusion (which crashes in IMDL-BenCo) and the SE fusion."""
    torch.manual_seed(0)
    model = MODELS.get("MSCDI_Net")(fusion_mode=fusion_mode, noise_model=noise_model, **SMALL).train()
    model.segformer.requires_grad_(False)  # the encoder's gradients are tested elsewhere; saves time
    x, mask, edge = _batch(b=1, h=32, w=512)
    out = model(x, mask, edge)
    check_output_contract(out, 1, (32, 512))
    out["backward_loss"].backward()
    noise = model.NoiseExtractor
    first = noise.srm_conv.bias if noise_model == "SRM" else noise.bayar.weight
    assert first.grad is not None and first.grad.abs().sum() > 0
    if noise_model == "SRM":
        assert not noise.srm_conv.weight.requires_grad
        w = noise.srm_conv.weight  # output 3*k + c: kernel k on input channel c
        assert torch.equal(w[0, 0, 1:4, 1:4], torch.tensor([[-1., 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4)
        assert torch.equal(w[5, 2, 2], torch.tensor([-2., 8, -12, 8, -2]) / 12) and not w[5, :2].any()
    with pytest.raises(ValueError, match="512-pixel-wide"):
        model(torch.randn(1, 3, 32, 256), None)


def test_bad_options_and_sizes_are_refused(small):
    cls = MODELS.get("MSCDI_Net")
    with pytest.raises(ValueError, match="ff_domain 1"):
        cls(ff_domain=1)
    with pytest.raises(ValueError, match="backbone"):
        cls(backbone="mit_b4")
    with pytest.raises(ValueError, match="fusion_mode"):
        cls(fusion_mode=3)
    with pytest.raises(ValueError, match="multiple of 32"):
        small(torch.randn(1, 3, 48, 64), None)
    glca = build_meta(cls, backbone="mit_bit2", glca=2)
    with pytest.raises(ValueError, match="multiple of 256.*--glca 0"):
        glca._check_image(torch.empty(1, 3, 64, 64))


def test_pretrained_segformer_file_loads_into_the_encoder(tmp_path, caplog):
    from IMDLBenCo.modules.mit import mit_b2

    with torch.device("meta"):
        keys = mit_b2().state_dict()
    sd = {k: torch.full(v.shape, 0.5) for k, v in keys.items()}
    sd["head.weight"] = torch.zeros(1000, 512)
    torch.save(sd, tmp_path / "mit_b2.pth")
    with caplog.at_level(logging.INFO):
        model = MODELS.get("MSCDI_Net")(backbone="mit_bit2", glca=1, backbone_weights_path=str(tmp_path / "mit_b2.pth"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    enc = model.segformer.segformer
    assert torch.all(enc.block3[5].mlp.fc2.weight == 0.5) and torch.all(enc.patch_embed1.proj.weight == 0.5)
    assert torch.all(enc.block3[0].attn.fusion.cross_att1.gamma == 0)  # new GLCA layers keep their init
    assert "head.weight" in caplog.text and "fusion" in caplog.text  # unexpected / missing, reported


def test_one_warning_without_weights(caplog):
    with caplog.at_level(logging.WARNING):
        build_meta(MODELS.get("MSCDI_Net"))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "backbone_weights_path" in warnings[0].getMessage()


def test_help_and_option_parsing():
    text = train_help("MSCDI_Net")
    for opt in ("--backbone", "--backbone_weights_path", "--noise_model", "--ff_domain", "--fusion_mode", "--glca",
                "--edge_loss_weight", "--fix_glca_local_layout"):
        assert opt in text
    kw = parse_model_kwargs("MSCDI_Net", ["--fusion_mode", "1", "--noise_model", "None", "--glca", "0",
                                          "--backbone", "mit_bit2"])
    assert kw["fusion_mode"] == 1 and kw["noise_model"] == "None" and kw["glca"] == 0 and kw["backbone"] == "mit_bit2"


def test_one_epoch_through_the_training_entry(tmp_path):
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=64, seed=0)
    res = engine.train_main([
        "--model", "MSCDI_Net", "--backbone", "mit_bit2", "--glca", "0",
        "--data_path", info["splits"]["train"], "--test_data_path", info["splits"]["test"],
        "--output_dir", str(tmp_path / "out"), "--epochs", "1", "--batch_size", "2", "--test_batch_size", "2",
        "--image_size", "64", "--if_resizing", "--edge_mask_width", "7", "--accum_iter", "1",
        "--warmup_epochs", "0", "--num_workers", "0", "--device", "cpu", "--test_period", "1"],
        train_transform=False)
    assert res["train_edge_loss"] > 0  # the engine delivered edge masks
    assert 0 < res["train_predict_loss"] < 1e3
    assert res["train_predict_loss"] == pytest.approx(res["train_bce_loss"] + res["train_edge_loss"], rel=1e-4)
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    assert (tmp_path / "out" / "checkpoint-0.pth").exists()


@pytest.mark.slow
def test_default_model_at_512_and_bf16_autocast():
    torch.manual_seed(0)
    model = MODELS.get("MSCDI_Net")().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 512, 512))
    assert out["pred_mask"].shape == (1, 1, 512, 512)
    model.train()
    x, mask, edge = _batch(b=1, h=256, w=256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, mask, edge)
    assert out["backward_loss"].dtype == torch.float32 and torch.isfinite(out["backward_loss"])
    out["backward_loss"].backward()
    assert torch.isfinite(model.segformer.segformer.block4[2].attn.fusion.fuse_gate[0].weight.grad).all()
