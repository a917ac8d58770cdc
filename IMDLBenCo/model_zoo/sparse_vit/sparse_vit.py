"""SparseViT: a UniFormer-style hierarchy whose transformer stages attend within sparse windows.

Su et al., "Can We Get Rid of Handcrafted Feature Extractors? SparseViT: Nonsemantics-Centered,
Parameter-Efficient Image Manipulation Localization through Spare-Coding Transformer", AAAI 2025
(arXiv 2412.14598). Authors' code: https://github.com/scu-zjz/SparseViT; this follows
IMDL-BenCo 0.1.45's copy of it.

* Four stages (patch embeddings /4, /2, /2, /2 with LayerNorm). Stages 1-2: convolutional blocks
  (``CBlock``: depthwise 3x3 position conv, BatchNorm, 1x1 - depthwise 5x5 - 1x1 "attention",
  1x1 MLP). Stages 3-4: sparse self-attention blocks (``SABlock``) with layer scale (gamma 1e-6)
  and a depthwise-conv MLP.
* Sparse attention: in a stage-3 block the (H, W) token map is cut into groups of
  ``s x s`` tokens taken every ``H / s`` rows and ``W / s`` columns (a dilated grid), with
  ``s = 32 // s_blocks3[i // 5]``; stage 4 uses ``s = 16 // s_blocks4[i // 4]``. Attention runs
  within each group only, so a larger ``s_blocks`` value means smaller, denser groups.
* The learnable multi-scale fusion ("LMU", ``Multiple``): the stage-3 output after every 5th block
  (not the 20th) and the normalised stage-3 output, projected 320 -> 512 by 1x1 convolutions, plus
  the stage-4 output after every 4th block and the normalised stage-4 output, upsampled; a sum
  weighted by per-channel gammas (init 1e-6), LayerNorm, 1x1 convolution to one logit map,
  bilinearly upsampled to the input size. BCE-with-logits against the mask.

As in IMDL-BenCo, the SABlocks' ``pos_embed`` and the backbone's ``norm1``/``norm2`` exist (and are
in the state dict) but are not used by the forward pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ...modules.mit import DWConv, MixFFN
from ...registry import MODELS

if TYPE_CHECKING:
    from ...modules.pretrained import LoadReport

logger = logging.getLogger(__name__)

__all__ = ["SparseViT", "SparseViTBackbone", "sparse_group", "sparse_ungroup"]

#: tokens per axis of a sparse group before the s_blocks division (stage 3, stage 4)
STAGE3_SPAN, STAGE4_SPAN = 32, 16
#: blocks that share one s_blocks entry, and the stage-3 / stage-4 fusion taps
STAGE3_PERIOD, STAGE4_PERIOD = 5, 4
LAYER_SCALE_INIT = 1e-6
EPS = 1e-6  # LayerNorm eps of the transformer blocks, the stage norms and the fusion


# ---------------------------------------------------------------------------------- sparse groups
def sparse_group(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * gh * gw, s * s, C) with gh = H / s, gw = W / s: group (u, v) holds the
    tokens at rows ``a * gh + u`` and columns ``b * gw + v`` (a, b < s), in row-major (a, b)
    order, groups ordered (batch, u, v) — IMDL-BenCo's ``alter_sparse`` layout."""
    b, c, h, w = x.shape
    gh, gw = h // s, w // s
    x = x.permute(0, 2, 3, 1).reshape(b, s, gh, s, gw, c)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b * gh * gw, s * s, c)


def sparse_ungroup(x: torch.Tensor, batch: int, size: tuple[int, int], s: int) -> torch.Tensor:
    """Inverse of :func:`sparse_group`, as tokens: (B * gh * gw, s * s, C) -> (B, H * W, C)."""
    h, w = size
    gh, gw = h // s, w // s
    c = x.shape[-1]
    x = x.reshape(batch, gh, gw, s, s, c).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, h * w, c)


