"""ObjectFormer: manifest keys/shapes/params, strict load, the frequency view and BCIM against
independent formulas, other input sizes, pretrained ViT files, options, one engine epoch."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from zoo_common import build_meta, check_output_contract, parse_model_kwargs, shapes_of, train_help
from zoo_manifest import count_params, load_manifest, manifest_state_dict

from IMDLBenCo.model_zoo.object_former import ObjectFormer
from IMDLBenCo.model_zoo.object_former.object_former import BCIM, CrossAttention, HighFrequencyExtractor

# 96 wide (12 heads of 8), 2 layers, 32 prototypes, built for 64 px: same code paths, well under 1 s
SMALL = dict(input_size=64, embedding_dim=96, num_layers=2, num_prototypes=32)
RECIPE = Path(__file__).resolve().parents[1] / "IMDLBenCo" / "model_zoo" / "object_former" / "recipe.json"


def _batch(b=2, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, h, w, generator=g)
    mask = torch.zeros(b, 1, h, w)
    mask[:, :, h // 4: h // 2, w // 4: w // 2] = 1
    return x, mask


def test_manifest_keys_shapes_and_exact_param_count():
    man = load_manifest("ObjectFormer")
    model = build_meta(ObjectFormer)
    assert list(model.state_dict()) == man.keys
    assert shapes_of(model) == man.shapes
    assert count_params(model) == man.params == 130_572_289


def test_strict_load_of_manifest_state_dict():
    model = build_meta(ObjectFormer)
    model.load_state_dict(manifest_state_dict("ObjectFormer"), strict=True, assign=True)


def test_forward_backward_small():
    from IMDLBenCo.engine import check_model_output

    torch.manual_seed(0)
    model = ObjectFormer(**SMALL)
    x, mask = _batch()
    out = model(x, mask)
    check_output_contract(out, 2, (64, 64))
    check_model_output(out, {"image": x, "mask": mask}, training=True)
    assert set(out["visual_loss"]) == {"predict_loss", "lable_loss"}  # IMDL-BenCo's curve names
    assert float(out["visual_loss"]["lable_loss"]) == 0.0
    expected = F.binary_cross_entropy(out["pred_mask"].detach().double().clamp(1e-12, 1 - 1e-12), mask.double())
    assert abs(float(out["backward_loss"].detach()) - float(expected)) < 1e-5
    out["backward_loss"].backward()
    for p in (model.encoder_net_q[0].weight, model.encoder_net_r[0].weight, model.pos_encoding,
              model.encoder_decoders[0].encoder.object_prototypes, model.encoder_decoders[1].decoder.attn.k.weight,
              model.localization[0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    without_mask = model.eval()(x)
    assert without_mask["pred_mask"].shape == (2, 1, 64, 64) and float(without_mask["backward_loss"]) == 0.0


def test_default_model_runs_at_another_size_than_224():
    """The manifest-compatible model (built for 224) at a non-square 64x128 (its cost is the 392
    prototypes of each layer, whatever the size: one call)."""
    torch.manual_seed(0)
    model = ObjectFormer().eval()
    x, mask = _batch(b=1, h=64, w=128)
    with torch.no_grad():
        out = model(x, mask)
    assert out["pred_mask"].shape == (1, 1, 64, 128)
    assert torch.isfinite(out["backward_loss"]) and 0.0 < float(out["backward_loss"]) < 10.0
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        model(torch.randn(1, 3, 100, 100))


@pytest.mark.parametrize("size", [(96, 96), (128, 64)])
def test_small_model_at_other_sizes_than_built(size):
    torch.manual_seed(0)
    model = ObjectFormer(**SMALL)  # built for 64
    x, mask = _batch(h=size[0], w=size[1])
    out = model(x, mask)
    check_output_contract(out, 2, size)
    out["backward_loss"].backward()
    assert model.pos_encoding.grad.abs().sum() > 0  # gradients flow through the resampling


def test_position_embedding_is_resampled_per_branch():
    torch.manual_seed(0)
    model = ObjectFormer(**SMALL)
    assert model._position_embedding((4, 4)) is model.pos_encoding  # built grid: used as is
    pos = model._position_embedding((2, 6))
    assert pos.shape == (1, 2 * 12, 96)
    rgb = model.pos_encoding[:, :16].reshape(1, 4, 4, 96).permute(0, 3, 1, 2)
    want = F.interpolate(rgb, size=(2, 6), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 12, 96)
    torch.testing.assert_close(pos[:, :12], want)


def _explicit_fft_dct_matrices(n: int):
    """IMDL-BenCo's FFT 'DCT' pair as float64 matrices, derived independently:
    forward X_k = 2 cos(pi k / 2N) sum_j x_j cos(pi k (2j+1) / 2N) (real part of the FFT of the
    mirrored signal); inverse = inverse FFT of the length-(2N-2) even extension (a DCT-I)."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    fwd = 2 * torch.cos(math.pi * k / (2 * n)) * torch.cos(math.pi * k * (2 * j + 1) / (2 * n))
    m = 2 * n - 2
    inv = torch.cos(math.pi * j.T * k.T / (n - 1)) * 2  # [n, k]
    inv[:, 0] = 1
    inv[:, n - 1] = torch.tensor([(-1.0) ** i for i in range(n)], dtype=torch.float64)
    return fwd, inv / m


