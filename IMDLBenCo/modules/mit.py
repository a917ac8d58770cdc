"""SegFormer's Mix Transformer encoder (MiT-B0 ... B5), written for IMDL-BenCo key compatibility.

Architecture (Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with
Transformers", NeurIPS 2021): four stages; each starts with an *overlapping* patch embedding
(strided convolution + LayerNorm: 7x7/4 for stage 1, 3x3/2 after), followed by transformer blocks
whose attention shrinks keys/values spatially by ``sr_ratio`` (a strided conv + LayerNorm, "efficient
self-attention"), and whose feed-forward is a Mix-FFN (Linear -> 3x3 depth-wise conv -> GELU ->
Linear), which gives positional information without a position embedding. Every stage ends with a
LayerNorm and is returned as a ``(B, C_i, H/2^(i+1), W/2^(i+1))`` feature map (strides 4, 8, 16, 32).

State-dict names (``patch_embed{1..4}.proj/norm``, ``block{1..4}.{j}.attn.q/kv/proj/sr/norm``,
``block{1..4}.{j}.mlp.fc1/dwconv.dwconv/fc2``, ``norm{1..4}``) are those of the official SegFormer
code and of IMDL-BenCo, so ``mit_b*.pth`` ImageNet weights load directly (their ``head.*`` entries
are classification-only and are reported as unexpected).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import drop_path  # stochastic depth (also imported from here by zoo models)
from torch import nn

__all__ = [
    "OverlapPatchEmbed",
    "EfficientAttention",
    "MixFFN",
    "DWConv",
    "run_stages",
    "MiTBlock",
    "MixVisionTransformer",
    "MIT_CONFIGS",
    "mit_b0",
    "mit_b1",
    "mit_b2",
    "mit_b3",
    "mit_b4",
    "mit_b5",
    "drop_path",
]


class OverlapPatchEmbed(nn.Module):
    """Strided convolution (kernel > stride, so patches overlap) then LayerNorm over channels.

    Input ``(B, in_chans, H, W)``; output tokens ``(B, H'*W', embed_dim)`` and ``(H', W')`` with
    ``H' = floor((H + 2*(k//2) - k) / stride) + 1``.
    """

    def __init__(self, patch_size: int = 7, stride: int = 4, in_chans: int = 3, embed_dim: int = 768,
                 bias: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride,
                              padding=patch_size // 2, bias=bias)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor):
        if x.ndim != 4 or x.shape[1] != self.proj.in_channels:
            raise ValueError(
                f"OverlapPatchEmbed: expected input (B, {self.proj.in_channels}, H, W), got {tuple(x.shape)}"
            )
        x = self.proj(x)
        h, w = x.shape[-2:]
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x, h, w


class EfficientAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a ``sr_ratio``-times smaller grid.

    ``q`` is computed on all N tokens; ``kv`` on the tokens after a ``sr_ratio`` x ``sr_ratio``
    strided convolution (``sr``) and LayerNorm (``norm``), so the cost is N * N / sr_ratio^2.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, sr_ratio: int = 1) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"EfficientAttention: dim {dim} must be divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            x_ = x.transpose(1, 2).reshape(b, c, h, w)
            x_ = self.norm(self.sr(x_).flatten(2).transpose(1, 2))
        else:
            x_ = x
        kv = self.kv(x_).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class DWConv(nn.Module):
    """3x3 depth-wise convolution applied to a token sequence laid out on an ``h x w`` grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w))
        return x.flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """Mix-FFN: ``fc2(drop(GELU(dwconv3x3(fc1(x)))))``."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), h, w)))
        return self.drop(self.fc2(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, sr_ratio: int = 1) -> None:
        super().__init__()
        # SegFormer builds the blocks' (and the stages') LayerNorms with eps 1e-6; published
        # weights were trained with it. The attention and patch-embedding norms keep 1e-5.
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientAttention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, sr_ratio)
        self.drop_path = drop_path
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x), h, w), self.drop_path, self.training)
        x = x + drop_path(self.mlp(self.norm2(x), h, w), self.drop_path, self.training)
        return x


def run_stages(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The four stage maps ``(B, C_i, H_i, W_i)`` of a SegFormer-layout encoder: one with
    ``patch_embed{i}``, ``block{i}`` (blocks called as ``blk(x, h, w)``) and ``norm{i}`` for
    i = 1..4 (:class:`MixVisionTransformer`, MSCDI-Net's GLCA variant)."""
    outs = []
    b = x.shape[0]
    for i in range(1, 5):
        x, h, w = getattr(encoder, f"patch_embed{i}")(x)
        for blk in getattr(encoder, f"block{i}"):
            x = blk(x, h, w)
        x = getattr(encoder, f"norm{i}")(x)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        outs.append(x)
    return outs


