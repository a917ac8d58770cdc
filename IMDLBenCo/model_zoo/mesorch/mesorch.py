"""Mesorch: mixed CNN-Transformer encoders with frequency views and multi-scale orchestration.

Two encoders run in parallel: a ConvNeXt-Tiny (timm) reads RGB + a DCT high-pass view (6 channels)
and a SegFormer MiT-B3 reads RGB + a DCT low-pass view (6 channels). Their 4 + 4 stage outputs are
brought to 1/4 resolution with transposed convolutions, each reduced to a one-channel logit map by
a 1x1 convolution, and mixed per pixel by softmax weights from a small score network that sees
RGB + both frequency views (9 channels). The mixed map is upsampled to the input size.

State-dict names follow IMDL-BenCo (``convnext.*`` in timm 1.0 naming, ``segformer.*``,
``upsample.*``, ``inverse.{0..7}``, ``gate.*``), so its checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import logging
import re

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d  # channel LayerNorm of NCHW maps (eps 1e-6)
from torch import nn

from ...modules.extractors import DCTExtractor
from ...modules.mit import mit_b3
from ...registry import MODELS

logger = logging.getLogger(__name__)

__all__ = ["Mesorch", "ScoreNetwork", "convnext_key_map"]


def _widen_stem(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A copy of ``conv`` with ``in_chans`` inputs and no bias: the first input channels keep
    ``conv``'s weights, the extra ones are Kaiming-initialised (Mesorch's 6-channel stems)."""
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    with torch.no_grad():
        nn.init.kaiming_normal_(new.weight)
        k = min(conv.in_channels, in_chans)
        new.weight[:, :k] = conv.weight[:, :k]
    return new


def _convnext_tiny(in_chans: int = 6) -> nn.Module:
    """timm ConvNeXt-Tiny (depths 3-3-9-3, dims 96-192-384-768, ImageNet head kept for key
    compatibility) with a ``in_chans``-channel, bias-free stem convolution."""
    from timm.models.convnext import ConvNeXt

    net = ConvNeXt(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768))
    net.stem[0] = _widen_stem(net.stem[0], in_chans)
    return net


