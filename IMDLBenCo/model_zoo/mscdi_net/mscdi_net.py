"""MSCDI-Net: multi-scale cross-domain interaction network for image manipulation localization.

Pipeline (default options, input ``(B, 3, H, W)`` with H, W multiples of 256):

1. **GLCA-SegFormer** encoder (:mod:`.glca_mit`, MiT-B4 by default) gives four maps
   ``f1..f4`` at strides 4, 8, 16, 32 with 64, 128, 320, 512 channels.
2. The shallow maps are brought to the deep ones' grids without losing pixels
   (:class:`~.blocks.ChannelShuffleDownsample`, scale 4): ``f1 -> (320, H/16)``, ``f2 -> (512, H/32)``.
3. **Cross-level fusion** (``fusion_mode``): ``f4`` with ``f2`` and ``f3`` with ``f1`` by
   concatenation + 1x1 conv (0), squeeze-and-excitation (1) or two-way cross attention with a
   softmax gate (2, :class:`~.blocks.ChannelAttentionFusion`).
4. **Decoder**: five stages of 1x1 conv + learned point-sampling x2 upsampling
   (:class:`~.blocks.DySampleUpsample`): 512 -> 320 (H/16), concat with the fused ``f3``/``f1``,
   640 -> 128 (H/8), [optional noise fusion], 128 -> 64, 64 -> 16, 16 -> 4 (H); a 1x1 conv gives
   the logits at the input size.
5. Loss: ``BCE(logits, mask) + edge_loss_weight * BCE(logits, mask, weight=edge_mask)`` (both
   means over all pixels), from the logits.

State-dict names follow IMDL-BenCo 0.1.45 (``segformer.segformer.*``, ``downf1/2``,
``interfuse1/2`` | ``SE_fusion42/31`` | ``fusion_conv42/31``, ``upsamplingers.{0..4}.{0,1}``,
``final_conv``; ``NoiseExtractor.*`` with a noise model), so its checkpoints load with
``strict=True``.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import MODELS
from .blocks import (
    BayarNoiseExtractor,
    ChannelAttentionFusion,
    ChannelShuffleDownsample,
    DySampleUpsample,
    SEFusion,
    SRMNoiseExtractor,
)
from .glca_mit import WINDOW_SIZE, GLCAMixTransformer, glca_mit

logger = logging.getLogger(__name__)

__all__ = ["MSCDI_Net", "GLCASegFormerExtractor", "mscdi_loss", "BACKBONES"]

#: ``backbone`` option -> SegFormer size
BACKBONES = {"mit_bit2": "mit_b2", "mit_bit3": "mit_b3", "mit_bit4": "mit_b4", "mit_bit5": "mit_b5"}

#: fusion_mode -> attribute names of the (f4, f2), (f3, f1) and (decoder, noise) fusions
_FUSION_NAMES = {
    0: ("fusion_conv42", "fusion_conv31", "fusion_conv_noise"),
    1: ("SE_fusion42", "SE_fusion31", "SE_fusion_noise"),
    2: ("interfuse1", "interfuse2", "interfuse_noise"),
}

#: decoder stages: (input channels, output channels) of the 1x1 conv before each x2 upsampling
_DECODER = [(512, 320), (640, 128), (128, 64), (64, 16), (16, 4)]


class GLCASegFormerExtractor(nn.Module):
    """Holds the encoder as ``segformer`` (IMDL-BenCo's ``SegFormerExtractor_bit*`` layout)."""

    def __init__(self, encoder: GLCAMixTransformer) -> None:
        super().__init__()
        self.segformer = encoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.segformer(x))