# ---------------------------------------------------------------------------------- blocks
class PatchEmbed(nn.Module):
    """Strided convolution, then LayerNorm over channels (default eps 1e-5, as IMDL-BenCo)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def _drop_path(p: float) -> nn.Module:
    from timm.layers import DropPath  # exposes drop_prob

    return DropPath(p) if p > 0.0 else nn.Identity()


class CBlock(nn.Module):
    """UniFormer's convolutional block (stages 1-2)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        from timm.layers import Mlp

        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = _drop_path(drop_path)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, use_conv=True)  # 1x1 conv -> GELU -> 1x1 conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection; the product is scaled after the
    matrix multiplication, as IMDL-BenCo."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)))


class SABlock(nn.Module):
    """Sparse self-attention block (stages 3-4): attention within the sparse groups of
    ``sparse_size`` x ``sparse_size`` tokens, then a depthwise-conv MLP; both residual branches
    scaled by layer-scale gammas."""

    def __init__(self, dim: int, num_heads: int, sparse_size: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.sparse_size = sparse_size
        self.gamma_1 = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dim))
        self.gamma_2 = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dim))
        # unused by the forward pass (as in IMDL-BenCo); kept so checkpoints load strictly
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=EPS)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop=drop)
        self.drop_path = _drop_path(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=EPS)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio), drop)  # fc1 -> depthwise 3x3 -> GELU -> fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.sparse_size
        if h % s or w % s:
            raise ValueError(f"SparseViT: a {h}x{w} token map cannot be split into {s}x{s} sparse groups; the "
                             f"input's 1/16 (stage 3) and 1/32 (stage 4) maps must be multiples of the spans "
                             f"32/s_blocks3 and 16/s_blocks4 (use another input size or larger s_blocks values)")
        tokens = x.flatten(2).transpose(1, 2)
        attended = sparse_ungroup(self.attn(self.norm1(sparse_group(x, s))), b, (h, w), s)
        tokens = tokens + self.drop_path(self.gamma_1 * attended)
        tokens = tokens + self.drop_path(self.gamma_2 * self.mlp(self.norm2(tokens), h, w))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


