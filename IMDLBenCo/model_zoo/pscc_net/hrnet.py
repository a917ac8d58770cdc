"""HRNet-W18-small-v2 feature extractor as PSCC-Net uses it (Wang et al., TPAMI 2020).

The stem keeps full resolution (both 3x3 convolutions have stride 1, unlike ImageNet HRNet), so
the four output branches are at 1, 1/2, 1/4 and 1/8 of the input with 18, 36, 72, 144 channels.
Stages: 2 bottlenecks (64 -> 256), then 1 module each of 2, 3, 4 branches with 2 basic blocks per
branch; multi-resolution fusion after every module. Key names follow the HRNet reference code
(``conv1``, ``layer1``, ``transition1``, ``stage2.0.branches``, ``fuse_layers`` ...), so the
ImageNet ``hrnet_w18_small_v2.pth`` file loads by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...modules.resnet_blocks import (
    BN_MOMENTUM,
    BasicBlock,
    Bottleneck,
    hrnet_fuse_layers,
    hrnet_transition,
    make_layer,
)

__all__ = ["HRNetW18SmallV2", "BasicBlock", "Bottleneck", "make_layer", "HRNET_W18_SMALL_V2"]

#: stage layout: (modules, blocks per branch, channels per branch, block type)
HRNET_W18_SMALL_V2 = {
    "stage1": dict(blocks=2, channels=64),
    "stage2": dict(modules=1, blocks=(2, 2), channels=(18, 36)),
    "stage3": dict(modules=1, blocks=(2, 2, 2), channels=(18, 36, 72)),
    "stage4": dict(modules=1, blocks=(2, 2, 2, 2), channels=(18, 36, 72, 144)),
}


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=BN_MOMENTUM)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every branch receives the sum of all branches
    (upsampled by 1x1 conv + bilinear, or downsampled by strided 3x3 convs)."""

    def __init__(self, blocks: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(make_layer(BasicBlock, c, c, b, expansion=1) for b, c in zip(blocks, channels))
        self.fuse_layers = hrnet_fuse_layers(channels)
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        # Each fused output sums the branch contributions in branch-index order, starting from
        # branch 0, as the HRNet reference code does: float addition is not associative, and
        # PSCC-Net's non-local softmax and logit gating amplify a few-ulp change into visible
        # differences in the mask and the gradients (issue 28).
        return [self.relu(self.fuse_output(i, xs)) for i in range(len(self.fuse_layers))]

    def fuse_output(self, i: int, xs: list[torch.Tensor]) -> torch.Tensor:
        """Sum of all branches brought to branch ``i`` (before the ReLU), in branch order 0, 1, ..."""
        y = None
        for j, layer in enumerate(self.fuse_layers[i]):
            z = xs[j] if j == i else layer(xs[j])
            # from a coarser branch (1x1 conv) always; from a finer one only for odd sizes
            # (strided convs round up)
            if z.shape[-2:] != xs[i].shape[-2:] or j > i:
                z = F.interpolate(z, size=xs[i].shape[-2:], mode="bilinear", align_corners=True)
            y = z if y is None else y + z
        return y


class HRNetW18SmallV2(nn.Module):
    """Returns the 4 branch outputs ``[(B,18,H,W), (B,36,H/2,W/2), (B,72,H/4,W/4), (B,144,H/8,W/8)]``."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        cfg = HRNET_W18_SMALL_V2
        self.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU()
        self.layer1 = make_layer(Bottleneck, 64, cfg["stage1"]["channels"], cfg["stage1"]["blocks"])
        prev = [cfg["stage1"]["channels"] * Bottleneck.expansion]
        for s in (2, 3, 4):
            st = cfg[f"stage{s}"]
            setattr(self, f"transition{s - 1}", hrnet_transition(prev, list(st["channels"])))
            setattr(self, f"stage{s}", nn.Sequential(*[HighResolutionModule(st["blocks"], st["channels"])
                                                        for _ in range(st["modules"])]))
            prev = list(st["channels"])
        self.out_channels = prev

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        ys = [self.layer1(x)]
        for s in (2, 3, 4):
            trans = getattr(self, f"transition{s - 1}")
            xs = []
            for i, t in enumerate(trans):
                src = ys[i] if i < len(ys) else ys[-1]
                xs.append(src if t is None else t(src))
            ys = getattr(self, f"stage{s}")(xs)
        return ys
