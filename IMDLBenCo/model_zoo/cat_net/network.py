"""CAT-Net's two-stream HRNet (Kwon et al., WACV 2021 / IJCV 2022).

**RGB stream**: HRNet-W48 (stem of two stride-2 3x3 convolutions, 4 bottlenecks, then stages of
2, 3 and 4 parallel branches at 1/4 ... 1/32 with 48/96/192/384 channels).
**DCT stream**: the 21-channel histogram volume of the quantised luminance DCT coefficients
(see :func:`dct_histogram_volume`) → a dilated 3x3 convolution (dilation 8, so each tap sees the
same frequency of a neighbouring 8x8 block) → 1x1 to 4 channels → every 8x8 block folded into 64
channels per input channel (256), beside the same values multiplied by the quantisation table
(512 channels at 1/8) → 4 basic blocks to 96 channels → stages of 2 and 3 branches (96/192/384).
**Fusion (stage 5)**: branch 0 is RGB at 1/4; branch i (1..3) concatenates RGB branch i and DCT
branch i-1 (same resolution); one 4-branch module (24/48/96/192), all branches upsampled to 1/4,
concatenated (360 channels), 1x1 conv + BN + ReLU + 1x1 conv to the class logits.

Module and key names follow the authors' ``network_CAT.py`` (as in IMDL-BenCo), so their
checkpoints and pretrained stream files load by name. Arithmetic follows it too, including the
order in which a multi-resolution module sums its inputs (``y = f(x0); y = y + f(x1); ...``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...modules.resnet_blocks import BN_MOMENTUM, BasicBlock, Bottleneck, hrnet_fuse_layers, hrnet_transition
from ...modules.resnet_blocks import make_layer as _make_layer
from .config import CatNetConfig, StageSpec

#: histogram bins of the DCT volume: |coef| = 0, 1, ..., T-1, and >= T (T = 20)
DCT_CLIP = 20

__all__ = ["CATNetwork", "BasicBlock", "Bottleneck", "HighResolutionModule", "dct_histogram_volume", "DCT_CLIP"]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


BLOCKS = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_layer(block, inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` residual blocks of ``block``'s own expansion (see ``resnet_blocks.make_layer``)."""
    return _make_layer(block, inplanes, planes, blocks, stride, expansion=block.expansion)