class MixVisionTransformer(nn.Module):
    """SegFormer's hierarchical encoder; ``forward`` returns the 4 stage feature maps.

    Args:
        in_chans: input channels (3 for RGB; 6 for Mesorch's stacked DCT views).
        embed_dims, num_heads, mlp_ratios, depths, sr_ratios: per-stage settings (4 entries each).
        qkv_bias: bias on the q / kv projections.
        drop_rate, attn_drop_rate: dropout; drop_path_rate: stochastic depth, linearly increasing
            over all blocks.
        stem_bias: bias of the first patch-embedding convolution (Mesorch builds it without).

    Output: list of 4 tensors ``(B, embed_dims[i], ceil(H/4/2^i), ceil(W/4/2^i))``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        stem_bias: bool = True,
    ) -> None:
        super().__init__()
        for name, seq in (("embed_dims", embed_dims), ("num_heads", num_heads), ("mlp_ratios", mlp_ratios),
                          ("depths", depths), ("sr_ratios", sr_ratios)):
            if len(seq) != 4:
                raise ValueError(f"MixVisionTransformer: {name} needs 4 entries (one per stage), got {list(seq)}")
        self.in_chans = in_chans
        self.embed_dims = list(embed_dims)
        self.depths = list(depths)
        total = sum(depths)
        # plain Python (not torch.linspace) so the model also builds on the meta device
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        cur = 0
        prev = in_chans
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}",
                    OverlapPatchEmbed(patch, stride, prev, embed_dims[i], bias=stem_bias or i > 0))
            prev = embed_dims[i]
        # blocks and norms are registered after all patch embeddings: this reproduces the
        # official (and IMDL-BenCo) state-dict order
        for i in range(4):
            blocks = nn.ModuleList(
                MiTBlock(embed_dims[i], num_heads[i], mlp_ratios[i], qkv_bias, qk_scale, drop_rate,
                         attn_drop_rate, dpr[cur + j], sr_ratios[i])
                for j in range(depths[i])
            )
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=1e-6))
            cur += depths[i]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs, each ``(B, C_i, H_i, W_i)``."""
        return run_stages(self, x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)


#: per-variant settings of the SegFormer paper (Table 6); heads and sr ratios are shared
MIT_CONFIGS = {
    "mit_b0": dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "mit_b1": dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2)),
    "mit_b2": dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3)),
    "mit_b3": dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3)),
    "mit_b4": dict(embed_dims=(64, 128, 320, 512), depths=(3, 8, 27, 3)),
    "mit_b5": dict(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3)),
}


def _build(variant: str, **kwargs) -> MixVisionTransformer:
    cfg = dict(num_heads=(1, 2, 5, 8), mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1), qkv_bias=True,
               drop_path_rate=0.1)
    cfg.update(MIT_CONFIGS[variant])
    cfg.update(kwargs)
    return MixVisionTransformer(**cfg)


def mit_b0(**kwargs) -> MixVisionTransformer:
    """MiT-B0 (3.3M params): dims 32-64-160-256, depths 2-2-2-2."""
    return _build("mit_b0", **kwargs)


def mit_b1(**kwargs) -> MixVisionTransformer:
    """MiT-B1: dims 64-128-320-512, depths 2-2-2-2."""
    return _build("mit_b1", **kwargs)


def mit_b2(**kwargs) -> MixVisionTransformer:
    """MiT-B2 (24.2M params): dims 64-128-320-512, depths 3-4-6-3."""
    return _build("mit_b2", **kwargs)


def mit_b3(**kwargs) -> MixVisionTransformer:
    """MiT-B3: dims 64-128-320-512, depths 3-4-18-3 (Mesorch's low-frequency branch)."""
    return _build("mit_b3", **kwargs)


def mit_b4(**kwargs) -> MixVisionTransformer:
    """MiT-B4: dims 64-128-320-512, depths 3-8-27-3."""
    return _build("mit_b4", **kwargs)


def mit_b5(**kwargs) -> MixVisionTransformer:
    """MiT-B5: dims 64-128-320-512, depths 3-6-40-3."""
    return _build("mit_b5", **kwargs)
