"""SparseViT: manifest keys/shapes/params (model and backbone), strict load, the sparse groups,
stochastic depth, size checks, pretrained UniFormer files, options, one engine epoch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from parity import dropout_probs
from zoo_common import build_meta, check_output_contract, parse_model_kwargs, shapes_of, train_help
from zoo_manifest import count_params, load_manifest, manifest_state_dict

from IMDLBenCo.model_zoo.sparse_vit import SparseViT, SparseViTBackbone
from IMDLBenCo.model_zoo.sparse_vit.sparse_vit import SABlock, size_multiple, sparse_group, sparse_ungroup
from IMDLBenCo.registry import MODELS

# full depth and widths at 64 px: stage 3 is 4x4 (groups of 4x4, 2x2, 1x1 tokens), stage 4 2x2
SMALL = dict(img_size=64, s_blocks3=[8, 16, 32, 8], s_blocks4=[8, 16])
# a shallow, narrow variant (one s_blocks value per stage, 4.5 M parameters) for the engine run
TINY = dict(img_size=64, depth=[1, 1, 5, 4], s_blocks3=[8], s_blocks4=[8], embed_dim=[32, 64, 128, 256], head_dim=32)
RECIPE = Path(__file__).resolve().parents[1] / "IMDLBenCo" / "model_zoo" / "sparse_vit" / "recipe.json"


def _batch(b=2, s=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, s, s, generator=g)
    mask = torch.zeros(b, 1, s, s)
    mask[:, :, s // 4: s // 2, s // 8: s // 2] = 1
    return x, mask


@pytest.mark.parametrize("name", ["SparseViT", "SparseViTBackbone"])
def test_manifest_keys_shapes_and_exact_param_count(name):
    man = load_manifest(name)
    model = build_meta(MODELS.get(name))
    assert list(model.state_dict()) == man.keys
    assert shapes_of(model) == man.shapes
    assert count_params(model) == man.params


def test_strict_load_of_manifest_state_dict():
    model = build_meta(SparseViT)
    model.load_state_dict(manifest_state_dict("SparseViT"), strict=True, assign=True)
    assert model.encoder_net.blocks3[0].norm1.eps == 1e-6 and model.lmu.norm.eps == 1e-6
    assert model.encoder_net.patch_embed3.norm.eps == 1e-5  # IMDL-BenCo's patch embeddings use the default


def test_drop_path_probabilities_and_sparse_spans():
    model = build_meta(SparseViT)
    want = torch.linspace(0, 0.2, 40)[1:].tolist()  # float32 values, as IMDL-BenCo's
    assert dropout_probs(model) == pytest.approx(sorted(want), abs=1e-7)
    spans3 = [blk.sparse_size for blk in model.encoder_net.blocks3]
    assert spans3 == [4] * 5 + [8] * 5 + [16] * 5 + [32] * 5
    assert [blk.sparse_size for blk in model.encoder_net.blocks4] == [8] * 4 + [16] * 3
    assert model.size_multiple == 512 == size_multiple([5, 8, 20, 7], [8, 4, 2, 1], [2, 1])


def test_sparse_groups_hold_dilated_tokens_and_invert():
    b, c, h, w, s = 2, 3, 8, 12, 4
    x = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)
    groups = sparse_group(x, s)
    gh, gw = h // s, w // s
    assert groups.shape == (b * gh * gw, s * s, c)
    for bi in range(b):
        for u in range(gh):
            for v in range(gw):
                g = groups[(bi * gh + u) * gw + v]
                for a in range(s):
                    for bb in range(s):
                        assert torch.equal(g[a * s + bb], x[bi, :, a * gh + u, bb * gw + v])
    tokens = sparse_ungroup(groups, b, (h, w), s)
    assert torch.equal(tokens, x.flatten(2).transpose(1, 2))


def test_attention_stays_within_a_sparse_group():
    torch.manual_seed(0)
    blk = SABlock(dim=64, num_heads=2, sparse_size=2).eval()
    with torch.no_grad():
        blk.gamma_1.fill_(1.0)
        blk.gamma_2.zero_()  # drop the MLP branch: its depthwise conv mixes neighbours
        x = torch.randn(1, 64, 6, 8)
        y = x.clone()
        y[0, :, 1, 2] += 1.0
        changed = (blk(y) - blk(x)).abs().amax(dim=1)[0] > 0
    # a 6x8 map with groups of 2x2 tokens: stride 3 rows, 4 columns; (1, 2) shares group (1, 2)
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert changed.sum() == 4
    assert set(rows.tolist()) == {1, 4} and set(cols.tolist()) == {2, 6}


def test_forward_backward_small():
    from IMDLBenCo.engine import check_model_output

    torch.manual_seed(0)
    # eval mode: drop-path could skip a block's branch for the whole batch and zero its gradients
    model = SparseViT(**SMALL).eval()
    x, mask = _batch()
    out = model(x, mask)
    check_output_contract(out, 2, (64, 64))
    check_model_output(out, {"image": x, "mask": mask}, training=True)
    assert set(out["visual_loss"]) == {"predict_loss"}
    out["backward_loss"].backward()
    with_grad = sum(p.grad is not None for p in model.parameters())
    assert with_grad == 678 and len(list(model.parameters())) == 736  # IMDL-BenCo's fixture counts
    assert model.encoder_net.blocks3[0].pos_embed.weight.grad is None  # unused, as in IMDL-BenCo
    for p in (model.encoder_net.patch_embed1.proj.weight, model.encoder_net.blocks3[19].attn.qkv.weight,
              model.lmu.conv_layer2.weight, model.lmu.gamma6):
        assert p.grad is not None and p.grad.abs().sum() > 0
    feats = model.encoder_net(x)
    assert list(feats) == ["third1", "third2", "third3", "third", "last1", "last"]


def test_size_checks_name_the_options():
    with pytest.raises(ValueError, match="--img_size 256"):
        build_meta(SparseViT, img_size=256)
    with pytest.raises(ValueError, match="s_blocks3"):
        build_meta(SparseViT, s_blocks3=[8, 4])
    with pytest.raises(ValueError, match="divide 32"):
        build_meta(SparseViT, s_blocks3=[8, 4, 2, 3])
    torch.manual_seed(0)
    model = SparseViT(**TINY).eval()
    with pytest.raises(ValueError, match="--image_size 64"):
        model(torch.randn(1, 3, 80, 80))
    with torch.no_grad():  # another multiple than img_size, not square: predicted at that size
        out = model(torch.randn(1, 3, 64, 128))
    assert out["pred_mask"].shape == (1, 1, 64, 128)
    # the registered backbone alone: stage 4 (2x2 at 64 px) cannot hold s_blocks4[0] = 2 -> 8x8 groups
    backbone = SparseViTBackbone(layers=[1, 1, 5, 4], embed_dim=[32, 64, 128, 256], head_dim=32).eval()
    with pytest.raises(ValueError, match="2x2 token map cannot be split into 8x8 sparse groups"):
        with torch.no_grad():
            backbone(torch.randn(1, 3, 64, 64))


def test_uniformer_file_loads_and_is_not_reinitialised(tmp_path, caplog):
    torch.manual_seed(0)
    ref = SparseViT(**TINY)
    sd = {f"backbone.{k}": torch.full_like(v, 0.25) for k, v in ref.encoder_net.state_dict().items()
          if ".mlp.dwconv." not in k and "gamma" not in k}  # UniFormer has neither
    sd["backbone.head.weight"] = torch.zeros(1000, 512)
    path = tmp_path / "uniformer_base_in1k.pth"
    torch.save({"model": sd}, path)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        model = SparseViT(pretrained_path=str(path), **TINY)
    enc = model.encoder_net
    for t in (enc.blocks3[2].attn.qkv.weight, enc.blocks3[2].norm1.weight, enc.patch_embed1.norm.weight,
              enc.norm4.bias, enc.blocks1[0].mlp.fc1.weight):
        assert torch.all(t == 0.25)  # IMDL-BenCo 0.1.45 re-initialised Linear/LayerNorm here
    assert torch.all(enc.blocks3[0].gamma_1 == 1e-6)
    assert "head.weight" in caplog.text and "no pretrained weights" not in caplog.text


def test_one_warning_without_weights(caplog):
    with caplog.at_level(logging.WARNING), torch.device("meta"):
        SparseViT()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "--pretrained_path" in warnings[0].getMessage()


def test_recipe_and_help():
    recipe = json.loads(RECIPE.read_text())
    assert recipe["model"] == "SparseViT" and recipe["train"]["image_size"] == 512
    assert recipe["train"]["find_unused_parameters"] is True and recipe["weights"]["option"] == "--pretrained_path"
    text = train_help("SparseViT")
    for opt in ("--depth", "--embed_dim", "--img_size", "--s_blocks3", "--s_blocks4", "--pretrained_path"):
        assert opt in text
    assert "--norm_layer" not in text
    kw = parse_model_kwargs("SparseViT", ["--s_blocks3", "8", "8", "4", "4", "--s_blocks4", "4,2"])
    assert kw["s_blocks3"] == [8, 8, 4, 4] and kw["s_blocks4"] == [4, 2]


def test_one_epoch_through_the_training_entry(tmp_path):
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=64, seed=0)
    res = engine.train_main([
        "--model", "SparseViT", "--data_path", info["splits"]["train"],
        "--test_data_path", info["splits"]["test"], "--output_dir", str(tmp_path / "out"), "--epochs", "1",
        "--batch_size", "2", "--test_batch_size", "2", "--image_size", "64", "--if_resizing", "--accum_iter", "1",
        "--warmup_epochs", "0", "--num_workers", "0", "--device", "cpu", "--test_period", "1",
        "--img_size", "64", "--depth", "1", "1", "5", "4", "--s_blocks3", "8", "--s_blocks4", "8",
        "--embed_dim", "32", "64", "128", "256", "--head_dim", "32"],
        train_transform=False)
    loss = res["train_predict_loss"]
    assert loss == loss and 0.0 < loss < 10.0
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    ckpt = torch.load(tmp_path / "out" / "checkpoint-0.pth", weights_only=True)
    assert "lmu.gamma4" in ckpt["model"] and "lmu.conv_layer2.weight" in ckpt["model"]


@pytest.mark.slow
def test_full_size_forward_backward():
    torch.manual_seed(0)
    model = SparseViT()
    x, mask = _batch(b=1, s=512)
    out = model(x, mask)
    check_output_contract(out, 1, (512, 512))
    out["backward_loss"].backward()
    assert model.encoder_net.blocks3[19].attn.qkv.weight.grad is not None
