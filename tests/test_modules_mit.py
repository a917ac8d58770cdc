"""MixVisionTransformer (SegFormer MiT) encoder: shapes and IMDL-BenCo key names."""

import pytest
import torch
from zoo_manifest import load_manifest

from IMDLBenCo.modules.mit import MixVisionTransformer, mit_b0, mit_b2, mit_b3


def test_mit_stage_shapes_and_backward():
    torch.manual_seed(0)
    m = mit_b0()
    x = torch.randn(2, 3, 64, 96, requires_grad=True)
    outs = m(x)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 24), (2, 64, 8, 12), (2, 160, 4, 6), (2, 256, 2, 3)]
    sum(o.mean() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mit_b2_keys_match_segformer_manifest():
    man = load_manifest("segformer")
    ref = {k: s for k, s in man.shapes.items() if not k.startswith("deconv_model")}
    got = {k: list(v.shape) for k, v in mit_b2().state_dict().items()}
    assert got == ref


def test_mit_b3_six_channels_no_stem_bias_matches_mesorch_branch():
    man = load_manifest("Mesorch")
    ref = {k[len("segformer."):]: s for k, s in man.shapes.items() if k.startswith("segformer.")}
    with torch.device("meta"):
        m = mit_b3(in_chans=6, stem_bias=False)
    assert {k: list(v.shape) for k, v in m.state_dict().items()} == ref


def test_mit_rejects_wrong_channels_and_bad_config():
    with pytest.raises(ValueError, match="expected input"):
        mit_b0()(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="4 entries"):
        MixVisionTransformer(depths=(1, 1, 1))


def test_block_layernorms_use_segformer_eps():
    """SegFormer's blocks and stage norms use LayerNorm eps 1e-6 (published weights expect it)."""
    import torch.nn as nn

    from IMDLBenCo.modules.mit import MiTBlock, mit_b0

    model = mit_b0()
    blocks = [m for m in model.modules() if isinstance(m, MiTBlock)]
    assert blocks
    assert all(b.norm1.eps == 1e-6 and b.norm2.eps == 1e-6 for b in blocks)
    assert all(isinstance(getattr(model, f"norm{i}"), nn.LayerNorm) and getattr(model, f"norm{i}").eps == 1e-6
               for i in range(1, 5))
