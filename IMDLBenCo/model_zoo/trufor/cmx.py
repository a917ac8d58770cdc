"""TruFor's dual-branch encoder: two SegFormer MiT-B2 streams fused CMX-style at every stage.

CMX (Zhang et al., "CMX: Cross-Modal Fusion for RGB-X Semantic Segmentation with Transformers",
IEEE T-ITS 2023) runs one MiT stream on RGB and one on an extra modality (in TruFor: the
Noiseprint++ residual, repeated to 3 channels). After each stage

* a **Feature Rectify Module** (FRM) lets each stream correct the other with channel weights (from
  the average and max pooled concatenation, an MLP and a sigmoid) and spatial weights (two 1x1
  convolutions and a sigmoid on the concatenation); the *rectified* maps feed the next stage;
* a **Feature Fusion Module** (FFM) merges the pair into the stage output: a cross-attention path
  (each stream's queries read the other's global key-value context, an efficient "linear"
  attention with C x C context matrices) followed by a channel embedding (1x1 conv, depth-wise 3x3,
  ReLU, 1x1 conv, BatchNorm, plus a 1x1 residual, then BatchNorm).

The transformer parts (patch embeddings, blocks) are this repository's MiT modules
(:mod:`IMDLBenCo.modules.mit`). Module names reproduce IMDL-BenCo's (and the official TruFor's)
state dict: ``patch_embed{1..4}``, ``extra_patch_embed{1..4}``, ``block{i}``, ``norm{i}``,
``extra_block{i}``, ``extra_norm{i}``, ``FRMs.{0..3}``, ``FFMs.{0..3}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...modules.mit import MiTBlock, MixVisionTransformer, OverlapPatchEmbed

__all__ = ["ChannelWeights", "SpatialWeights", "FeatureRectifyModule", "CrossAttention", "CrossPath",
           "ChannelEmbed", "FeatureFusionModule", "DualMiT", "dual_mit_b2"]


# ------------------------------------------------------------------ feature rectification
class ChannelWeights(nn.Module):
    """Per-channel weights ``(2, B, C, 1, 1)`` for the two streams from their pooled concatenation."""

    def __init__(self, dim: int, reduction: int = 1) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim * 4, dim * 4 // reduction), nn.ReLU(inplace=True),
                                 nn.Linear(dim * 4 // reduction, dim * 2), nn.Sigmoid())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        b = x1.shape[0]
        x = torch.cat((x1, x2), dim=1)
        pooled = torch.cat((x.mean(dim=(2, 3)), x.amax(dim=(2, 3))), dim=1)  # (B, 4C)
        return self.mlp(pooled).reshape(b, 2, self.dim, 1, 1).permute(1, 0, 2, 3, 4)


class SpatialWeights(nn.Module):
    """Per-pixel weights ``(2, B, 1, H, W)`` for the two streams (two 1x1 convolutions, sigmoid)."""

    def __init__(self, dim: int, reduction: int = 1) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(dim * 2, dim // reduction, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(dim // reduction, 2, 1), nn.Sigmoid())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x1.shape
        return self.mlp(torch.cat((x1, x2), dim=1)).reshape(b, 2, 1, h, w).permute(1, 0, 2, 3, 4)


class FeatureRectifyModule(nn.Module):
    """``x1 + lc * cw[1] * x2 + ls * sw[1] * x2`` and symmetrically for ``x2`` (lc = ls = 0.5)."""

    def __init__(self, dim: int, reduction: int = 1, lambda_c: float = 0.5, lambda_s: float = 0.5) -> None:
        super().__init__()
        self.lambda_c = lambda_c
        self.lambda_s = lambda_s
        self.channel_weights = ChannelWeights(dim, reduction)
        self.spatial_weights = SpatialWeights(dim, reduction)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cw = self.channel_weights(x1, x2)
        sw = self.spatial_weights(x1, x2)
        out1 = x1 + self.lambda_c * cw[1] * x2 + self.lambda_s * sw[1] * x2
        out2 = x2 + self.lambda_c * cw[0] * x1 + self.lambda_s * sw[0] * x1
        return out1, out2


# ------------------------------------------------------------------ feature fusion
class CrossAttention(nn.Module):
    """Each stream's tokens (used directly as queries) read the other stream's context
    ``softmax_over_keys(K^T V * scale)`` (a per-head C_h x C_h matrix: linear in the token count)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"CrossAttention: dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.kv1 = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.kv2 = nn.Linear(dim, dim * 2, bias=qkv_bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).permute(0, 2, 1, 3)

    def _context(self, kv: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        k, v = kv(x).reshape(b, n, 2, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return ((k.transpose(-2, -1) @ v) * self.scale).softmax(dim=-2)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = x1.shape
        ctx1, ctx2 = self._context(self.kv1, x1), self._context(self.kv2, x2)
        y1 = (self._heads(x1) @ ctx2).permute(0, 2, 1, 3).reshape(b, n, c)
        y2 = (self._heads(x2) @ ctx1).permute(0, 2, 1, 3).reshape(b, n, c)
        return y1, y2


class CrossPath(nn.Module):
    """Split each stream's projection into a kept half and a cross-attended half, project back,
    add the input and LayerNorm."""

    def __init__(self, dim: int, reduction: int = 1, num_heads: int = 1) -> None:
        super().__init__()
        inner = dim // reduction
        self.channel_proj1 = nn.Linear(dim, inner * 2)
        self.channel_proj2 = nn.Linear(dim, inner * 2)
        self.act1 = nn.ReLU(inplace=True)
        self.act2 = nn.ReLU(inplace=True)
        self.cross_attn = CrossAttention(inner, num_heads=num_heads)
        self.end_proj1 = nn.Linear(inner * 2, dim)
        self.end_proj2 = nn.Linear(inner * 2, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y1, u1 = self.act1(self.channel_proj1(x1)).chunk(2, dim=-1)
        y2, u2 = self.act2(self.channel_proj2(x2)).chunk(2, dim=-1)
        v1, v2 = self.cross_attn(u1, u2)
        out1 = self.norm1(x1 + self.end_proj1(torch.cat((y1, v1), dim=-1)))
        out2 = self.norm2(x2 + self.end_proj2(torch.cat((y2, v2), dim=-1)))
        return out1, out2


class ChannelEmbed(nn.Module):
    """Tokens ``(B, H*W, C_in)`` -> map ``(B, C_out, H, W)``: BatchNorm(1x1 residual + conv path)."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 1) -> None:
        super().__init__()
        mid = out_channels // reduction
        self.residual = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.channel_embed = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1),
            nn.Conv2d(mid, mid, 3, padding=1, groups=mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1),
            nn.BatchNorm2d(out_channels),
        )
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x.permute(0, 2, 1).reshape(b, c, h, w).contiguous()
        return self.norm(self.residual(x) + self.channel_embed(x))


class FeatureFusionModule(nn.Module):
    """Two ``(B, C, H, W)`` maps -> one fused ``(B, C, H, W)`` map (cross path, channel embedding)."""

    def __init__(self, dim: int, reduction: int = 1, num_heads: int = 1) -> None:
        super().__init__()
        self.cross = CrossPath(dim, reduction, num_heads)
        self.channel_emb = ChannelEmbed(dim * 2, dim, reduction)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x1.shape
        t1, t2 = self.cross(x1.flatten(2).transpose(1, 2), x2.flatten(2).transpose(1, 2))
        return self.channel_emb(torch.cat((t1, t2), dim=-1), h, w)


# ------------------------------------------------------------------ the dual encoder
class DualMiT(nn.Module):
    """Two MiT streams (``rgb`` and ``extra``) with an FRM and an FFM after every stage.

    ``forward(rgb, extra)`` takes two ``(B, in_chans, H, W)`` tensors and returns the four fused
    maps ``(B, embed_dims[i], H/4/2^i, W/4/2^i)`` (rounded up).
    """

    def __init__(
        self,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        self.depths = list(depths)
        total = sum(depths)
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        for prefix in ("", "extra_"):
            prev = in_chans
            for i in range(4):
                patch, stride = (7, 4) if i == 0 else (3, 2)
                setattr(self, f"{prefix}patch_embed{i + 1}", OverlapPatchEmbed(patch, stride, prev, embed_dims[i]))
                prev = embed_dims[i]
        cur = 0
        for i in range(4):
            # The reference gives every block of stage 2 the same drop-path rate (dpr[cur] for the
            # RGB stream, dpr[cur + 1] for the Noiseprint++ stream); kept so that training matches.
            if i == 1:
                rates = {"": [dpr[cur]] * depths[i], "extra_": [dpr[cur + 1]] * depths[i]}
            else:
                rates = {p: dpr[cur:cur + depths[i]] for p in ("", "extra_")}
            for prefix in ("", "extra_"):
                blocks = nn.ModuleList(
                    MiTBlock(embed_dims[i], num_heads[i], mlp_ratios[i], qkv_bias=True, drop_path=rates[prefix][j],
                             sr_ratio=sr_ratios[i])
                    for j in range(depths[i])
                )
                setattr(self, f"{prefix}block{i + 1}", blocks)
                setattr(self, f"{prefix}norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=1e-6))
            cur += depths[i]
        self.FRMs = nn.ModuleList(FeatureRectifyModule(d) for d in embed_dims)
        self.FFMs = nn.ModuleList(FeatureFusionModule(d, num_heads=h) for d, h in zip(embed_dims, num_heads))
        self.apply(MixVisionTransformer._init_weights)

    def _stage(self, i: int, prefix: str, x: torch.Tensor) -> torch.Tensor:
        x, h, w = getattr(self, f"{prefix}patch_embed{i}")(x)
        for blk in getattr(self, f"{prefix}block{i}"):
            x = blk(x, h, w)
        x = getattr(self, f"{prefix}norm{i}")(x)
        return x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()

    def forward(self, rgb: torch.Tensor, extra: torch.Tensor) -> list[torch.Tensor]:
        if rgb.shape != extra.shape:
            raise ValueError(f"DualMiT: the two inputs must have one shape, got {tuple(rgb.shape)} and "
                             f"{tuple(extra.shape)}")
        outs = []
        for i in range(1, 5):
            rgb = self._stage(i, "", rgb)
            extra = self._stage(i, "extra_", extra)
            rgb, extra = self.FRMs[i - 1](rgb, extra)  # the rectified maps also feed the next stage
            outs.append(self.FFMs[i - 1](rgb, extra))
        return outs


def dual_mit_b2() -> DualMiT:
    """MiT-B2 settings (dims 64-128-320-512, depths 3-4-6-3, heads 1-2-5-8, drop path 0.1)."""
    return DualMiT()
