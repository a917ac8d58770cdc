"""GLCA-SegFormer: SegFormer's Mix Transformer with global-local cross attention (MSCDI-Net's encoder).

The encoder is SegFormer's MiT (:mod:`IMDLBenCo.modules.mit`: overlapping patch embeddings,
efficient attention with spatial reduction ``sr_ratio``, Mix-FFN). In stages 3 and 4, the first
``glca`` blocks of each stage add a *local* branch to the attention: the same queries, keys and
values are split into 8x8 query windows (keys/values: ``8/sr_ratio`` windows on the reduced grid)
and attended to within each window by a single head over all channels (scale ``head_dim^-0.5``).
The global and local results are fused by a :class:`~.blocks.ChannelAttentionFusion` (channel
reduction 4) before the output projection. Stages 1 and 2 are plain MiT blocks.

Windows need the stage-3 and stage-4 maps to be multiples of 8, i.e. input sides that are
multiples of 256 when ``glca > 0``.

Differences from :class:`IMDLBenCo.modules.mit.MiTBlock` that IMDL-BenCo 0.1.45's GLCA blocks
have and we keep: the blocks' ``norm1``/``norm2`` use LayerNorm eps 1e-5 (the stage norms keep
SegFormer's 1e-6), so SegFormer ``mit_b*.pth`` weights load into the same names but the encoder is
not bit-identical to a plain MiT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...modules.mit import (
    MIT_CONFIGS,
    EfficientAttention,
    MixFFN,
    MixVisionTransformer,
    OverlapPatchEmbed,
    drop_path,
    run_stages,
)
from .blocks import ChannelAttentionFusion

__all__ = ["GLCAAttention", "GLCABlock", "GLCAMixTransformer", "glca_mit", "WINDOW_SIZE"]

#: query window side (tokens) of the local branch, as in IMDL-BenCo
WINDOW_SIZE = 8


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * H/size * W/size, size*size, C)``, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size * size, c)


def _unwindow(x: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_windows`: ``(B*nW, size*size, C)`` -> ``(B, H, W, C)``."""
    c = x.shape[-1]
    b = x.shape[0] // ((h // size) * (w // size))
    x = x.view(b, h // size, w // size, size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class GLCAAttention(EfficientAttention):
    """SegFormer efficient attention plus, when ``use_local``, a windowed local branch fused with
    the global one (see the module docstring). Parameters ``q``, ``kv``, ``proj``, ``sr``, ``norm``
    as in SegFormer, plus ``fusion.*`` on GLCA layers.

    ``spatial_local_layout=False`` reproduces IMDL-BenCo 0.1.45, which hands the local map to the
    fusion after a channel-major reshape of its ``(C, N)`` transpose, i.e. with pixels and channels
    scrambled; ``True`` hands over the map in its spatial layout (a different model: checkpoints
    trained with IMDL-BenCo expect the default).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, sr_ratio: int = 1, use_local: bool = False,
                 window_size: int = WINDOW_SIZE, spatial_local_layout: bool = False) -> None:
        super().__init__(dim, num_heads, qkv_bias, None, attn_drop, proj_drop, sr_ratio)
        if use_local and window_size % sr_ratio:
            raise ValueError(f"GLCAAttention: window_size {window_size} must be divisible by sr_ratio {sr_ratio}")
        self.window_size = window_size
        self.spatial_local_layout = spatial_local_layout
        self.fusion = ChannelAttentionFusion(dim, reduction=4) if use_local else None

    def _local(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: int, w: int,
               kh: int, kw: int, dropout: float) -> torch.Tensor:
        """Single-head attention over all channels inside matching windows; ``(B, H, W, C)``."""
        b, c = q.shape[0], self.dim
        ws, kws = self.window_size, self.window_size // self.sr_ratio
        qw = _windows(q.transpose(1, 2).reshape(b, h, w, c), ws)
        kw_ = _windows(k.transpose(1, 2).reshape(b, kh, kw, c), kws)
        vw = _windows(v.transpose(1, 2).reshape(b, kh, kw, c), kws)
        out = F.scaled_dot_product_attention(qw.unsqueeze(1), kw_.unsqueeze(1), vw.unsqueeze(1),
                                             dropout_p=dropout, scale=self.scale).squeeze(1)
        return _unwindow(out, ws, h, w)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        kh, kw = h, w
        if self.sr_ratio > 1:
            x_ = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
            kh, kw = x_.shape[-2:]
            x_ = self.norm(x_.flatten(2).transpose(1, 2))
        else:
            x_ = x
        kv = self.kv(x_).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        dropout = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        out = out.transpose(1, 2).reshape(b, n, c)
        if self.fusion is not None:
            if h % self.window_size or w % self.window_size:
                raise ValueError(
                    f"GLCA attention: a {h}x{w} token map does not split into {self.window_size}x"
                    f"{self.window_size} windows; with glca > 0 the image sides must be multiples of 256 "
                    f"(e.g. --image_size 512), or use --glca 0"
                )
            local = self._local(q, k, v, h, w, kh, kw, dropout).reshape(b, n, c)
            if not self.spatial_local_layout:
                local = local.transpose(1, 2).reshape(b, n, c)  # IMDL-BenCo's scrambling reshape
            global_map = out.transpose(1, 2).reshape(b, c, h, w)
            local_map = local.transpose(1, 2).reshape(b, c, h, w)
            out = self.fusion(global_map, local_map).flatten(2).transpose(1, 2)
        return self.proj_drop(self.proj(out))


class GLCABlock(nn.Module):
    """Pre-norm transformer block (``x + attn(norm1(x))``, ``x + mlp(norm2(x))``) with
    :class:`GLCAAttention`; ``drop_path`` is the stochastic-depth probability."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 sr_ratio: int = 1, use_local: bool = False, spatial_local_layout: bool = False) -> None:
        super().__init__()
        # IMDL-BenCo builds these two with the default eps (1e-5), not SegFormer's 1e-6
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GLCAAttention(dim, num_heads, sr_ratio=sr_ratio, use_local=use_local,
                                  spatial_local_layout=spatial_local_layout)
        self.drop_path = drop_path
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x), h, w), self.drop_path, self.training)
        x = x + drop_path(self.mlp(self.norm2(x), h, w), self.drop_path, self.training)
        return x


