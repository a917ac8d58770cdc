"""Extractors: the operation each docstring states, shapes, key names, input checks."""


import pytest
import torch

from IMDLBenCo.modules.extractors import (
    EXTRACTORS,
    BayarConv2D,
    BayerConv,
    DCTExtractor,
    FFTExtractor,
    SobelFilter,
    SRMConv2D,
    build_extractor,
    dct_matrix,
)


def test_bayar_constraint_centre_minus_one_sum_zero_and_trainable():
    m = BayarConv2D()
    w = m.constrained_weight()
    assert torch.allclose(w[:, :, 2, 2], torch.full((3, 3), -1.0))
    assert torch.allclose(w.sum(dim=(2, 3)), torch.zeros(3, 3), atol=1e-5)
    # a constant image has no high-frequency content
    assert m(torch.full((1, 3, 16, 16), 0.7))[..., 2:-2, 2:-2].abs().max() < 1e-4
    x = torch.randn(2, 3, 16, 16)
    m(x).square().mean().backward()
    assert m.BayarConv2D.weight.grad is not None
    assert set(m.state_dict()) == {"bayar_mask", "bayar_final", "BayarConv2D.weight"}
    assert [n for n, _ in m.named_parameters()] == ["BayarConv2D.weight"]
    assert BayerConv is BayarConv2D


def test_srm_is_per_channel_fixed_filter():
    m = SRMConv2D()
    assert list(m.state_dict()) == ["weight"] and not list(m.parameters())
    x = torch.zeros(1, 3, 11, 11)
    x[0, 1, 5, 5] = 1.0  # impulse on the green channel
    y = m(x)
    assert y.shape == (1, 9, 11, 11)
    # only outputs 3k+1 (green) respond; the response at the impulse is each kernel's centre tap
    for ch in range(9):
        assert (y[0, ch].abs().sum() > 0) == (ch % 3 == 1)
    assert torch.allclose(y[0, [1, 4, 7], 5, 5], torch.tensor([-1.0, -1.0, -1.0]))
    with pytest.raises(ValueError, match="expected input"):
        m(torch.zeros(1, 1, 8, 8))


def test_sobel_magnitude_of_vertical_edge():
    m = SobelFilter()
    x = torch.zeros(1, 3, 8, 8)
    x[..., 4:] = 1.0
    y = m(x)
    assert y.shape == (1, 1, 8, 8)
    # step of height 1 in each of 3 channels: |gx| = 4 * 3 at the edge columns, 0 far away
    assert torch.allclose(y[0, 0, 4, 3], torch.tensor(12.0), atol=1e-4)
    assert y[0, 0, 4, 0] < 1e-3
    assert set(m.state_dict()) == {"sobel_x.0.weight", "sobel_y.0.weight", "conv_x.weight", "conv_y.weight"}
    assert not list(m.parameters())


def test_dct_matrix_orthonormal_and_highpass_removes_constant():
    d = dct_matrix(12)
    assert torch.allclose(d @ d.t(), torch.eye(12), atol=1e-5)
    m = DCTExtractor(alpha=0.25)
    x = torch.full((2, 3, 16, 16), 3.0)
    x[1] += torch.randn(3, 16, 16)
    y = m(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    # the constant image keeps nothing but round-off
    coef = dct_matrix(16) @ x[0, 0] @ dct_matrix(16).t()
    assert coef[0, 0] > 10
    with pytest.raises(ValueError, match="alpha"):
        DCTExtractor(alpha=1.5)


def test_dct_low_and_high_bands_are_complementary():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 20, 20)
    d = dct_matrix(20)
    coef = d @ x @ d.t()
    hi = DCTExtractor(alpha=0.3, mode="high")
    # rebuild the unnormalised high-pass output and check the zeroed block
    keep = torch.ones(20, 20)
    keep[:6, :6] = 0
    ref = d.t() @ (coef * keep) @ d
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    assert torch.allclose(hi(x), ref, atol=1e-5)


def test_fft_highpass_removes_dc_keeps_fine_detail():
    m = FFTExtractor(alpha=0.2)
    x = torch.zeros(1, 3, 32, 32)
    x[..., ::2, :] = 1.0  # highest vertical frequency + a DC offset
    y = m(x)
    assert y.shape == x.shape
    # the alternating rows survive (correlation with the pattern), the offset is gone
    pattern = x[0, 0] - x[0, 0].mean()
    yc = y[0, 0] - y[0, 0].mean()
    cos = (pattern * yc).sum() / (pattern.norm() * yc.norm())
    assert cos > 0.99


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_build_extractor_channels(name):
    m, ch = build_extractor(name)
    y = m(torch.rand(2, 3, 24, 24))
    assert y.shape == (2, ch, 24, 24) and torch.isfinite(y).all()
    with pytest.raises(ValueError):
        m(torch.rand(3, 24, 24))


def test_unknown_extractor():
    with pytest.raises(KeyError, match="unknown extractor"):
        build_extractor("wavelet")
