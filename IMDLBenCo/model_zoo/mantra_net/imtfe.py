"""ManTra-Net's image manipulation trace feature extractor (IMTFE), shared by ``MantraNet`` and ``SPAN``.

The IMTFE is a VGG-like stack of unpadded convolutions, each preceded by *symmetric* padding
(TensorFlow's ``SYMMETRIC`` mode: the edge row is repeated, ``abc|cba``):

* a first block that concatenates three 5x5 views of the image: a free convolution (4 channels),
  the 9 fixed SRM noise residuals and a Bayar-constrained convolution (3 channels) -> 16 channels,
  ReLU;
* twelve 3x3 convolutions 16-32-64-64-128-128-128-256-256-256-256-256-256 with ReLU between them
  (none after the last);
* an L2 normalisation over channels.

SPAN uses the same extractor with identity shortcuts around every convolution whose input and
output widths are equal (``residual=True``), as IMDL-BenCo 0.1.45's copy under ``span/`` does.

Key names (``init_conv``, ``BayarConv2D``, ``SRMConv2D``, ``middle_and_last_block.<i>``) are those
of the PyTorch port of ManTra-Net (RonyAbecidan/ManTraNet-pytorch) and of IMDL-BenCo, so
``IMTFEv4.pt`` and IMDL-BenCo checkpoints load unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["IMTFE", "symmetric_pad", "to_mantra_range", "select_imtfe_state", "load_imtfe_weights"]

#: channel widths of the twelve 3x3 convolutions after the 16-channel first block
IMTFE_WIDTHS = (32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def to_mantra_range(image: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised ``(B, 3, H, W)`` -> the ``[-1, 1]`` range ManTra-Net was trained on
    (``x * std + mean``, then ``* 2 - 1``; the reference's operation order, for parity)."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an ImageNet-normalised RGB batch (B, 3, H, W), got {tuple(image.shape)}")
    std = torch.tensor(_IMAGENET_STD, device=image.device).view(1, 3, 1, 1)
    mean = torch.tensor(_IMAGENET_MEAN, device=image.device).view(1, 3, 1, 1)
    return (image * std + mean) * 2 - 1


def symmetric_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two dimensions by ``pad`` on every side, mirroring *including* the edge
    (``abc|cba``; TensorFlow ``SYMMETRIC``, NumPy ``symmetric``). ``pad`` must not exceed the size."""
    h, w = x.shape[-2:]
    if pad == 0:
        return x
    if pad > min(h, w):
        raise ValueError(f"symmetric_pad: pad {pad} is larger than the input ({h}x{w})")
    x = torch.cat([x[..., :pad].flip(-1), x, x[..., w - pad:].flip(-1)], dim=-1)
    return torch.cat([x[..., :pad, :].flip(-2), x, x[..., h - pad:, :].flip(-2)], dim=-2)


def _srm_weight(in_channels: int) -> torch.Tensor:
    """The 9 fixed SRM kernels ``(9, 3, 5, 5)``: output ``3k + c`` is kernel ``k`` on channel ``c``."""
    from ...modules.extractors import SRMConv2D  # one definition of the SRM bank in the package

    if in_channels != 3:
        raise ValueError(f"IMTFE: the SRM bank is defined for RGB input; in_channel must be 3, got {in_channels}")
    return SRMConv2D().weight.clone()


