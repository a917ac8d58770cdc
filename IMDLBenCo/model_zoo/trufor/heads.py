"""TruFor's parts around the dual encoder: the Noiseprint++ extractor, the all-MLP decoder (used for
the anomaly map and for the confidence map) and the confidence-weighted pooling of the detector."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["noiseprint_dncnn", "MLPEmbed", "MLPDecoderHead", "weighted_statistics_pooling", "detection_mlp",
           "init_decoder_", "conf_pool_features"]


def noiseprint_dncnn(levels: int = 17, width: int = 64, in_chans: int = 3, momentum: float = 0.1) -> nn.Sequential:
    """Noiseprint++: a DnCNN of ``levels`` 3x3 convolutions (Cozzolino & Verdoliva's layout).

    conv+ReLU, then ``levels - 2`` x (conv without bias, BatchNorm, ReLU), then a linear conv to one
    channel; the output has the input's spatial size. As a flat ``nn.Sequential`` its state-dict
    keys are ``0.weight``, ``2.weight``, ``3.running_mean``, ..., ``47.bias``, the layout of the
    released ``noiseprint++`` weights.
    """
    layers: list[nn.Module] = []
    for i in range(levels):
        first, last = i == 0, i == levels - 1
        out = 1 if last else width
        conv = nn.Conv2d(in_chans if first else width, out, 3, padding=1, bias=first or last)
        # DnCNN's initialisation: N(0, 2 / (k*k*out))
        nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (9 * out)))
        layers.append(conv)
        if not (first or last):
            bn = nn.BatchNorm2d(width, momentum=momentum)
            nn.init.normal_(bn.weight, 0.0, math.sqrt(2.0 / (9 * width)))
            nn.init.zeros_(bn.bias)
            layers.append(bn)
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MLPEmbed(nn.Module):
    """A feature map ``(B, C, H, W)`` -> tokens ``(B, H*W, embed_dim)`` through one Linear layer."""

    def __init__(self, input_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(2).transpose(1, 2))


class MLPDecoderHead(nn.Module):
    """SegFormer's all-MLP decoder: every stage projected to ``embed_dim`` and upsampled to the 1/4
    map, concatenated (stage 4 first), fused by 1x1 conv + BatchNorm + ReLU, dropout, 1x1 conv to
    ``num_classes`` logits at 1/4 resolution."""

    def __init__(self, in_channels: Sequence[int] = (64, 128, 320, 512), num_classes: int = 2,
                 embed_dim: int = 512, dropout: float = 0.1, bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> None:
        super().__init__()
        c1, c2, c3, c4 = in_channels
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.linear_c4 = MLPEmbed(c4, embed_dim)
        self.linear_c3 = MLPEmbed(c3, embed_dim)
        self.linear_c2 = MLPEmbed(c2, embed_dim)
        self.linear_c1 = MLPEmbed(c1, embed_dim)
        self.linear_fuse = nn.Sequential(nn.Conv2d(embed_dim * 4, embed_dim, 1),
                                         nn.BatchNorm2d(embed_dim, eps=bn_eps, momentum=bn_momentum),
                                         nn.ReLU(inplace=True))
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        c1 = feats[0]
        size = c1.shape[-2:]
        maps = []
        for proj, f in ((self.linear_c4, feats[3]), (self.linear_c3, feats[2]), (self.linear_c2, feats[1]),
                        (self.linear_c1, c1)):
            m = proj(f).transpose(1, 2).reshape(f.shape[0], -1, f.shape[2], f.shape[3])
            if m.shape[-2:] != size:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            maps.append(m)
        x = self.linear_fuse(torch.cat(maps, dim=1))
        return self.linear_pred(self.dropout(x))


def weighted_statistics_pooling(x: torch.Tensor, log_w: torch.Tensor | None = None) -> torch.Tensor:
    """Soft min, soft max, mean and mean square of every channel of ``x`` (B, C, H, W) under the
    spatial weights ``softmax(log_w)`` (uniform when ``log_w`` is None): a (B, 4*C) tensor.

    soft min = ``-logsumexp(log w - x)``, soft max = ``logsumexp(log w + x)``, with ``w`` summing
    to 1 over the pixels.
    """
    b, c = x.shape[:2]
    x = x.reshape(b, c, -1)
    if log_w is None:
        log_w = x.new_zeros(b, 1, x.shape[-1])
    else:
        if log_w.shape[0] != b or log_w.shape[1] != 1 or log_w[0, 0].numel() != x.shape[-1]:
            raise ValueError(f"weighted_statistics_pooling: weights {tuple(log_w.shape)} do not fit the "
                             f"map {tuple(x.shape)}; expected (B, 1, H, W) of the map's size")
        log_w = log_w.reshape(b, 1, -1)
    log_w = F.log_softmax(log_w, dim=-1)
    x_min = -torch.logsumexp(log_w - x, dim=-1)
    x_max = torch.logsumexp(log_w + x, dim=-1)
    w = log_w.exp()
    x_avg = (w * x).sum(dim=-1)
    x_msq = (w * x * x).sum(dim=-1)
    return torch.cat((x_min, x_max, x_avg, x_msq), dim=1)


def detection_mlp(in_features: int = 8, hidden: int = 128, dropout: float = 0.5) -> nn.Sequential:
    """The image-level detector on the 8 pooled statistics: Linear, ReLU, Dropout, Linear -> 1 logit."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def init_decoder_(head: MLPDecoderHead, bn_eps: float, bn_momentum: float) -> None:
    """The official initialisation of the anomaly decoder: Kaiming-normal (fan_in, ReLU) on its
    convolutions, BatchNorm weight 1 / bias 0 with the configured eps and momentum."""
    for m in head.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = bn_eps, bn_momentum
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conf_pool_features(anomaly_logits: torch.Tensor, conf_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The detector's two feature groups: statistics of the confidence map (uniform weights) and of
    the anomaly evidence ``l1 - l0`` weighted by ``sigmoid(confidence)`` (in log space)."""
    f1 = weighted_statistics_pooling(conf_logits)
    evidence = anomaly_logits[:, 1:2] - anomaly_logits[:, 0:1]
    f2 = weighted_statistics_pooling(evidence, F.logsigmoid(conf_logits))
    return f1, f2
