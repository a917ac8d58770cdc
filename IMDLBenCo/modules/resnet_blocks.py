"""Residual blocks shared by the zoo's ResNet and HRNet backbones (PSCC-Net, MVSS-Net, CAT-Net ...).

Key names are torchvision's (``conv1``, ``bn1``, ``conv2`` ..., ``downsample.0``/``.1``), so
ImageNet ResNet and HRNet files load by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: BatchNorm momentum of HRNet's reference code (torchvision's ResNet uses 0.1)
BN_MOMENTUM = 0.01

__all__ = ["BN_MOMENTUM", "BasicBlock", "Bottleneck", "make_layer", "hrnet_fuse_layers", "hrnet_transition"]


def _bn(c: int, momentum: float = BN_MOMENTUM) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=momentum)


class BasicBlock(nn.Module):
    """ResNet/HRNet basic block: two 3x3 convolutions, residual, ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _bn(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet/HRNet bottleneck: 1x1 -> 3x3 (optionally dilated) -> 1x1, residual, ReLU.

    ``expansion``: output/planes ratio (4 in ResNet and HRNet, 2 in PSCC-Net's detection head);
    ``bn_momentum``: HRNet uses 0.01, torchvision's ResNet 0.1. Key names are torchvision's.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 expansion: int | None = None, dilation: int = 1, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        exp = self.expansion if expansion is None else expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(planes, planes * exp, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * exp, momentum=bn_momentum)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer(block, inplanes: int, planes: int, blocks: int, stride: int = 1, expansion: int = 4) -> nn.Sequential:
    """``blocks`` residual blocks; a 1x1 projection on the first when the shape changes."""
    out_c = planes * expansion
    downsample = None
    if stride != 1 or inplanes != out_c:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out_c, 1, stride, bias=False), _bn(out_c))
    kw = {"expansion": expansion} if block is Bottleneck else {}
    layers = [block(inplanes, planes, stride, downsample, **kw)]
    layers += [block(out_c, planes, **kw) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def hrnet_fuse_layers(channels: Sequence[int]) -> nn.ModuleList | None:
    """HRNet's multi-resolution fusion layers (None for a single branch): ``[i][j]`` brings branch
    ``j`` to branch ``i``: a 1x1 conv + BN from a coarser branch (upsampled by the caller), None on
    the diagonal, a chain of stride-2 3x3 conv + BN (+ReLU between) from a finer branch. Key names
    are the HRNet reference code's (``fuse_layers.i.j...``)."""
    n = len(channels)
    if n == 1:
        return None
    rows = []
    for i in range(n):
        row: list[nn.Module | None] = []
        for j in range(n):
            if j > i:
                row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False), _bn(channels[i])))
            elif j == i:
                row.append(None)
            else:
                convs = []
                for k in range(i - j):
                    last = k == i - j - 1
                    out_c = channels[i] if last else channels[j]
                    seq: list[nn.Module] = [nn.Conv2d(channels[j], out_c, 3, 2, 1, bias=False), _bn(out_c)]
                    if not last:
                        seq.append(nn.ReLU())
                    convs.append(nn.Sequential(*seq))
                row.append(nn.Sequential(*convs))
        rows.append(nn.ModuleList(row))
    return nn.ModuleList(rows)


def hrnet_transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
    """HRNet's layers between stages: a 3x3 conv + BN + ReLU where a branch changes width (None
    where it does not), and a chain of stride-2 3x3 convs from the coarsest branch for each new one."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(None if c == pre[i] else nn.Sequential(
                nn.Conv2d(pre[i], c, 3, 1, 1, bias=False), _bn(c), nn.ReLU()))
        else:
            convs = []
            for j in range(i + 1 - len(pre)):
                out_c = c if j == i - len(pre) else pre[-1]
                convs.append(nn.Sequential(nn.Conv2d(pre[-1], out_c, 3, 2, 1, bias=False), _bn(out_c), nn.ReLU()))
            layers.append(nn.Sequential(*convs))
    return nn.ModuleList(layers)