def test_high_frequency_view_matches_explicit_formula():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 12, generator=g, dtype=torch.float64)
    fh, ih = _explicit_fft_dct_matrices(8)
    fw, iw = _explicit_fft_dct_matrices(12)
    coeffs = fh @ x @ fw.T
    kept = coeffs * (coeffs.abs() > 0.5)
    want = ih @ kept @ iw.T
    got = HighFrequencyExtractor(alpha=0.5)(x.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)
    assert (coeffs.abs() <= 0.5).any() and (coeffs.abs() > 0.5).any()  # the threshold bites


def test_bcim_matches_a_direct_loop():
    g = torch.Generator().manual_seed(4)
    b, c, h, w = 1, 5, 3, 4
    tokens = torch.randn(b, 2 * h * w, c, generator=g, dtype=torch.float64)
    got = BCIM()(tokens, (h, w))
    fmap = tokens.transpose(1, 2).reshape(b, 2 * c, h, w)  # channel 2c+k = channel c of branch k
    padded = F.pad(fmap, (1, 1, 1, 1))
    weight = torch.zeros(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            centre = fmap[0, :, i, j]
            sims = []
            for di in range(3):
                for dj in range(3):
                    other = padded[0, :, i + di, j + dj]
                    denom = centre.norm() * other.norm()
                    sims.append(float(centre @ other / denom) if denom > 0 else 0.0)
            weight[i, j] = sum(sims) / 9 / 9
    want = (fmap * weight).reshape(b, c, 2 * h * w).transpose(1, 2)
    torch.testing.assert_close(got, want)


def test_cross_attention_with_keys_of_another_length():
    torch.manual_seed(0)
    attn = CrossAttention(48).double()
    g = torch.Generator().manual_seed(5)
    q_in = torch.randn(2, 7, 48, generator=g, dtype=torch.float64)
    kv_in = torch.randn(2, 11, 48, generator=g, dtype=torch.float64)
    got = attn(q_in, kv_in, kv_in)

    def heads(t):
        return t.reshape(2, -1, 12, 4).transpose(1, 2)

    ref = F.scaled_dot_product_attention(heads(attn.q(q_in)), heads(attn.k(kv_in)), heads(attn.v(kv_in)))
    torch.testing.assert_close(got, attn.proj(ref.transpose(1, 2).reshape(2, 7, 48)))


def _vit_state_dict(depth: int = 3, dim: int = 96, grid: int = 7):
    """A small timm ViT-B-style state dict (fused qkv, class token slot in pos_embed)."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=16 * grid, patch_size=16, embed_dim=dim, depth=depth, num_heads=12)
    return vit.state_dict()


def test_plain_timm_vit_file_loads(tmp_path, caplog):
    torch.manual_seed(0)
    sd = _vit_state_dict()
    path = tmp_path / "vit.pth"
    torch.save(sd, path)
    with caplog.at_level(logging.INFO):
        model = ObjectFormer(init_weight_path=str(path), **SMALL)
    assert "no pretrained weights" not in caplog.text
    qkv_w = sd["blocks.1.attn.qkv.weight"]
    for sub in ("encoder", "decoder"):
        block = getattr(model.encoder_decoders[1], sub)
        assert torch.equal(block.attn.q.weight, qkv_w[:96]) and torch.equal(block.attn.v.weight, qkv_w[192:])
        assert torch.equal(block.mlp.fc2.weight, sd["blocks.1.mlp.fc2.weight"])
    assert torch.equal(model.encoder_net_q[0].weight, sd["patch_embed.proj.weight"])
    assert torch.equal(model.encoder_net_r[0].bias, sd["patch_embed.proj.bias"])
    # 1 + 7x7 = 50 = 2 x 5x5 tokens: the class token in the file says which layout it is; the
    # class slot is dropped and the 7x7 grid resampled to the 4x4 grid, the same for both branches
    assert sd["pos_embed"].shape == (1, 50, 96)
    grid = sd["pos_embed"][:, 1:].reshape(1, 7, 7, 96).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 16, 96)
    torch.testing.assert_close(model.pos_encoding.data, torch.cat([want, want], dim=1))
    assert "object_prototypes" in caplog.text  # reported as missing (kept random)


def test_issue41_processed_file_loads(tmp_path):
    """IMDL-BenCo issue #41's layout: q/k/v already split, pos_embed of 2L tokens."""
    torch.manual_seed(0)
    ref = ObjectFormer(**SMALL)
    sd = {}
    for i in range(2):
        for k, v in ref.encoder_decoders[i].decoder.state_dict().items():
            sd[f"blocks.{i}.{k}"] = torch.full_like(v, float(i + 1))
    sd["patch_embed.proj.weight"] = torch.full((96, 3, 16, 16), 0.5)
    sd["patch_embed.proj.bias"] = torch.zeros(96)
    sd["pos_embed"] = torch.arange(32 * 96, dtype=torch.float32).reshape(1, 32, 96)
    path = tmp_path / "processed_model_weights.pth"
    torch.save(sd, path)
    model = ObjectFormer(init_weight_path=str(path), **SMALL)
    assert torch.all(model.encoder_decoders[1].encoder.attn.k.weight == 2.0)
    assert torch.all(model.encoder_decoders[0].decoder.norm2.bias == 1.0)
    assert torch.equal(model.pos_encoding.data, sd["pos_embed"])
    with pytest.raises(FileNotFoundError):
        ObjectFormer(init_weight_path=str(tmp_path / "missing.pth"), **SMALL)


def test_one_warning_without_weights(caplog):
    with caplog.at_level(logging.WARNING), torch.device("meta"):
        ObjectFormer()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "--init_weight_path" in warnings[0].getMessage()


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="--input_size 100"):
        build_meta(ObjectFormer, input_size=100)
    with pytest.raises(ValueError, match="embedding_dim 100"):
        build_meta(ObjectFormer, embedding_dim=100)