class HighResolutionModule(nn.Module):
    """Parallel branches of residual blocks, then multi-resolution fusion: output ``i`` is the sum
    over all branches ``j`` of branch ``j`` brought to branch ``i``'s resolution (1x1 conv + BN +
    bilinear upsampling from coarser branches, strided 3x3 convs from finer ones)."""

    def __init__(self, block, blocks: Sequence[int], in_channels: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(make_layer(block, cin, c, b) for b, cin, c in zip(blocks, in_channels, channels))
        outs = [c * block.expansion for c in channels]
        self.out_channels = outs
        self.fuse_layers = hrnet_fuse_layers(outs)
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for i, row in enumerate(self.fuse_layers):
            # the reference's summation order (float sums are order-sensitive)
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    y = y + F.interpolate(row[j](xs[j]), size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                else:
                    y = y + row[j](xs[j])
            fused.append(self.relu(y))
        return fused


def _stage(spec: StageSpec, in_channels: Sequence[int]):
    block = BLOCKS[spec.block]
    modules = []
    cin = list(in_channels)
    for _ in range(spec.modules):
        module = HighResolutionModule(block, spec.blocks, cin, spec.channels)
        modules.append(module)
        cin = module.out_channels
    return nn.Sequential(*modules), cin


def _widths(spec: StageSpec) -> list[int]:
    return [c * BLOCKS[spec.block].expansion for c in spec.channels]


def _next_inputs(transition: nn.ModuleList, ys: list[torch.Tensor]) -> list[torch.Tensor]:
    # as the reference: a branch with a transition takes the coarsest previous output
    return [ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)]


def dct_histogram_volume(coef: torch.Tensor, clip: int = DCT_CLIP) -> torch.Tensor:
    """``(B, H, W)`` quantised DCT coefficients → ``(B, clip+1, H, W)`` float32 one-hot of
    ``|coef|`` (channel k: ``|coef| == k`` for k < clip; channel ``clip``: ``|coef| >= clip``).

    Non-integer values below ``clip`` match no channel, as in the reference's equality tests.
    """
    magnitude = coef.abs().clamp(max=clip)
    levels = torch.arange(clip + 1, device=coef.device, dtype=magnitude.dtype).view(1, -1, 1, 1)
    return (magnitude.unsqueeze(1) == levels).float()


class CATNetwork(nn.Module):
    """``forward(rgb (B,3,H,W) in [-1,1], dct_volume (B,21,H,W), qtable (B,1,8,8))`` → class logits
    ``(B, num_classes, H/4, W/4)``; H and W must be multiples of 8."""

    def __init__(self, cfg: CatNetConfig) -> None:
        super().__init__()
        st: dict[str, StageSpec] = cfg.stages
        # RGB stream
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU()
        s1 = st["STAGE1"]
        block1 = BLOCKS[s1.block]
        self.layer1 = make_layer(block1, 64, s1.channels[0], s1.blocks[0])
        pre = [s1.channels[0] * block1.expansion]
        self.transition1 = hrnet_transition(pre, _widths(st["STAGE2"]))
        self.stage2, pre = _stage(st["STAGE2"], _widths(st["STAGE2"]))
        self.transition2 = hrnet_transition(pre, _widths(st["STAGE3"]))
        self.stage3, pre = _stage(st["STAGE3"], _widths(st["STAGE3"]))
        self.transition3 = hrnet_transition(pre, _widths(st["STAGE4"]))
        self.stage4, rgb_out = _stage(st["STAGE4"], _widths(st["STAGE4"]))

        # DCT stream (fixed widths, as in the reference)
        self.dc_layer0_dil = nn.Sequential(nn.Conv2d(DCT_CLIP + 1, 64, 3, 1, padding=8, dilation=8), _bn(64), nn.ReLU())
        self.dc_layer1_tail = nn.Sequential(nn.Conv2d(64, 4, 1, bias=False), _bn(4), nn.ReLU())
        self.dc_layer2 = make_layer(BasicBlock, 4 * 64 * 2, 96, 4)
        self.dc_transition2 = hrnet_transition([96], _widths(st["DC_STAGE3"]))
        self.dc_stage3, pre = _stage(st["DC_STAGE3"], _widths(st["DC_STAGE3"]))
        self.dc_transition3 = hrnet_transition(pre, _widths(st["DC_STAGE4"]))
        self.dc_stage4, dct_out = _stage(st["DC_STAGE4"], _widths(st["DC_STAGE4"]))

        # fusion
        fused_in = [r + d for r, d in zip(rgb_out, [0] + list(dct_out))]
        self.transition4 = hrnet_transition(fused_in, _widths(st["STAGE5"]))
        self.stage5, pre = _stage(st["STAGE5"], _widths(st["STAGE5"]))
        width = sum(pre)
        k = cfg.final_conv_kernel
        self.last_layer = nn.Sequential(
            nn.Conv2d(width, width, 1), _bn(width), nn.ReLU(),
            nn.Conv2d(width, cfg.num_classes, k, 1, padding=1 if k == 3 else 0),
        )

    def init_weights(self) -> None:
        """The authors' initialisation: convolution weights N(0, 0.001), BatchNorm 1 / 0
        (convolution biases keep PyTorch's default)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _rgb_stream(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        x = self.layer1(x)
        ys = self.stage2([x if t is None else t(x) for t in self.transition1])
        ys = self.stage3(_next_inputs(self.transition2, ys))
        return self.stage4(_next_inputs(self.transition3, ys))

    def _dct_stream(self, volume: torch.Tensor, qtable: torch.Tensor) -> list[torch.Tensor]:
        x = self.dc_layer1_tail(self.dc_layer0_dil(volume))
        b, c, h, w = x.shape
        # (B, C, 8, 8, H/8, W/8): coefficient (u, v) of every 8x8 block becomes a channel
        blocks = x.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 3, 5, 2, 4)
        plain = blocks.reshape(b, 64 * c, h // 8, w // 8)
        weighted = (blocks * qtable.unsqueeze(-1).unsqueeze(-1)).reshape(b, 64 * c, h // 8, w // 8)
        x = self.dc_layer2(torch.cat([plain, weighted], dim=1))
        ys = self.dc_stage3([x if t is None else t(x) for t in self.dc_transition2])
        return self.dc_stage4(_next_inputs(self.dc_transition3, ys))

    def forward(self, rgb: torch.Tensor, dct_volume: torch.Tensor, qtable: torch.Tensor) -> torch.Tensor:
        rgb_feats = self._rgb_stream(rgb)
        dct_feats = self._dct_stream(dct_volume, qtable)
        xs = [rgb_feats[0]] + [torch.cat([rgb_feats[i + 1], dct_feats[i]], dim=1) for i in range(len(dct_feats))]
        xs = self.stage5([x if t is None else t(x) for t, x in zip(self.transition4, xs)])
        size = xs[0].shape[-2:]
        up = [xs[0]] + [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in xs[1:]]
        return self.last_layer(torch.cat(up, dim=1))
