"""``DemoNet``: a small encoder-decoder that learns synthetic tampering on a CPU in a minute.

It follows the model contract of every IMDLBenCo model (docs/ARCHITECTURE.md, "The model output dict"): ``forward(image, mask, label,
...)`` computes its own losses and returns ``backward_loss``, ``pred_mask`` (probabilities),
``pred_label`` ((B,) probabilities), ``visual_loss`` and ``visual_image``.

Why it learns fast: besides the RGB image it looks at fixed high-pass residuals (the SRM-style
filters forensic models use), where pasted or inpainted regions differ in noise and sharpness
from the rest of the picture; a three-scale U-Net keeps the mask sharp; the loss adds a soft
Dice term to the pixel BCE, so small tampered regions are not drowned by authentic pixels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS

__all__ = ["DemoNet"]


def _high_pass_kernels() -> torch.Tensor:
    """Three fixed 5×5 residual filters (first order, second order, 'square'), one per output."""
    first = torch.zeros(5, 5)
    first[2, 1:4] = torch.tensor([1.0, -2.0, 1.0]) / 2
    second = torch.tensor([
        [0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]
    ], dtype=torch.float32) / 4
    square = torch.tensor([
        [-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]
    ], dtype=torch.float32) / 12
    return torch.stack([first, second, square])[:, None]  # (3,1,5,5)


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@MODELS.register_module()
class DemoNet(nn.Module):
    """Small forgery localizer with an image-level head (the model ``benco demo`` trains).

    Args:
        width: channels of the first stage (doubled at each of the two lower scales).
        dice_weight: weight of the soft Dice term added to the pixel BCE.
        label_weight: weight of the image-label BCE.
    """

    def __init__(self, width: int = 16, dice_weight: float = 1.0, label_weight: float = 0.5) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"DemoNet: width must be at least 1, got {width}")
        self.dice_weight = dice_weight
        self.label_weight = label_weight
        self.register_buffer("high_pass", _high_pass_kernels(), persistent=False)
        w = width
        # full resolution only in one thin layer; the work happens at 1/2, 1/4 and 1/8 scale
        self.stem = _block(3 + 9, w)
        self.enc1 = nn.Sequential(_block(w, w, stride=2), _block(w, w))
        self.enc2 = nn.Sequential(_block(w, 2 * w, stride=2), _block(2 * w, 2 * w))
        self.enc3 = nn.Sequential(_block(2 * w, 4 * w, stride=2), _block(4 * w, 4 * w, dilation=2))
        self.dec2 = _block(4 * w + 2 * w, 2 * w)
        self.dec1 = _block(2 * w + w, w)
        self.mask_head = nn.Conv2d(w + w, 1, 3, padding=1)
        self.label_head = nn.Linear(8 * w + 1, 1)

    def residuals(self, image: torch.Tensor) -> torch.Tensor:
        """Per-channel high-pass residuals of the image: (B, 9, H, W)."""
        b, c, h, wd = image.shape
        res = F.conv2d(image.reshape(b * c, 1, h, wd), self.high_pass, padding=2)
        return res.reshape(b, c * 3, h, wd)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, label: torch.Tensor, *args, **kwargs) -> dict:
        x = self.stem(torch.cat([image, self.residuals(image)], dim=1))
        f1 = self.enc1(x)
        f2 = self.enc2(f1)
        f3 = self.enc3(f2)
        d2 = self.dec2(torch.cat([_up(f3, f2), f2], 1))
        d1 = self.dec1(torch.cat([_up(d2, f1), f1], 1))
        mask_logit = self.mask_head(torch.cat([_up(d1, x), x], 1))
        pred_mask = torch.sigmoid(mask_logit)
        # the label sees pooled deep features and the largest mask response
        pooled = torch.cat([f3.mean((2, 3)), f3.amax((2, 3)), mask_logit.amax((2, 3))], 1)
        label_logit = self.label_head(pooled).squeeze(1)

        seg_loss = F.binary_cross_entropy_with_logits(mask_logit, mask)
        inter = (pred_mask * mask).sum((1, 2, 3))
        dice = 1 - (2 * inter + 1) / (pred_mask.sum((1, 2, 3)) + mask.sum((1, 2, 3)) + 1)
        # Dice only on manipulated images: on authentic ones BCE alone asks for an empty mask
        manipulated = (mask.sum((1, 2, 3)) > 0).float()
        dice_loss = (dice * manipulated).sum() / manipulated.sum().clamp(min=1)
        label_loss = F.binary_cross_entropy_with_logits(label_logit, label.float())
        loss = seg_loss + self.dice_weight * dice_loss + self.label_weight * label_loss
        return {
            "backward_loss": loss,
            "pred_mask": pred_mask,
            "pred_label": torch.sigmoid(label_logit),
            "visual_loss": {"seg_loss": seg_loss.detach(), "dice_loss": dice_loss.detach(), "label_loss": label_loss.detach()},
            "visual_image": {"pred_mask": pred_mask.detach()},
        }