def test_recipe_and_help():
    recipe = json.loads(RECIPE.read_text())
    assert recipe["model"] == "ObjectFormer" and recipe["train"]["image_size"] == 224
    assert recipe["train"]["if_resizing"] is True and recipe["weights"]["option"] == "--init_weight_path"
    text = train_help("ObjectFormer")
    for opt in ("--input_size", "--patch_size", "--num_prototypes", "--embedding_dim", "--num_layers",
                "--init_weight_path"):
        assert opt in text
    kw = parse_model_kwargs("ObjectFormer", ["--input_size", "256", "--init_weight_path", "None"])
    assert kw["input_size"] == 256 and kw["init_weight_path"] is None


def test_one_epoch_through_the_training_entry(tmp_path):
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=64, seed=0)
    res = engine.train_main([
        "--model", "ObjectFormer", "--data_path", info["splits"]["train"],
        "--test_data_path", info["splits"]["test"], "--output_dir", str(tmp_path / "out"), "--epochs", "1",
        "--batch_size", "2", "--test_batch_size", "2", "--image_size", "64", "--if_resizing", "--accum_iter", "1",
        "--warmup_epochs", "0", "--num_workers", "0", "--device", "cpu", "--test_period", "1",
        "--input_size", "64", "--embedding_dim", "96", "--num_layers", "2", "--num_prototypes", "32"],
        train_transform=False)
    loss = res["train_predict_loss"]
    assert loss == loss and 0.0 < loss < 10.0
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    ckpt = torch.load(tmp_path / "out" / "checkpoint-0.pth", weights_only=True)
    assert ckpt["model"]["pos_encoding"].shape == (1, 32, 96)


@pytest.mark.slow
def test_full_size_forward_backward_224_and_256():
    torch.manual_seed(0)
    model = ObjectFormer()
    for s in (224, 256):
        x, mask = _batch(b=1, h=s, w=s)
        out = model(x, mask)
        check_output_contract(out, 1, (s, s))
        out["backward_loss"].backward()
        assert model.encoder_decoders[7].encoder.object_prototypes.grad is not None
        model.zero_grad(set_to_none=True)
