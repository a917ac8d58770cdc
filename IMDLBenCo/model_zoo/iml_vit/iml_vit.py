"""IML-ViT (Ma et al., 2023): a plain ViT-B with windowed + global attention for manipulation
localisation, a simple feature pyramid, and an edge-weighted loss.

State-dict names (``encoder_net.*``, ``featurePyramid_net.simfp_{2..5}.*``, ``predict_head.*``)
and shapes match IMDL-BenCo's ``IML_ViT`` so its published checkpoints load with ``strict=True``.
"""

import logging
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, drop_path  # channel LayerNorm (eps 1e-6) and stochastic depth
from torch import nn

from ...modules.pretrained import load_pretrained, warn_random_init
from ...registry import MODELS

logger = logging.getLogger(__name__)

__all__ = ["IML_ViT", "WindowedViT", "SimpleFeaturePyramid", "PredictHead", "LayerNorm2d"]


# ---------------------------------------------------------------------------- encoder pieces
def _rel_pos_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings ``(q_size, k_size, C)``; the table is linearly resized when it
    was made for another size (e.g. a global block built for 1024 running on 512 input)."""
    max_dist = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != max_dist:
        rel_pos = F.interpolate(rel_pos.t().unsqueeze(0), size=max_dist, mode="linear").squeeze(0).t()
    q = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    idx = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[idx.long()]


class RelPosAttention(nn.Module):
    """Multi-head attention with decomposed relative positions (MViTv2 / ViTDet): the bias of
    query (i, j) on key (k, l) is ``q . Rh[i-k] + q . Rw[j-l]``."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        n = h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, d)
        rh = _rel_pos_table(h, h, self.rel_pos_h)
        rw = _rel_pos_table(w, w, self.rel_pos_w)
        rq = q.reshape(b, self.num_heads, h, w, -1)
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", rq, rh)
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", rq, rw)
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(b, self.num_heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.transpose(1, 2).reshape(b, h, w, c)
        return self.proj(out)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _window_partition(x: torch.Tensor, win: int) -> tuple[torch.Tensor, tuple[int, int]]:
    b, h, w, c = x.shape
    ph, pw = (win - h % win) % win, (win - w % win) % win
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // win, win, wp // win, win, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, win, win, c), (hp, wp)


def _window_unpartition(x: torch.Tensor, win: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // ((hp // win) * (wp // win))
    x = x.view(b, hp // win, wp // win, win, win, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : size[0], : size[1]].contiguous()


class ViTBlock(nn.Module):
    """Pre-norm transformer block on a ``(B, H, W, C)`` grid; ``window_size`` 0 = global attention."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, window_size: int,
                 grid: tuple[int, int]) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RelPosAttention(dim, num_heads, (window_size, window_size) if window_size else grid)
        self.drop_path = drop_path
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size:
            size = x.shape[1:3]
            x, padded = _window_partition(x, self.window_size)
            x = _window_unpartition(self.attn(x), self.window_size, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + drop_path(x, self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class _PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)

    def forward(self, x):
        return self.proj(x).permute(0, 2, 3, 1)  # (B, H, W, C)


class WindowedViT(nn.Module):
    """ViT-B encoder of IML-ViT / ViTDet: 14x14 windowed attention, global attention at
    ``global_blocks``, relative positions, absolute position embedding stored at the MAE
    pre-training grid (14x14 + class slot) and interpolated to the input grid. Output: stride-16
    map ``(B, C, H/16, W/16)``.
    """

    def __init__(self, img_size: int = 1024, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, drop_path_rate: float = 0.1, window_size: int = 14,
                 global_blocks: Sequence[int] = (2, 5, 8, 11), pretrain_img_size: int = 224) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = _PatchEmbed(patch_size, 3, embed_dim)
        n_pre = (pretrain_img_size // patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pre + 1, embed_dim))
        grid = (img_size // patch_size, img_size // patch_size)
        self.blocks = nn.ModuleList(
            ViTBlock(embed_dim, num_heads, mlp_ratio, drop_path_rate * i / max(depth - 1, 1),
                     0 if i in global_blocks else window_size, grid)
            for i in range(depth)
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _abs_pos(self, h: int, w: int) -> torch.Tensor:
        pos = self.pos_embed[:, 1:]  # the class-token slot is not used (no class token)
        n = int(math.isqrt(pos.shape[1]))
        pos = pos.reshape(1, n, n, -1)
        if (n, n) != (h, w):
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(h, w), mode="bicubic",
                                align_corners=False).permute(0, 2, 3, 1)
        return pos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self._abs_pos(x.shape[1], x.shape[2])
        for blk in self.blocks:
            x = blk(x)
        return x.permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------- pyramid and head
class ConvNorm(nn.Conv2d):
    """Conv2d (no bias) followed by a channel LayerNorm stored as ``.norm`` (detectron2 layout)."""

    def __init__(self, cin: int, cout: int, kernel_size: int) -> None:
        super().__init__(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = LayerNorm2d(cout)

    def forward(self, x):
        return self.norm(super().forward(x))


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid from the single stride-16 map: one branch per scale factor
    (4: two 2x2 deconvs, 2: one deconv, 1: identity, 0.5: max-pool), each then 1x1 and 3x3 conv
    with LayerNorm, plus a stride-2 max-pool of the coarsest level -> ``len(scales)+1`` maps."""

    def __init__(self, in_dim: int = 768, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5)) -> None:
        super().__init__()
        self.scale_factors = [float(s) for s in scale_factors]
        self.stage_names: list[str] = []
        for scale in self.scale_factors:
            dim = in_dim
            if scale == 4.0:
                layers = [nn.ConvTranspose2d(in_dim, in_dim // 2, 2, 2), LayerNorm2d(in_dim // 2), nn.GELU(),
                          nn.ConvTranspose2d(in_dim // 2, in_dim // 4, 2, 2)]
                dim = in_dim // 4
            elif scale == 2.0:
                layers = [nn.ConvTranspose2d(in_dim, in_dim // 2, 2, 2)]
                dim = in_dim // 2
            elif scale == 1.0:
                layers = []
            elif scale == 0.5:
                layers = [nn.MaxPool2d(2, 2)]
            else:
                raise ValueError(f"IML_ViT: fpn_scale_factors entries must be 4, 2, 1 or 0.5, got {scale}")
            layers += [ConvNorm(dim, out_channels, 1), ConvNorm(out_channels, out_channels, 3)]
            # stage index = log2(stride): 4x -> stride 4 -> simfp_2 (IMDL-BenCo / detectron2 names)
            name = f"simfp_{int(math.log2(16 / scale))}"
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [getattr(self, n)(x) for n in self.stage_names]
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return outs


class PredictHead(nn.Module):
    """All pyramid levels bilinearly resized to the finest one, concatenated, 1x1 conv to
    ``embed_dim``, norm (BN / LN / IN), dropout, 1x1 conv to one logit map (no activation in
    between, as in IMDL-BenCo, so its checkpoints give the same outputs)."""

    def __init__(self, in_channels: int, embed_dim: int = 256, norm: str = "BN", dropout: float = 0.5) -> None:
        super().__init__()
        self.linear_fuse = nn.Conv2d(in_channels, embed_dim, 1)
        if norm == "BN":
            self.norm = nn.BatchNorm2d(embed_dim)
        elif norm == "LN":
            self.norm = LayerNorm2d(embed_dim)
        elif norm == "IN":
            self.norm = nn.InstanceNorm2d(embed_dim, track_running_stats=True, affine=True)
        else:
            raise ValueError(f"IML_ViT: predict_head_norm must be 'BN', 'LN' or 'IN', got {norm!r}")
        self.dropout = nn.Dropout(dropout)
        self.linear_predict = nn.Conv2d(embed_dim, 1, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        x = torch.cat([f if f.shape[-2:] == size else
                       F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats], dim=1)
        return self.linear_predict(self.dropout(self.norm(self.linear_fuse(x))))


# ---------------------------------------------------------------------------- the model
@MODELS.register_module()
class IML_ViT(nn.Module):
    """IML-ViT: windowed ViT-B + simple feature pyramid + predict head, edge-weighted BCE loss.

    Args:
        input_size: image side the model is built for (relative-position tables of the global
            blocks); the recipe pads images to 1024. Other sizes (multiples of 16) also run.
        patch_size, embed_dim: ViT patch size and width (ViT-B: 16, 768).
        vit_pretrain_path: local MAE ViT-B file (``mae_pretrain_vit_base.pth``); its ``model``
            entry is loaded into ``encoder_net`` non-strictly, with a report. None: random init.
        fpn_channels: channels of every pyramid level.
        fpn_scale_factors: pyramid scales relative to the stride-16 map (subset of 4, 2, 1, 0.5).
        mlp_embeding_dim: width of the predict head (IMDL-BenCo's spelling kept).
        predict_head_norm: ``BN``, ``LN`` or ``IN``.
        edge_lambda: weight of the loss restricted to the edge band (``edge_mask``).
    """

    def __init__(
        self,
        input_size: int = 1024,
        patch_size: int = 16,
        embed_dim: int = 768,
        vit_pretrain_path: str | None = None,
        fpn_channels: int = 256,
        fpn_scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        mlp_embeding_dim: int = 256,
        predict_head_norm: Literal["BN", "LN", "IN"] = "BN",
        edge_lambda: float = 20,
    ) -> None:
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"IML_ViT: input_size {input_size} must be a multiple of patch_size {patch_size}")
        self.input_size = input_size
        self.patch_size = patch_size
        self.edge_lambda = float(edge_lambda)
        self.encoder_net = WindowedViT(img_size=input_size, patch_size=patch_size, embed_dim=embed_dim)
        self.featurePyramid_net = SimpleFeaturePyramid(embed_dim, fpn_channels, fpn_scale_factors)
        self.predict_head = PredictHead(fpn_channels * (len(fpn_scale_factors) + 1), mlp_embeding_dim,
                                        predict_head_norm)
        self._warned_no_edge = False
        if vit_pretrain_path:
            load_pretrained(self.encoder_net, vit_pretrain_path)
        else:
            warn_random_init("IML_ViT", "vit_pretrain_path")

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                edge_mask: torch.Tensor | None = None, shape=None, *args, **kwargs) -> dict[str, object]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"IML_ViT: expected image (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"IML_ViT: image size {h}x{w} must be a multiple of {self.patch_size}; "
                f"use --if_padding --image_size {self.input_size}"
            )
        feats = self.featurePyramid_net(self.encoder_net(image))
        logits = F.interpolate(self.predict_head(feats), size=(h, w), mode="bilinear", align_corners=False)
        pred_mask = torch.sigmoid(logits)
        out: dict[str, object] = {
            "backward_loss": None,
            "pred_mask": pred_mask,
            "pred_label": None,
            "visual_loss": {},
            "visual_image": {"pred_mask": pred_mask},
        }
        if mask is None:
            return out
        mask = mask.to(logits.dtype)
        predict_loss = F.binary_cross_entropy_with_logits(logits, mask)
        if edge_mask is not None:
            edge_mask = edge_mask.to(logits.dtype)
            edge_loss = F.binary_cross_entropy_with_logits(logits, mask, weight=edge_mask) * self.edge_lambda
            out["visual_image"]["edge_mask"] = edge_mask
        else:
            if not self._warned_no_edge:
                logger.warning("IML_ViT: no edge_mask in the batch (set --edge_mask_width 7); edge loss is 0")
                self._warned_no_edge = True
            edge_loss = logits.new_zeros(())
        combined = predict_loss + edge_loss
        out["backward_loss"] = combined
        out["visual_loss"] = {"predict_loss": predict_loss, "edge_loss": edge_loss, "combined_loss": combined}
        return out
