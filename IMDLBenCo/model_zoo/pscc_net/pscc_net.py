"""PSCC-Net: progressive spatio-channel correlation network for manipulation detection and
localisation (Liu, Liu, Zhang, Chen, Wang; IEEE TCSVT 2022).

An HRNet-W18-small-v2 feature extractor (``FENet``) gives four feature maps at full, 1/2, 1/4 and
1/8 resolution. The localisation network ``SegNet`` (NLCDetection) predicts a mask at the coarsest
scale with a spatio-channel non-local block (SCCM), gates the next finer features with that mask
(its raw logits, as IMDL-BenCo does; its probability with ``gate_with_probability``), and repeats
down to full resolution: four masks, coarse to fine. The detection head
``ClsNet`` (HRNet's classification head: bottlenecks per branch, strided fusion, pooling, MLP)
gives 2-class image logits. State-dict names follow IMDL-BenCo (``weights``, ``FENet.*``,
``SegNet.getmask{1..4}.*``, ``ClsNet.*``), so its checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import MODELS
from .hrnet import BN_MOMENTUM, Bottleneck, HRNetW18SmallV2, make_layer

logger = logging.getLogger(__name__)

__all__ = ["PSCC_Net", "NonLocalMask", "NLCDetection", "DetectionHead", "convert_official_checkpoints",
           "balanced_bce_with_logits"]


class NonLocalMask(nn.Module):
    """Spatio-channel correlation module (SCCM) plus a 2-conv mask predictor.

    The input ``(B, C, H, W)`` is reshaped (a plain memory reshape, as in the authors' code) to
    ``(B, C*r*r, H/r, W/r)``; spatial attention (N x N) and channel attention (C' x C') are
    computed from the same ``theta``/``phi`` projections and added back through ``W_s``/``W_c``
    with learnable scales. Returns mask logits ``(B,1,H,W)`` and the refined features.
    """

    def __init__(self, in_channels: int, reduce_scale: int) -> None:
        super().__init__()
        self.r = reduce_scale
        self.ic = in_channels * reduce_scale * reduce_scale
        self.g = nn.Conv2d(self.ic, self.ic, 1)
        self.theta = nn.Conv2d(self.ic, self.ic, 1)
        self.phi = nn.Conv2d(self.ic, self.ic, 1)
        self.W_s = nn.Conv2d(in_channels, in_channels, 1)
        self.W_c = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma_s = nn.Parameter(torch.ones(1))
        self.gamma_c = nn.Parameter(torch.ones(1))
        self.getmask = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(16, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        if h % self.r or w % self.r:
            raise ValueError(f"NonLocalMask: feature size {h}x{w} must be divisible by {self.r}")
        x1 = x.reshape(b, self.ic, h // self.r, w // self.r)
        g = self.g(x1).flatten(2)  # (B, C', N)
        theta = self.theta(x1).flatten(2)
        phi = self.phi(x1).flatten(2)
        # correlations are sums over hundreds of channels / thousands of positions: float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            g, theta, phi = g.float(), theta.float(), phi.float()
            f_s = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, N, N)
            f_c = torch.softmax(theta @ phi.transpose(1, 2), dim=-1)  # (B, C', C')
            # contiguous before the reshape, as the reference: at reduce_scale 1 the reshape of the
            # transposed product is otherwise a channels-last view, and W_s then runs PyTorch's
            # channels-last kernel, which rounds differently (issue 28)
            y_s = (f_s @ g.transpose(1, 2)).transpose(1, 2).contiguous().reshape(b, c, h, w)
            y_c = (g.transpose(1, 2) @ f_c).reshape(b, c, h, w)
        z = x + self.gamma_s * self.W_s(y_s.to(x.dtype)) + self.gamma_c * self.W_c(y_c.to(x.dtype))
        return self.getmask(z), z


class NLCDetection(nn.Module):
    """Progressive localisation: mask at 1/8, gate the 1/4 features with it, ... to 1/1.

    The gate is the coarser mask's upsampled logits (IMDL-BenCo 0.1.45; the network then learns
    with unbounded gates) or, with ``gate_with_probability``, its sigmoid (the paper's
    description and the authors' code, where the mask head ends in a sigmoid).
    Returns the mask logits ``[full, 1/2, 1/4, 1/8]``.
    """

    def __init__(self, channels=(18, 36, 72, 144), gate_with_probability: bool = False) -> None:
        super().__init__()
        self.gate_with_probability = bool(gate_with_probability)
        c1, c2, c3, c4 = channels
        self.getmask4 = NonLocalMask(c4, 1)
        self.getmask3 = NonLocalMask(c3, 2)
        self.getmask2 = NonLocalMask(c2, 2)
        self.getmask1 = NonLocalMask(c1, 4)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        s1, s2, s3, s4 = feats
        logits = []
        gate = None
        for s, head in ((s4, self.getmask4), (s3, self.getmask3), (s2, self.getmask2), (s1, self.getmask1)):
            if gate is not None:
                s = s * F.interpolate(gate, size=s.shape[-2:], mode="bilinear", align_corners=True)
            logit, _ = head(s)
            gate = torch.sigmoid(logit) if self.gate_with_probability else logit
            logits.append(logit)
        return logits[::-1]


class DetectionHead(nn.Module):
    """HRNet classification head: per-branch bottleneck (expansion 2), strided fusion from fine to
    coarse, 1x1 conv to 128, global average pooling, MLP 128-16-2 (logits)."""

    def __init__(self, channels=(18, 36, 72, 144)) -> None:
        super().__init__()
        exp = 2
        self.incre_modules = nn.ModuleList(make_layer(Bottleneck, c, c, 1, expansion=exp) for c in channels)
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels[i] * exp, channels[i + 1] * exp, 3, 2, 1),
                          nn.BatchNorm2d(channels[i + 1] * exp, momentum=BN_MOMENTUM), nn.ReLU())
            for i in range(len(channels) - 1)
        )
        self.final_layer = nn.Sequential(nn.Conv2d(channels[-1] * exp, 128, 1),
                                         nn.BatchNorm2d(128, momentum=BN_MOMENTUM), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(128, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        y = self.incre_modules[0](feats[0])
        for i, down in enumerate(self.downsamp_modules):
            nxt = self.incre_modules[i + 1](feats[i + 1])
            d = down(y)
            if d.shape[-2:] != nxt.shape[-2:]:
                d = F.interpolate(d, size=nxt.shape[-2:], mode="bilinear", align_corners=True)
            y = nxt + d
        y = self.final_layer(y)
        # average pooling over the whole map, as the reference (a mean rounds a few ulps differently)
        y = F.avg_pool2d(y, kernel_size=y.shape[-2:]).flatten(1)
        return self.classifier(y)


def balanced_bce_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSCC-Net's class-balanced BCE: each class gets total weight 0.5 (``0.5 / fraction``) when
    both classes are present in the batch; plain mean BCE otherwise."""
    target = target.float()
    loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    n = target.numel()
    pos = target.sum()
    weight = torch.ones_like(target)
    if 0 < float(pos) < n:
        weight = torch.where(target > 0.5, 0.5 * n / pos, 0.5 * n / (n - pos))
    return (loss * weight).mean()


def _scaled_masks(mask: torch.Tensor, sizes: list[torch.Size]) -> list[torch.Tensor]:
    """Ground truth at each prediction's size: antialiased downscale, then > 0.5."""
    out = []
    for size in sizes:
        if tuple(size) == tuple(mask.shape[-2:]):
            out.append((mask > 0.5).float())
        else:
            m = F.interpolate(mask.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
            out.append((m > 0.5).float())
    return out


@MODELS.register_module()
class PSCC_Net(nn.Module):
    """PSCC-Net (TCSVT 2022).

    Args:
        input_size: IMDL-BenCo's crop size (256). Kept for command-line compatibility; the network
            works at the input's own size (masks at full, 1/2, 1/4, 1/8; output at the input size).
        pretrain_path: local ImageNet HRNet-W18-small-v2 file (``hrnet_w18_small_v2.pth``) for the
            feature extractor, loaded by key name (missing/unexpected keys are logged). Empty:
            random initialisation with one warning.
        gate_with_probability: gate the finer branches with the coarser mask's probability
            (sigmoid), as the paper describes. Off (default, IMDL-BenCo 0.1.45): with its raw
            logits; keep it off for IMDL-BenCo's published PSCC-Net checkpoints and numbers.
        weighted_cls_loss: the detection loss as the authors' code has it, a cross-entropy with
            the class weights ``weights`` (1/0.5947, 1/0.4053: authentic/fake ratios of their
            training set). Off (default, IMDL-BenCo 0.1.45): unweighted binary cross-entropy of
            the fake-class probability (computed from the logits, so it also runs under AMP).
    """

    def __init__(self, input_size: int = 256, pretrain_path: str | None = None,
                 gate_with_probability: bool = False, weighted_cls_loss: bool = False) -> None:
        super().__init__()
        self.input_size = input_size
        self.weighted_cls_loss = bool(weighted_cls_loss)
        # class weights of the authors' detection cross-entropy (a frozen parameter, as in
        # IMDL-BenCo, so checkpoints carry it); used only with weighted_cls_loss
        authentic_ratio = 0.5947
        self.weights = nn.Parameter(torch.tensor([1.0 / authentic_ratio, 1.0 / (1.0 - authentic_ratio)]),
                                    requires_grad=False)
        self.FENet = HRNetW18SmallV2()
        self.SegNet = NLCDetection(self.FENet.out_channels, gate_with_probability)
        self.ClsNet = DetectionHead(self.FENet.out_channels)
        if pretrain_path:
            from ...modules.pretrained import load_pretrained

            load_pretrained(self.FENet, pretrain_path)
        else:
            from ...modules.pretrained import warn_random_init

            warn_random_init("PSCC_Net", "--pretrain_path is empty")

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        h, w = image.shape[-2:]
        # the finest mask is reshaped with r=4 and the coarsest branch is 1/8: work on a grid
        # that is a multiple of 8 and whose 1/4 .. 1/8 maps divide evenly
        bh, bw = -(-h // 8) * 8, -(-w // 8) * 8
        feats = self.FENet(image)
        want = [(bh, bw), (bh // 2, bw // 2), (bh // 4, bw // 4), (bh // 8, bw // 8)]
        return [f if tuple(f.shape[-2:]) == s else
                F.interpolate(f, size=s, mode="bilinear", align_corners=True) for f, s in zip(feats, want)]

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                label: torch.Tensor | None = None, *args, **kwargs) -> dict[str, object]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"PSCC_Net: expected image (B, 3, H, W), got {tuple(image.shape)}")
        size = image.shape[-2:]
        feats = self._features(image)
        mask_logits = self.SegNet(feats)
        cls_logits = self.ClsNet(feats)
        full = F.interpolate(mask_logits[0], size=size, mode="bilinear", align_corners=True) \
            if mask_logits[0].shape[-2:] != size else mask_logits[0]
        pred_mask = torch.sigmoid(full)
        pred_label = torch.softmax(cls_logits.float(), dim=1)[:, 1]
        out: dict[str, object] = {"pred_mask": pred_mask, "pred_label": pred_label,
                                  "visual_image": {"pred_mask": pred_mask}}
        if mask is None:
            zero = full.new_zeros(()).float()
            out.update(backward_loss=zero, visual_loss={"combined_loss": zero})
            return out
        if label is None:
            label = mask.flatten(1).amax(dim=1) > 0.5
        # losses on logits (BCE-with-logits, cross-entropy): valid under autocast
        first = F.interpolate(mask.float(), size=mask_logits[0].shape[-2:], mode="nearest") \
            if mask_logits[0].shape[-2:] != mask.shape[-2:] else mask
        targets = _scaled_masks(first, [m.shape[-2:] for m in mask_logits])
        seg = sum(balanced_bce_with_logits(lg, t) for lg, t in zip(mask_logits, targets))
        # BCE of softmax[:, 1] == 2-class cross-entropy of the logits (log-softmax: AMP-safe)
        cls = F.cross_entropy(cls_logits.float(), label.long().view(-1),
                              weight=self.weights.float() if self.weighted_cls_loss else None)
        combined = seg + cls
        out.update(backward_loss=combined,
                   visual_loss={"seg_loss": seg.detach(), "cls_loss": cls.detach(),
                                "combined_loss": combined.detach()})
        return out


def convert_official_checkpoints(fenet: str, segnet: str, clsnet: str) -> dict[str, torch.Tensor]:
    """State dict of ``PSCC_Net`` from the authors' three files (``HRNet.pth``,
    ``NLCDetection.pth``, ``DetectionHead.pth`` in proteus1991/PSCC-Net ``checkpoint/``):
    prefixes ``FENet.``, ``SegNet.``, ``ClsNet.`` (``module.`` stripped) and the default
    ``weights``. Load the result with ``model.load_state_dict(sd, strict=True)``."""
    from ...modules.pretrained import read_state_dict

    sd: dict[str, torch.Tensor] = {"weights": torch.tensor([1.0 / 0.5947, 1.0 / (1.0 - 0.5947)])}
    for prefix, path in (("FENet.", fenet), ("SegNet.", segnet), ("ClsNet.", clsnet)):
        part: Mapping[str, torch.Tensor] = read_state_dict(path)
        sd.update({prefix + k: v for k, v in part.items()})
    return sd
