"""Building blocks of MSCDI-Net shared by its GLCA-SegFormer encoder and its decoder.

* :class:`ChannelAttentionFusion` (IMDL-BenCo's ``InteractiveFusion_C``): two cross-attentions
  (each input attends to the other) mixed by a per-pixel softmax gate.
* :class:`SEFusion`: squeeze-and-excitation weighting of two maps (``fusion_mode=1``).
* :class:`ChannelShuffleDownsample`: pixel-unshuffle, 1x1 projection, channel shuffle.
* :class:`DySampleUpsample` (IMDL-BenCo's ``PixelShuffleUpsample``): learned point-sampling
  upsampler in the style of DySample (Liu et al., ICCV 2023): a 1x1 convolution predicts, per
  group of channels, ``scale^2`` sub-pixel offsets, which are pixel-shuffled into a sampling grid
  for ``grid_sample``.
* :class:`SRMNoiseExtractor`, :class:`BayarNoiseExtractor`: the optional noise branch.

Attribute names reproduce IMDL-BenCo 0.1.45's state-dict keys (``cross_att1.query``,
``fuse_gate.0``, ``SEBock.fc.0``, ``offset_conv``, ``initial_pos`` ...), so its checkpoints load
with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...modules.extractors import SRMConv2D

__all__ = [
    "CrossAttentionC",
    "ChannelAttentionFusion",
    "SEBlock",
    "SEFusion",
    "channel_shuffle",
    "ChannelShuffleDownsample",
    "DySampleUpsample",
    "SRMNoiseExtractor",
    "BayarNoiseExtractor",
]


class CrossAttentionC(nn.Module):
    """Pixel-to-pixel attention of ``source`` queries over ``guidance`` keys/values, added back
    to ``source`` with a learned gate ``gamma`` (initialised to 0, so the block starts as the
    identity): ``source + gamma * V(guidance) softmax(Q(source)^T K(guidance))^T``.

    The scores are not scaled (as in IMDL-BenCo). They are computed in float32 even under
    autocast: unscaled dot products over up to 512 channels can overflow float16.
    """

    def __init__(self, channels: int, reduction: int = 1) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.query = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.key = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.value = nn.Conv2d(channels, channels, 1)

    def forward(self, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        b, c, h, w = source.shape
        q = self.query(source).flatten(2).transpose(1, 2)  # (B, N, C')
        k = self.key(guidance).flatten(2).transpose(1, 2)
        v = self.value(guidance).flatten(2).transpose(1, 2)  # (B, N, C)
        with torch.autocast(device_type=source.device.type, enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), scale=1.0)
        out = out.to(v.dtype).transpose(1, 2).reshape(b, c, h, w)
        return self.gamma * out + source


class ChannelAttentionFusion(nn.Module):
    """Fuses two equally shaped maps: each is refined by attending to the other
    (:class:`CrossAttentionC`), then a 3x3-conv gate gives per-pixel softmax weights for the two."""

    def __init__(self, channels: int, reduction: int = 1) -> None:
        super().__init__()
        self.cross_att1 = CrossAttentionC(channels, reduction)
        self.cross_att2 = CrossAttentionC(channels, reduction)
        self.fuse_gate = nn.Sequential(
            nn.Conv2d(2 * channels, channels // 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels // 4, 2, 3, padding=1),
            nn.Softmax(dim=1),
        )

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        a1 = self.cross_att1(x1, x2)
        a2 = self.cross_att2(x2, x1)
        gates = self.fuse_gate(torch.cat([a1, a2], dim=1))
        return gates[:, 0:1] * a1 + gates[:, 1:2] * a2


class SEBlock(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc(avgpool(x)))`` (channel reduction 16, no biases)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        y = self.fc(x.mean(dim=(2, 3))).view(b, c, 1, 1)
        return x * y


class SEFusion(nn.Module):
    """``w * a + (1 - w) * b`` with ``w = SEBlock(a + b)``. As in IMDL-BenCo, ``w`` is the
    SE block's *output* (the re-weighted sum), not its sigmoid weights."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.SEBock = SEBlock(channels)  # IMDL-BenCo's spelling: the state-dict key

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w = self.SEBock(a + b)
        return w * a + (1 - w) * b


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ChannelShuffleDownsample(nn.Module):
    """Downsample by ``scale`` without losing pixels: pixel-unshuffle (C -> C*scale^2 channels),
    1x1 projection to ``out_channels``, then a channel shuffle in ``scale`` groups."""

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2) -> None:
        super().__init__()
        if out_channels % scale:
            raise ValueError(
                f"ChannelShuffleDownsample: out_channels {out_channels} must be divisible by scale {scale}")
        self.scale = scale
        self.proj = nn.Conv2d(in_channels * scale * scale, out_channels, 1)
        nn.init.kaiming_normal_(self.proj.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(self.proj(F.pixel_unshuffle(x, self.scale)), self.scale)


def _initial_positions(scale: int, groups: int) -> torch.Tensor:
    """Sub-pixel centres of the ``scale x scale`` output pixels of one input pixel, in input-pixel
    units, laid out ``(1, 2*groups*scale^2, 1, 1)`` as (axis x|y, group, row, column)."""
    h = (torch.arange(scale, dtype=torch.float32) - (scale - 1) / 2) / scale
    ys, xs = torch.meshgrid(h, h, indexing="ij")
    return torch.stack([xs, ys]).repeat(1, groups, 1).reshape(1, -1, 1, 1)


class DySampleUpsample(nn.Module):
    """Upsample by ``scale`` by sampling the input at learned positions.

    A 1x1 convolution predicts ``2 * groups * scale^2`` offsets per input pixel (x/y for each
    group of ``C/groups`` channels and each of the ``scale^2`` output pixels), scaled by 0.25 and
    added to the regular sub-pixel grid (``initial_pos``). Pixel-shuffling turns them into one
    sampling grid per group at the output resolution; ``grid_sample`` (bilinear, border padding,
    ``align_corners=False``) reads the input there. With zero offsets this is bilinear upsampling.
    """

    def __init__(self, in_channels: int, scale: int = 2, groups: int = 4) -> None:
        super().__init__()
        if in_channels < groups or in_channels % groups:
            raise ValueError(f"DySampleUpsample: in_channels {in_channels} must be a multiple of groups {groups}")
        self.scale = scale
        self.groups = groups
        self.offset_conv = nn.Conv2d(in_channels, 2 * groups * scale * scale, 1)
        nn.init.normal_(self.offset_conv.weight, 0.0, 0.001)
        nn.init.zeros_(self.offset_conv.bias)
        self.register_buffer("initial_pos", _initial_positions(scale, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        s = self.scale
        offset = self.offset_conv(x) * 0.25 + self.initial_pos
        # float32 under autocast: the float32 buffer promotes the offsets, keep the grid exact
        dtype = torch.promote_types(x.dtype, offset.dtype)
        offset = offset.to(dtype).view(b, 2, -1, h, w)
        ys = torch.arange(h, device=x.device, dtype=dtype) + 0.5
        xs = torch.arange(w, device=x.device, dtype=dtype) + 0.5
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        base = torch.stack([gx, gy]).view(1, 2, 1, h, w)
        norm = torch.tensor([w, h], device=x.device, dtype=dtype).view(1, 2, 1, 1, 1)
        coords = 2 * (base + offset) / norm - 1
        grid = F.pixel_shuffle(coords.reshape(b, -1, h, w), s)  # (B, 2*G, sH, sW)
        grid = grid.view(b, 2, self.groups, s * h, s * w).permute(0, 2, 3, 4, 1).flatten(0, 1)
        out = F.grid_sample(x.to(dtype).reshape(b * self.groups, -1, h, w), grid, mode="bilinear",
                            padding_mode="border", align_corners=False)
        return out.view(b, -1, s * h, s * w).to(x.dtype)


def _noise_downsample(in_channels: int, columns: int) -> nn.Sequential:
    """Three channel-shuffle halvings to 1/8 (-> 16, 64, 128 channels), then IMDL-BenCo's
    ``LayerNorm(64)`` and LeakyReLU(0.2). That LayerNorm normalises over the *last* axis, i.e. the
    64 columns of the 1/8 map, so the noise branch only runs on 512-pixel-wide input, as in
    IMDL-BenCo (:class:`MSCDI_Net` checks this and says so)."""
    return nn.Sequential(
        ChannelShuffleDownsample(in_channels, 16, 2), ChannelShuffleDownsample(16, 64, 2),
        ChannelShuffleDownsample(64, 128, 2), nn.LayerNorm(columns), nn.LeakyReLU(0.2),
    )


class SRMNoiseExtractor(nn.Module):
    """SRM residuals (3 fixed 5x5 kernels per RGB channel -> 9 channels, with a trainable bias)
    brought to ``(B, 128, H/8, W/8)``. The kernels are a frozen parameter ``srm_conv.weight``
    (IMDL-BenCo's layout, so its checkpoints load)."""

    columns = 64

    def __init__(self) -> None:
        super().__init__()
        self.srm_conv = nn.Conv2d(3, 9, 5, padding=2)
        with torch.no_grad():
            self.srm_conv.weight.copy_(SRMConv2D().weight)
        self.srm_conv.weight.requires_grad_(False)
        self.downsample = _noise_downsample(9, self.columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.srm_conv(x))


class _PlainBayarConv(nn.Module):
    """IMDL-BenCo's MSCDI ``BayarConv2d``: a 5x5 convolution RGB -> 1 channel with bias whose
    kernel is only *initialised* high-pass (centre 0, zero mean); unlike
    :class:`IMDLBenCo.modules.extractors.BayarConv2D` no constraint is applied at forward time."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, in_channels, 5, 5))
        self.bias = nn.Parameter(torch.zeros(1))
        with torch.no_grad():
            nn.init.uniform_(self.weight, -0.1, 0.1)
            self.weight[:, :, 2, 2] = 0
            self.weight -= self.weight.mean(dim=(2, 3), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=2)


class BayarNoiseExtractor(nn.Module):
    """Learned high-pass residual (1 channel) brought to ``(B, 128, H/8, W/8)``."""

    columns = 64

    def __init__(self) -> None:
        super().__init__()
        self.bayar = _PlainBayarConv()
        self.downsample = _noise_downsample(1, self.columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.bayar(x))