class GLCAMixTransformer(nn.Module):
    """Four-stage GLCA-SegFormer encoder; ``forward`` returns the stage maps (strides 4-32).

    Args:
        depths: blocks per stage (MiT-B2: 3-4-6-3, B3: 3-4-18-3, B4: 3-8-27-3, B5: 3-6-40-3).
        glca: the first ``glca`` blocks of stages 3 and 4 get the local branch (0: none).
        drop_path_rate: stochastic depth, rising linearly from 0 over all blocks.
        spatial_local_layout: see :class:`GLCAAttention`.
    """

    def __init__(self, depths=(3, 8, 27, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8),
                 mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1), glca: int = 0, drop_path_rate: float = 0.1,
                 spatial_local_layout: bool = False, in_chans: int = 3) -> None:
        super().__init__()
        if glca < 0:
            raise ValueError(f"GLCAMixTransformer: glca must be >= 0 (number of GLCA blocks per stage), got {glca}")
        self.embed_dims = list(embed_dims)
        self.depths = list(depths)
        total = sum(depths)
        # IMDL-BenCo: torch.linspace(0, rate, total) in float32; plain Python here (builds on meta)
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        prev = in_chans
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(patch, stride, prev, embed_dims[i]))
            prev = embed_dims[i]
        cur = 0
        for i in range(4):
            blocks = nn.ModuleList(
                GLCABlock(embed_dims[i], num_heads[i], mlp_ratios[i], dpr[cur + j], sr_ratios[i],
                          use_local=i >= 2 and j < glca, spatial_local_layout=spatial_local_layout)
                for j in range(depths[i])
            )
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=1e-6))
            cur += depths[i]
        # SegFormer's init, applied to everything (the GLCA fusions' gates start at gamma = 0)
        self.apply(MixVisionTransformer._init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_stages(self, x)


def glca_mit(variant: str, glca: int = 0, spatial_local_layout: bool = False,
             drop_path_rate: float = 0.1) -> GLCAMixTransformer:
    """GLCA-SegFormer of SegFormer size ``variant`` (``"mit_b2"`` ... ``"mit_b5"``)."""
    if variant not in MIT_CONFIGS:
        raise ValueError(f"glca_mit: unknown variant {variant!r}; expected one of {sorted(MIT_CONFIGS)}")
    cfg = MIT_CONFIGS[variant]
    return GLCAMixTransformer(depths=cfg["depths"], embed_dims=cfg["embed_dims"], glca=glca,
                              drop_path_rate=drop_path_rate, spatial_local_layout=spatial_local_layout)

