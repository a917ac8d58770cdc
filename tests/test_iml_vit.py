"""IML_ViT: manifest keys/shapes/params, strict load, small CPU forward/backward, loss, options."""

import json
import logging
from pathlib import Path

import pytest
import torch
from zoo_common import build_meta, check_output_contract, parse_model_kwargs, shapes_of, train_help
from zoo_manifest import assert_params_close, load_manifest, manifest_state_dict

from IMDLBenCo.registry import MODELS

# narrow encoder (192 wide, 12 heads of 16) and head: same code paths, ~1 s forward+backward
SMALL = dict(input_size=128, embed_dim=192, fpn_channels=32, mlp_embeding_dim=32)


def _batch(b=2, s=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, s, s, generator=g)
    mask = torch.zeros(b, 1, s, s)
    mask[:, :, s // 4: s // 2, s // 4: s // 2] = 1
    edge = torch.zeros_like(mask)
    edge[:, :, s // 4 - 2: s // 4 + 2, :] = 1
    return x, mask, edge


def test_manifest_keys_shapes_params():
    man = load_manifest("IML_ViT")
    model = build_meta(MODELS.get("IML_ViT"))
    assert shapes_of(model) == man.shapes
    assert_params_close(model, "IML_ViT")


def test_input_size_sets_global_rel_pos_tables():
    model = build_meta(MODELS.get("IML_ViT"), input_size=512)
    sd = shapes_of(model)
    assert sd["encoder_net.blocks.2.attn.rel_pos_h"] == [63, 64]
    assert sd["encoder_net.blocks.1.attn.rel_pos_h"] == [27, 64]
    assert sum(p.numel() for p in model.parameters()) == 91_744_961  # manifest note


def test_strict_load_of_manifest_state_dict():
    model = build_meta(MODELS.get("IML_ViT"))
    model.load_state_dict(manifest_state_dict("IML_ViT"), strict=True, assign=True)


def test_forward_backward_small():
    torch.manual_seed(0)
    model = MODELS.get("IML_ViT")(**SMALL)
    x, mask, edge = _batch()
    out = model(x, mask, edge)
    check_output_contract(out, 2, (128, 128))
    assert set(out["visual_loss"]) == {"predict_loss", "edge_loss", "combined_loss"}
    assert set(out["visual_image"]) == {"pred_mask", "edge_mask"}
    from IMDLBenCo import engine
    engine.check_model_output(out, {"image": x, "mask": mask}, training=True)
    out["backward_loss"].backward()
    assert model.encoder_net.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.encoder_net.blocks[2].attn.rel_pos_h.grad is not None


@pytest.mark.parametrize("norm", ["LN", "IN"])
def test_other_head_norms(norm):
    torch.manual_seed(0)
    model = MODELS.get("IML_ViT")(predict_head_norm=norm, **SMALL)
    assert type(model.predict_head.norm).__name__ == {"LN": "LayerNorm2d", "IN": "InstanceNorm2d"}[norm]
    x, mask, edge = _batch()
    with torch.no_grad():
        check_output_contract(model(x, mask, edge), 2, (128, 128))
    with pytest.raises(ValueError, match="predict_head_norm"):
        MODELS.get("IML_ViT")(predict_head_norm="GN", **SMALL)


def test_edge_loss_is_weighted_bce_on_edge_band():
    torch.manual_seed(0)
    model = MODELS.get("IML_ViT")(edge_lambda=5, **SMALL).eval()
    x, mask, edge = _batch(b=1)
    with torch.no_grad():
        out = model(x, mask, edge)
        no_edge = model(x, mask)
    p = out["pred_mask"].double().clamp(1e-7, 1 - 1e-7)
    bce = -(mask * p.log() + (1 - mask) * (1 - p).log())
    assert torch.allclose(out["visual_loss"]["predict_loss"].double(), bce.mean(), atol=1e-4)
    assert torch.allclose(out["visual_loss"]["edge_loss"].double(), 5 * (bce * edge).mean(), atol=1e-4)
    assert no_edge["visual_loss"]["edge_loss"] == 0


def test_runs_at_other_size_than_built_and_refuses_non_multiple():
    torch.manual_seed(0)
    model = MODELS.get("IML_ViT")(**SMALL).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 160))
    assert out["pred_mask"].shape == (1, 1, 96, 160) and out["backward_loss"] is None
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.randn(1, 3, 100, 100))


def test_mae_style_pretrained_file_loads_into_encoder(tmp_path, caplog):
    torch.manual_seed(0)
    src = MODELS.get("IML_ViT")(**SMALL)
    enc = src.encoder_net.state_dict()
    mae = {k: v for k, v in enc.items() if "rel_pos" not in k}
    mae["cls_token"] = torch.zeros(1, 1, 192)
    path = tmp_path / "mae.pth"
    torch.save({"model": mae}, path)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        dst = MODELS.get("IML_ViT")(vit_pretrain_path=str(path), **SMALL)
    assert torch.equal(dst.encoder_net.blocks[3].mlp.fc1.weight, src.encoder_net.blocks[3].mlp.fc1.weight)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "cls_token" in text and "rel_pos" in text and "no pretrained weights" not in text


def test_recipe_and_help():
    recipe = json.loads((Path(__file__).resolve().parents[1] / "IMDLBenCo/model_zoo/iml_vit/recipe.json").read_text())
    assert recipe["model"] == "IML_ViT" and recipe["train"]["if_padding"] is True
    assert recipe["train"]["image_size"] == 1024 and recipe["weights"]["option"] == "--vit_pretrain_path"
    text = train_help("IML_ViT")
    for opt in ("--input_size", "--vit_pretrain_path", "--fpn_scale_factors", "--predict_head_norm", "--edge_lambda"):
        assert opt in text
    kw = parse_model_kwargs("IML_ViT", ["--fpn_scale_factors", "4", "2", "1", "--predict_head_norm", "LN"])
    assert kw["fpn_scale_factors"] == [4.0, 2.0, 1.0] and kw["predict_head_norm"] == "LN"


@pytest.mark.slow
def test_full_size_forward_backward():
    torch.manual_seed(0)
    model = MODELS.get("IML_ViT")(input_size=256)
    x, mask, edge = _batch(b=1, s=256)
    out = model(x, mask, edge)
    check_output_contract(out, 1, (256, 256))
    out["backward_loss"].backward()