class IMTFE(nn.Module):
    """Image manipulation trace feature extractor: ``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, 256, H, W)``
    unit-length feature vectors.

    Args:
        in_channel: input channels (3; the SRM bank and the Bayar normalisation assume RGB).
        residual: add an identity shortcut to every equal-width convolution (SPAN's variant).
    """

    def __init__(self, in_channel: int = 3, residual: bool = False) -> None:
        super().__init__()
        self.residual = bool(residual)
        # key names and order are those of the ManTra-Net port / IMDL-BenCo
        self.init_conv = nn.Conv2d(in_channel, 4, 5, bias=False)
        self.BayarConv2D = nn.Conv2d(in_channel, 3, 5, bias=False)
        self.SRMConv2D = nn.Conv2d(in_channel, 9, 5, bias=False)
        with torch.no_grad():
            self.SRMConv2D.weight.copy_(_srm_weight(in_channel))
        # a frozen parameter (not a buffer): the reference's parameter count and grad report
        self.SRMConv2D.weight.requires_grad_(False)
        layers = []
        width = 16
        for i, out in enumerate(IMTFE_WIDTHS):
            layers.append(nn.Conv2d(width, out, 3))
            if i < len(IMTFE_WIDTHS) - 1:
                layers.append(nn.ReLU())  # index-only entries: they keep the reference's key numbering
            width = out
        self.middle_and_last_block = nn.ModuleList(layers)

    @torch.no_grad()
    def project_bayar_(self) -> None:
        """Put the Bayar kernel on its constraint, in place: centre -1, off-centre weights summing to 1.

        As in ManTra-Net's PyTorch port and IMDL-BenCo, the stored weight is rewritten before
        every forward pass and then used as an ordinary parameter: its gradient does not flow
        through this projection (gradient parity depends on it). The operations (zero the centre,
        multiply by ``pow(sum, -1)``, set the centre) reproduce the reference bit for bit.
        """
        w = self.BayarConv2D.weight
        c = w.shape[-1] // 2
        w[..., c, c] = 0
        w.mul_(torch.pow(w.sum(dim=(2, 3), keepdim=True), -1))
        w[..., c, c] = -1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.init_conv.in_channels:
            raise ValueError(f"IMTFE: expected (B, {self.init_conv.in_channels}, H, W), got {tuple(x.shape)}")
        self.project_bayar_()
        x = symmetric_pad(x, 2)
        # the reference's channel order: free conv, SRM, Bayar
        x = F.relu(torch.cat([self.init_conv(x), self.SRMConv2D(x), self.BayarConv2D(x)], dim=1))
        for layer in self.middle_and_last_block:
            if isinstance(layer, nn.Conv2d):
                out = layer(symmetric_pad(x, 1))
                if self.residual and layer.in_channels == layer.out_channels:
                    out = out + x
                x = out
            else:
                x = layer(x)
        return F.normalize(x, p=2, dim=1)


#: where a whole-model file keeps the extractor (MantraNetv4.pt, MantraNet checkpoints)
_IMTFE_PREFIXES = ("", "IMTFE.")


def select_imtfe_state(state: Mapping[str, torch.Tensor], imtfe: IMTFE, path: str,
                       option: str) -> dict[str, torch.Tensor]:
    """The IMTFE tensors of the state dict ``state`` read from ``path``, checked against ``imtfe``.

    Accepted layouts: ``IMTFEv4.pt`` (bare IMTFE keys ``init_conv.weight``, ...) and
    ``MantraNetv4.pt`` (``IMTFE.*`` beside ``AnomalyDetector.*``); other keys are ignored. A
    missing IMTFE tensor, or one of another shape, is an error naming the file, the key and the
    option.
    """
    own = imtfe.state_dict()
    found: dict[str, torch.Tensor] = {}
    for prefix in _IMTFE_PREFIXES:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] in own}
        if len(picked) > len(found):
            found = picked
    missing = [k for k in own if k not in found]
    if missing:
        raise ValueError(
            f"{option} {path}: not a ManTra-Net feature-extractor file: {len(missing)} IMTFE tensor(s) missing "
            f"(e.g. {', '.join(missing[:3])}); expected IMTFEv4.pt or MantraNetv4.pt from "
            "RonyAbecidan/ManTraNet-pytorch (keys init_conv.weight, BayarConv2D.weight, ... with or without "
            "an 'IMTFE.' prefix)"
        )
    wrong = [f"{k} {list(v.shape)} vs {list(own[k].shape)}" for k, v in found.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"{option} {path}: IMTFE tensors with another shape: {', '.join(wrong[:3])}")
    return found


def load_imtfe_weights(imtfe: IMTFE, path: str, option: str,
                       state: Mapping[str, torch.Tensor] | None = None) -> None:
    """Load the feature extractor from the local file ``path`` (or from ``state``, already read
    from it; see :func:`select_imtfe_state`) and log it. Nothing is downloaded."""
    from ...modules.pretrained import read_state_dict

    picked = select_imtfe_state(read_state_dict(path) if state is None else state, imtfe, path, option)
    imtfe.load_state_dict(picked, strict=True)
    logger.info("ManTra-Net feature extractor: loaded %d tensors from %s", len(picked), path)