def mscdi_loss(logits: torch.Tensor, mask: torch.Tensor, edge_mask: torch.Tensor | None,
               edge_weight: float = 20.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, bce, edge)``: BCE-with-logits over all pixels plus ``edge_weight`` times the same
    BCE weighted by ``edge_mask`` (0 when ``edge_mask`` is None). Computed in float32."""
    logits = logits.float()
    mask = mask.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, mask)
    if edge_mask is None:
        edge = logits.new_zeros(())
    else:
        edge = F.binary_cross_entropy_with_logits(logits, mask, weight=edge_mask.to(logits.dtype)) * edge_weight
    return bce + edge, bce, edge


def _upsampler(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), DySampleUpsample(out_ch, scale=2, groups=4))


@MODELS.register_module()
class MSCDI_Net(nn.Module):
    """MSCDI-Net (IMDL-BenCo 0.1.45 model zoo).

    Args:
        backbone: GLCA-SegFormer size, ``mit_bit2`` / ``mit_bit3`` / ``mit_bit4`` (default) /
            ``mit_bit5`` (SegFormer MiT-B2 ... B5).
        backbone_weights_path: local SegFormer ImageNet file of that size (``mit_b4.pth`` by
            default). IMDL-BenCo requires it; here an empty value starts from random weights with
            one warning. Nothing is downloaded.
        noise_model: ``"None"`` (default), ``"SRM"`` or ``"Bayar"``: a noise branch fused into the
            decoder at 1/8. As in IMDL-BenCo it only runs on 512-pixel-wide input.
        ff_domain: only 0 (features of the encoder's stages 1/2) is supported; IMDL-BenCo's 1
            (wavelet) and 2 (ResNet-101 + wavelet) fail at its first forward pass (their forward
            code is commented out), so they are refused here.
        fusion_mode: 0 concatenation + 1x1 conv, 1 squeeze-and-excitation, 2 (default)
            two-way cross attention with a softmax gate.
        glca: number of blocks at the start of encoder stages 3 and 4 with global-local cross
            attention (default 12; 0 = plain SegFormer attention). With ``glca > 0`` image sides
            must be multiples of 256, otherwise of 32.
        edge_loss_weight: weight of the edge-band BCE term (IMDL-BenCo: 20).
        fix_glca_local_layout: give the GLCA fusion the local-attention map in its spatial layout.
            Off (default) = IMDL-BenCo's arithmetic, which scrambles pixels and channels of that map
            with a reshape; published checkpoints expect the default.
    """

    def __init__(
        self,
        backbone: Literal["mit_bit2", "mit_bit3", "mit_bit4", "mit_bit5"] = "mit_bit4",
        backbone_weights_path: str | None = None,
        noise_model: Literal["None", "SRM", "Bayar"] = "None",
        ff_domain: int = 0,
        fusion_mode: Literal[0, 1, 2] = 2,
        glca: int = 12,
        edge_loss_weight: float = 20.0,
        fix_glca_local_layout: bool = False,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"MSCDI_Net: --backbone {backbone!r} is not one of {sorted(BACKBONES)}")
        noise_model = "None" if noise_model is None else noise_model
        if noise_model not in ("None", "SRM", "Bayar"):
            raise ValueError(f"MSCDI_Net: --noise_model {noise_model!r} is not one of 'None', 'SRM', 'Bayar'")
        if ff_domain != 0:
            raise ValueError(
                f"MSCDI_Net: --ff_domain {ff_domain} is not supported. IMDL-BenCo 0.1.45 builds it but its "
                "forward code for the wavelet/ResNet features is commented out, so that model fails at the "
                "first forward pass; use --ff_domain 0 (the default and the published setting)"
            )
        if fusion_mode not in _FUSION_NAMES:
            raise ValueError(
                f"MSCDI_Net: --fusion_mode must be 0 (concat), 1 (SE) or 2 (cross attention), got {fusion_mode!r}")
        if glca < 0:
            raise ValueError(f"MSCDI_Net: --glca must be >= 0 (number of GLCA blocks), got {glca}")
        self.backbone = backbone
        self.fusion_mode = int(fusion_mode)
        self.glca = int(glca)
        self.edge_loss_weight = float(edge_loss_weight)
        self._warned_no_edge = False

        self.segformer = GLCASegFormerExtractor(
            glca_mit(BACKBONES[backbone], glca=glca, spatial_local_layout=fix_glca_local_layout))
        self.noise_model = noise_model
        self.NoiseExtractor: nn.Module | None = None
        if noise_model == "SRM":
            self.NoiseExtractor = SRMNoiseExtractor()
        elif noise_model == "Bayar":
            self.NoiseExtractor = BayarNoiseExtractor()
        self.downf1 = ChannelShuffleDownsample(64, 320, scale=4)
        self.downf2 = ChannelShuffleDownsample(128, 512, scale=4)
        names = _FUSION_NAMES[self.fusion_mode]
        for name, ch in zip(names, (512, 320, 128)):
            if name.endswith("noise") and self.NoiseExtractor is None:
                continue
            if self.fusion_mode == 0:
                module: nn.Module = nn.Conv2d(2 * ch, ch, 1)
            elif self.fusion_mode == 1:
                module = SEFusion(ch)
            else:
                module = ChannelAttentionFusion(ch)
            setattr(self, name, module)
        self.upsamplingers = nn.ModuleList(_upsampler(i, o) for i, o in _DECODER)
        self.final_conv = nn.Conv2d(4, 1, 1)
        self._load_backbone(backbone_weights_path)

    def _load_backbone(self, path: str | None) -> None:
        from ...modules.pretrained import load_pretrained, warn_random_init

        if path:
            load_pretrained(self.segformer.segformer, path)
        else:
            warn_random_init("MSCDI_Net", f"--backbone_weights_path is empty; IMDL-BenCo starts from SegFormer "
                                          f"{BACKBONES[self.backbone]}.pth")

    # ------------------------------------------------------------------ forward
    def _check_image(self, image: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"MSCDI_Net: expected image (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        unit = 32 * WINDOW_SIZE if self.glca > 0 else 32
        if h % unit or w % unit:
            why = "GLCA windows need 8x8-divisible stage-4 maps" if self.glca > 0 else "the encoder has stride 32"
            raise ValueError(
                f"MSCDI_Net: image size {h}x{w} must be a multiple of {unit} ({why}); use --if_resizing "
                f"--image_size 512" + (" or --glca 0" if self.glca > 0 else "")
            )
        if self.NoiseExtractor is not None and w // 8 != self.NoiseExtractor.columns:
            raise ValueError(
                f"MSCDI_Net: --noise_model {self.noise_model} needs 512-pixel-wide input (its LayerNorm(64) "
                f"normalises the 64 columns of the 1/8 map, as in IMDL-BenCo); got width {w}. Use "
                f"--image_size 512 or --noise_model None"
            )

    def _fuse(self, index: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        module = getattr(self, _FUSION_NAMES[self.fusion_mode][index])
        if self.fusion_mode == 0:
            return module(torch.cat([a, b], dim=1))
        return module(a, b)

    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Manipulation logits ``(B, 1, H, W)`` at the input size."""
        self._check_image(image)
        f1, f2, f3, f4 = self.segformer(image)
        noise = self.NoiseExtractor(image) if self.NoiseExtractor is not None else None
        f42 = self._fuse(0, f4, self.downf2(f2))
        f31 = self._fuse(1, f3, self.downf1(f1))
        x = self.upsamplingers[0](f42)
        x = self.upsamplingers[1](torch.cat([x, f31], dim=1))
        if noise is not None:
            # IMDL-BenCo's concat mode passes this through fusion_conv42 and fails; we use
            # fusion_conv_noise, the layer it builds for this step
            x = self._fuse(2, x, noise)
        for up in self.upsamplingers[2:]:
            x = up(x)
        return self.final_conv(x)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                edge_mask: torch.Tensor | None = None, label: torch.Tensor | None = None,
                *args, **kwargs) -> dict[str, object]:
        logits = self.predict_logits(image)
        pred_mask = torch.sigmoid(logits)
        out: dict[str, object] = {"pred_mask": pred_mask, "pred_label": None,
                                  "visual_image": {"pred_mask": pred_mask}}
        if mask is None:
            zero = logits.new_zeros((), dtype=torch.float32)
            out.update(backward_loss=zero, visual_loss={"predict_loss": zero})
            return out
        if edge_mask is None and self.training and not self._warned_no_edge:
            logger.warning("MSCDI_Net: no edge_mask in the batch (set --edge_mask_width 7, as IMDL-BenCo's run "
                           "script does); training with the plain BCE term only")
            self._warned_no_edge = True
        total, bce, edge = mscdi_loss(logits, mask, edge_mask, self.edge_loss_weight)
        # IMDL-BenCo also returns the input mask under "mask"; kept for ported user code (the
        # engine reads predictions only from pred_mask / pred_label)
        out["mask"] = mask
        out["backward_loss"] = total
        out["visual_loss"] = {"predict_loss": total.detach(), "bce_loss": bce.detach(), "edge_loss": edge.detach()}
        if edge_mask is not None:
            out["visual_image"]["edge_mask"] = edge_mask
        return out