def stage3_taps(depth: int) -> list[int]:
    """Stage-3 block indices whose output feeds the fusion: every 5th block except the 20th
    (the stage's normalised output is used there), IMDL-BenCo's rule."""
    return [i for i in range(depth) if (i + 1) % STAGE3_PERIOD == 0 and (i + 1) // STAGE3_PERIOD != 4]


def stage4_taps(depth: int) -> list[int]:
    return [i for i in range(depth) if (i + 1) % STAGE4_PERIOD == 0]


def _layer_norm_2d(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


@MODELS.register_module()
class SparseViTBackbone(nn.Module):
    """The four-stage encoder (registered as in IMDL-BenCo; a feature extractor, not a model the
    training scripts can train). ``forward(x)`` returns the fusion inputs by IMDL-BenCo's names:
    ``third1..`` (stage-3 taps), ``third`` (normalised stage 3), ``last1..`` (stage-4 taps),
    ``last`` (normalised stage 4), in that order.

    Args follow IMDL-BenCo's; ``img_size`` is only recorded (any input whose stage maps split into
    the sparse groups works), ``representation_size`` and ``norm_layer`` are not offered (the
    first is unused by the forward pass, the second is LayerNorm(eps=1e-6)).
    """

    def __init__(self, layers: Sequence[int] = (5, 8, 20, 7), img_size: int = 224, in_chans: int = 3,
                 s_blocks3: Sequence[int] = (8, 4, 2, 1), s_blocks4: Sequence[int] = (2, 1),
                 embed_dim: Sequence[int] = (64, 128, 320, 512), head_dim: int = 64, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: float | None = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        layers, embed_dim = list(layers), list(embed_dim)
        _check_layout(layers, embed_dim, head_dim, list(s_blocks3), list(s_blocks4))
        self.img_size = img_size
        self.embed_dim = embed_dim
        d1, d2, d3, d4 = layers
        self.patch_embed1 = PatchEmbed(4, in_chans, embed_dim[0])
        self.patch_embed2 = PatchEmbed(2, embed_dim[0], embed_dim[1])
        self.patch_embed3 = PatchEmbed(2, embed_dim[1], embed_dim[2])
        self.patch_embed4 = PatchEmbed(2, embed_dim[2], embed_dim[3])
        self.pos_drop = nn.Dropout(drop_rate)
        # float32 linspace read back as Python floats: the reference's stochastic-depth values
        dpr = torch.linspace(0, drop_path_rate, sum(layers), device="cpu").tolist()
        heads = [dim // head_dim for dim in embed_dim]
        attn_kw = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                       attn_drop=attn_drop_rate)
        self.blocks1 = nn.ModuleList([CBlock(embed_dim[0], mlp_ratio, drop_rate, dpr[i]) for i in range(d1)])
        self.norm1 = nn.LayerNorm(embed_dim[0], eps=EPS)  # unused, kept for the state dict
        self.blocks2 = nn.ModuleList([CBlock(embed_dim[1], mlp_ratio, drop_rate, dpr[d1 + i]) for i in range(d2)])
        self.norm2 = nn.LayerNorm(embed_dim[1], eps=EPS)  # unused, kept for the state dict
        self.blocks3 = nn.ModuleList([
            SABlock(embed_dim[2], heads[2], STAGE3_SPAN // s_blocks3[i // STAGE3_PERIOD],
                    drop_path=dpr[d1 + d2 + i], **attn_kw) for i in range(d3)])
        self.norm3 = nn.LayerNorm(embed_dim[2], eps=EPS)
        self.blocks4 = nn.ModuleList([
            SABlock(embed_dim[3], heads[3], STAGE4_SPAN // s_blocks4[i // STAGE4_PERIOD],
                    drop_path=dpr[d1 + d2 + d3 + i], **attn_kw) for i in range(d4)])
        self.norm4 = nn.LayerNorm(embed_dim[3], eps=EPS)
        self.taps3, self.taps4 = stage3_taps(d3), stage4_taps(d4)
        self.apply(self._init_weights)
        if pretrained_path:
            self.load_pretrained(pretrained_path)
        else:
            from ...modules.pretrained import warn_random_init

            warn_random_init("SparseViT", "--pretrained_path is empty")

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # IMDL-BenCo / UniFormer initialisation, applied before any pretrained weights are loaded
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, DWConv):
            conv = m.dwconv
            fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_out))
            nn.init.zeros_(conv.bias)

    def load_pretrained(self, path: str) -> LoadReport:
        """UniFormer weights from a local file (``model`` entry; ``backbone.`` prefixes, as in
        detection/segmentation checkpoints, are stripped). Unlike IMDL-BenCo 0.1.45 nothing is
        re-initialised afterwards. Returns the load report."""
        from ...modules.pretrained import load_pretrained

        def strip_backbone(key: str) -> str | None:
            return key[len("backbone."):] if key.startswith("backbone.") else key

        return load_pretrained(self, path, key_map=strip_backbone, adapt_in_channels=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.pos_drop(self.patch_embed1(x))
        for blk in self.blocks1:
            x = blk(x)
        x = self.patch_embed2(x)
        for blk in self.blocks2:
            x = blk(x)
        x = self.patch_embed3(x)
        feats: dict[str, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks3):
            x = blk(x)
            if i in self.taps3:
                feats[f"third{(i + 1) // STAGE3_PERIOD}"] = x
        feats["third"] = _layer_norm_2d(self.norm3, x)
        x = self.patch_embed4(x)  # from the un-normalised stage-3 output
        for i, blk in enumerate(self.blocks4):
            x = blk(x)
            if i in self.taps4:
                feats[f"last{(i + 1) // STAGE4_PERIOD}"] = x
        feats["last"] = _layer_norm_2d(self.norm4, x)
        return feats


class Multiple(nn.Module):
    """The learnable multi-scale fusion ("LMU"): ``n3`` stage-3 maps through 1x1 convolutions
    ``conv_layer1..n3`` (c3 -> c4 channels), ``n4`` stage-4 maps bilinearly resized to the stage-3
    grid, weighted by per-channel ``gamma1..n`` and summed, LayerNorm, 1x1 convolution to logits."""

    def __init__(self, n3: int = 4, n4: int = 2, in_dim: int = 320, embed_dim: int = 512,
                 init_value: float = 1e-6) -> None:
        super().__init__()
        self.n3, self.n4 = n3, n4
        for i in range(1, n3 + n4 + 1):
            setattr(self, f"gamma{i}", nn.Parameter(init_value * torch.ones(embed_dim)))
        self.norm = nn.LayerNorm(embed_dim, eps=EPS)
        for i in range(1, n3 + 1):
            setattr(self, f"conv_layer{i}", nn.Conv2d(in_dim, embed_dim, kernel_size=1))
        self.conv_last = nn.Conv2d(embed_dim, 1, kernel_size=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        if len(feats) != self.n3 + self.n4:
            raise ValueError(f"SparseViT fusion: expected {self.n3 + self.n4} feature maps, got {len(feats)}")
        maps = [getattr(self, f"conv_layer{i + 1}")(f) for i, f in enumerate(feats[:self.n3])]
        size = maps[0].shape[-2:]
        maps += [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[self.n3:]]
        fused = None
        for i, m in enumerate(maps):  # summed left to right, as the reference
            term = getattr(self, f"gamma{i + 1}").view(1, -1, 1, 1) * m
            fused = term if fused is None else fused + term
        return self.conv_last(_layer_norm_2d(self.norm, fused))


def _check_layout(depth: list[int], embed_dim: list[int], head_dim: int, s_blocks3: list[int],
                  s_blocks4: list[int]) -> None:
    """Errors naming the option, before anything is built."""
    if len(depth) != 4 or len(embed_dim) != 4 or min(depth) < 1:
        raise ValueError(f"SparseViT: --depth and --embed_dim need 4 positive values each, got {depth} and {embed_dim}")
    for dim in embed_dim[2:]:
        if dim % head_dim:
            raise ValueError(f"SparseViT: --embed_dim {dim} is not divisible by --head_dim {head_dim}")
    for name, values, span, period, d in (("s_blocks3", s_blocks3, STAGE3_SPAN, STAGE3_PERIOD, depth[2]),
                                          ("s_blocks4", s_blocks4, STAGE4_SPAN, STAGE4_PERIOD, depth[3])):
        need = -(-d // period)
        if len(values) < need:
            raise ValueError(f"SparseViT: --{name} has {len(values)} values; {need} are needed "
                             f"(one per {period} blocks of a {d}-block stage)")
        bad = [v for v in values if v < 1 or span % v]
        if bad:
            raise ValueError(f"SparseViT: --{name} values must divide {span} (the group span); got {bad}")
    if not stage3_taps(depth[2]):
        raise ValueError(f"SparseViT: --depth stage 3 has {depth[2]} blocks; at least {STAGE3_PERIOD} are needed "
                         f"(the fusion reads its output every {STAGE3_PERIOD} blocks)")


def size_multiple(depth: Sequence[int], s_blocks3: Sequence[int], s_blocks4: Sequence[int]) -> int:
    """The input sizes SparseViT accepts are the multiples of this number: every sparse span must
    divide the stage-3 (1/16) and stage-4 (1/32) maps."""
    s3 = {STAGE3_SPAN // s_blocks3[i // STAGE3_PERIOD] for i in range(depth[2])}
    s4 = {STAGE4_SPAN // s_blocks4[i // STAGE4_PERIOD] for i in range(depth[3])}
    return math.lcm(32, *(16 * s for s in s3), *(32 * s for s in s4))


@MODELS.register_module()
class SparseViT(nn.Module):
    """SparseViT (AAAI 2025).

    Args:
        depth: blocks per stage (stages 1-2 convolutional, 3-4 sparse attention).
        embed_dim: channels per stage.
        head_dim: channels per attention head.
        img_size: the image size of the recipe (512). It is checked against the sparse spans at
            construction; the forward pass accepts any size that is a multiple of
            :func:`size_multiple` (512 with the defaults) and predicts at that size.
        s_blocks3: sparsity of stage 3 per group of 5 blocks: groups of (32 / s)² tokens.
        s_blocks4: sparsity of stage 4 per group of 4 blocks: groups of (16 / s)² tokens.
        mlp_ratio: MLP width / channels.
        qkv_bias: bias of the qkv projections.
        pretrained_path: local UniFormer-B ImageNet file ``uniformer_base_in1k.pth`` (its
            ``model`` entry; a ``backbone.`` prefix is stripped); nothing is downloaded. Empty:
            random initialisation and one warning.
    """

    def __init__(self, depth: Sequence[int] = (5, 8, 20, 7), embed_dim: Sequence[int] = (64, 128, 320, 512),
                 head_dim: int = 64, img_size: int = 512, s_blocks3: Sequence[int] = (8, 4, 2, 1),
                 s_blocks4: Sequence[int] = (2, 1), mlp_ratio: float = 4, qkv_bias: bool = True,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        depth, embed_dim = list(depth), list(embed_dim)
        s_blocks3, s_blocks4 = list(s_blocks3), list(s_blocks4)
        _check_layout(depth, embed_dim, head_dim, s_blocks3, s_blocks4)
        self.size_multiple = size_multiple(depth, s_blocks3, s_blocks4)
        if img_size % self.size_multiple:
            raise ValueError(
                f"SparseViT: --img_size {img_size} is not a multiple of {self.size_multiple}, which the sparse "
                f"groups of --s_blocks3 {s_blocks3} / --s_blocks4 {s_blocks4} need; choose another size or "
                f"larger s_blocks values")
        self.img_size = img_size
        self.encoder_net = SparseViTBackbone(layers=depth, img_size=img_size, s_blocks3=s_blocks3,
                                             s_blocks4=s_blocks4, embed_dim=embed_dim, head_dim=head_dim,
                                             mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path_rate=0.2,
                                             pretrained_path=pretrained_path)
        self.lmu = Multiple(n3=len(stage3_taps(depth[2])) + 1, n4=len(stage4_taps(depth[3])) + 1,
                            in_dim=embed_dim[2], embed_dim=embed_dim[3])

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, *args, **kwargs) -> dict[str, object]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"SparseViT: expected image (B, 3, H, W), got {tuple(image.shape)}")
        size = tuple(image.shape[-2:])
        if size[0] % self.size_multiple or size[1] % self.size_multiple:
            raise ValueError(
                f"SparseViT: image size {size[0]}x{size[1]} is not a multiple of {self.size_multiple}, which its "
                f"sparse attention groups need; use --image_size {self.size_multiple * max(1, round(size[0] / self.size_multiple))} "
                f"or larger --s_blocks3/--s_blocks4 values")
        logits = self.lmu(list(self.encoder_net(image).values()))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        pred_mask = torch.sigmoid(logits)
        out: dict[str, object] = {"pred_mask": pred_mask, "pred_label": None,
                                  "visual_image": {"pred_mask": pred_mask}}
        if mask is None:
            zero = logits.new_zeros((), dtype=torch.float32)
            out.update(backward_loss=zero, visual_loss={"predict_loss": zero})
            return out
        loss = F.binary_cross_entropy_with_logits(logits.float(), mask.float())
        out.update(backward_loss=loss, visual_loss={"predict_loss": loss.detach()})
        return out