def convnext_key_map(key: str) -> str | None:
    """Official facebookresearch ConvNeXt names -> timm names (timm files pass unchanged)."""
    key = key.replace("downsample_layers.0.", "stem.")
    key = re.sub(r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2.", key)
    key = re.sub(r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample.", key)
    key = key.replace(".dwconv.", ".conv_dw.").replace(".pwconv1.", ".mlp.fc1.").replace(".pwconv2.", ".mlp.fc2.")
    if key.startswith("norm."):
        key = "head." + key
    elif key.startswith("head.") and not key.startswith(("head.fc.", "head.norm.")):
        key = "head.fc." + key[len("head."):]
    return key


class ScoreNetwork(nn.Module):
    """Per-pixel softmax weights (8 maps at 1/4 resolution) from the 9-channel input: conv 7x7/2,
    an inverted-bottleneck residual (LN, 3x3, 1x1 192->768, 1x1 768->192, GELU), conv 7x7/2."""

    def __init__(self, in_chans: int = 9, n_maps: int = 8, width: int = 192) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 7, stride=2, padding=3)
        self.invert = nn.Sequential(LayerNorm2d(width), nn.Conv2d(width, width, 3, padding=1),
                                    nn.Conv2d(width, width * 4, 1), nn.Conv2d(width * 4, width, 1), nn.GELU())
        self.conv2 = nn.Conv2d(width, n_maps, 7, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x + self.invert(x)
        return torch.softmax(self.conv2(x).float(), dim=1)


def _up_chain(channels: list[int]) -> nn.Module:
    """Transposed convolutions (k4, s2, p1), each doubling the size: channels[0] -> ... -> [-1]."""
    ups = [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1) for a, b in zip(channels, channels[1:])]
    return ups[0] if len(ups) == 1 else nn.Sequential(*ups)


class UpsampleToQuarter(nn.Module):
    """Brings ConvNeXt stages 2-4 (``upsamplec*``) and MiT stages 2-4 (``upsamples*``) to 1/4."""

    def __init__(self, conv_dims=(96, 192, 384, 768), seg_dims=(64, 128, 320, 512)) -> None:
        super().__init__()
        self.upsamplec2 = _up_chain(list(conv_dims[1::-1]))
        self.upsamples2 = _up_chain(list(seg_dims[1::-1]))
        self.upsamplec3 = _up_chain(list(conv_dims[2::-1]))
        self.upsamples3 = _up_chain(list(seg_dims[2::-1]))
        self.upsamplec4 = _up_chain(list(conv_dims[3::-1]))
        self.upsamples4 = _up_chain(list(seg_dims[3::-1]))

    def forward(self, conv_feats: list[torch.Tensor], seg_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c1, c2, c3, c4 = conv_feats
        s1, s2, s3, s4 = seg_feats
        feats = [c1, self.upsamplec2(c2), self.upsamplec3(c3), self.upsamplec4(c4),
                 s1, self.upsamples2(s2), self.upsamples3(s3), self.upsamples4(s4)]
        size = c1.shape[-2:]
        # sizes that are not multiples of 32 round differently in the two encoders
        return [f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=True)
                for f in feats]


@MODELS.register_module()
class Mesorch(nn.Module):
    """Mesorch (AAAI 2025).

    Args:
        seg_pretrain_path: local SegFormer ``mit_b3.pth`` (ImageNet) for the MiT-B3 branch; its
            RGB stem weights fill the first 3 of the 6 input channels.
        conv_pretrain: start the ConvNeXt-Tiny branch from ImageNet weights, read from
            ``conv_pretrain_path`` (IMDL-BenCo downloaded them from timm; we never download).
        conv_pretrain_path: local ConvNeXt-Tiny file, timm (``convnext_tiny``) or official
            facebookresearch key names.
        if_predict_label: accepted for compatibility with IMDL-BenCo's scripts; Mesorch has no
            image-level head (``pred_label`` is None).
        pos_weight: weight of the manipulated pixels in the BCE loss (``BCEWithLogits(pos_weight=)``,
            as the maintained IMDL-BenCo fork 0.2.x offers; useful when manipulated regions are small).
            None (default): IMDL-BenCo 0.1.45's unweighted loss.
    """

    def __init__(self, seg_pretrain_path: str | None = None, conv_pretrain: bool = False,
                 if_predict_label: bool = False, conv_pretrain_path: str | None = None,
                 pos_weight: float | None = None) -> None:
        super().__init__()
        if pos_weight is not None and not pos_weight > 0:
            raise ValueError(f"Mesorch: --pos_weight must be a positive number (the weight of manipulated pixels "
                             f"in the loss), got {pos_weight!r}")
        self.pos_weight = None if pos_weight is None else float(pos_weight)
        self.convnext = _convnext_tiny(6)
        self.segformer = mit_b3(in_chans=6, stem_bias=False)
        self.upsample = UpsampleToQuarter()
        self.inverse = nn.ModuleList([nn.Conv2d(96, 1, 1) for _ in range(4)] + [nn.Conv2d(64, 1, 1) for _ in range(4)])
        self.gate = ScoreNetwork()
        self.high_dct = DCTExtractor(alpha=0.05, mode="high")
        self.low_dct = DCTExtractor(alpha=0.95, mode="low")
        self._load_pretrained(seg_pretrain_path, conv_pretrain, conv_pretrain_path)

    def _load_pretrained(self, seg_path: str | None, conv_pretrain: bool, conv_path: str | None) -> None:
        from ...modules.pretrained import load_pretrained, warn_random_init

        absent = []
        if seg_path:
            load_pretrained(self.segformer, seg_path)
        else:
            absent.append("--seg_pretrain_path is empty")
        if conv_path:
            load_pretrained(self.convnext, conv_path, key_map=convnext_key_map)
        elif conv_pretrain:
            absent.append("--conv_pretrain is set but --conv_pretrain_path is empty")
        if absent:
            warn_random_init("Mesorch", "; ".join(absent))

    def _frequency_views(self, image: torch.Tensor):
        # DCT by matrix products: keep it in float32 even under autocast
        with torch.autocast(device_type=image.device.type, enabled=False):
            img = image.float()
            high, low = self.high_dct(img), self.low_dct(img)
        return high.to(image.dtype), low.to(image.dtype)

    def _convnext_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.convnext.stem(x)
        feats = []
        for stage in self.convnext.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, *args, **kwargs) -> dict[str, object]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"Mesorch: expected image (B, 3, H, W), got {tuple(image.shape)}")
        size = image.shape[-2:]
        high, low = self._frequency_views(image)
        conv_feats = self._convnext_stages(torch.cat([image, high], dim=1))
        seg_feats = self.segformer(torch.cat([image, low], dim=1))
        feats = self.upsample(conv_feats, seg_feats)
        reduced = torch.cat([inv(f) for inv, f in zip(self.inverse, feats)], dim=1)
        weights = self.gate(torch.cat([image, high, low], dim=1))
        if weights.shape[-2:] != reduced.shape[-2:]:
            weights = F.interpolate(weights, size=reduced.shape[-2:], mode="bilinear", align_corners=True)
        logits = (weights * reduced.float()).sum(dim=1, keepdim=True)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
        pred_mask = torch.sigmoid(logits)
        out: dict[str, object] = {"pred_mask": pred_mask, "pred_label": None,
                                  "visual_image": {"pred_mask": pred_mask}}
        if mask is None:
            zero = logits.new_zeros(())
            out.update(backward_loss=zero, visual_loss={"predict_loss": zero})
            return out
        weight = None if self.pos_weight is None else logits.new_tensor([self.pos_weight], dtype=torch.float32)
        loss = F.binary_cross_entropy_with_logits(logits.float(), mask.float(), pos_weight=weight)
        out.update(backward_loss=loss, visual_loss={"predict_loss": loss.detach()})
        return out
