"""MVSS-Net: multi-view multi-scale supervised image manipulation detection.

Two ResNet-50 streams share one head:

* the RGB stream (DeepLab-style ResNet-50: the last stage is dilated, output stride 16) feeds an
  edge-supervised branch: at each of the 4 stages a Sobel layer gates the feature map with
  ``sigmoid(|grad|)`` and an edge residual block (ERB) reduces it to one channel; the four maps are
  added coarse-to-fine at 1/4 resolution and give the edge logits;
* the noise stream (a second ResNet-50) reads a Bayar-constrained 5x5 high-pass convolution of the
  grey image;
* the last feature maps of both streams (2048 + 2048 channels) enter a dual-attention head
  (position attention and channel attention, summed) that gives the mask logits at 1/16.

The image-level score is the global max of the pixel probabilities. State-dict names follow
IMDL-BenCo (``model.*``, ``erb_db_*``, ``erb_trans_*``, ``sobel_x*``, ``noise_extractor.model.*``,
``constrain_conv.kernel``, ``head.*``), so its checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ...modules.resnet_blocks import Bottleneck
from ...registry import MODELS

logger = logging.getLogger(__name__)

__all__ = ["MVSSNet", "BayarConv2d", "dice_loss"]


# ------------------------------------------------------------------ ResNet-50 (dilated last stage)
def _bottleneck(inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                dilation: int = 1) -> nn.Module:
    """torchvision-style ResNet bottleneck (BatchNorm momentum 0.1), optionally dilated."""
    return Bottleneck(inplanes, planes, stride, downsample, dilation=dilation, bn_momentum=0.1)


class DilatedResNet50(nn.Module):
    """torchvision-compatible ResNet-50 (same key names, ``fc`` kept so ImageNet files load
    strictly) whose ``layer4`` has stride 1 and dilations 1, 2, 4 (output stride 16)."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=1, dilations=(1, 2, 4))
        # unused by MVSS-Net; kept because IMDL-BenCo checkpoints and ImageNet files contain it
        self.fc = nn.Linear(2048, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1,
                    dilations: tuple[int, ...] = ()) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        rates = list(dilations) or [1] * blocks
        layers = [_bottleneck(self.inplanes, planes, stride, downsample, rates[0])]
        self.inplanes = planes * 4
        layers += [_bottleneck(self.inplanes, planes, dilation=rates[i]) for i in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of ``layer1..4``: strides 4, 8, 16, 16; channels 256, 512, 1024, 2048."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


class _ResNetStream(nn.Module):
    """Holds the ResNet under ``.model`` (IMDL-BenCo's ``noise_extractor.model.*`` key names)."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.model = DilatedResNet50(in_chans)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.features(x)


# ------------------------------------------------------------------ edge branch
def _sobel_pair(in_chans: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Fixed (frozen) Sobel x / y convolutions summing over ``in_chans`` channels, each + BatchNorm."""
    gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    pair = []
    for kernel in (gx, gx.t()):
        conv = nn.Conv2d(in_chans, 1, 3, padding=1, bias=False)
        conv.weight = nn.Parameter(kernel.expand(1, in_chans, 3, 3).clone(), requires_grad=False)
        pair.append(nn.Sequential(conv, nn.BatchNorm2d(1)))
    return pair[0], pair[1]


def _sobel_gate(conv_x: nn.Module, conv_y: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``sigmoid(sqrt(gx^2 + gy^2)) * x``. Nothing is added inside the square root (as in the
    reference); an argument of exactly 0 is raised to 1e-30 so that the gradient stays finite."""
    g = torch.sqrt((conv_x(x).pow(2) + conv_y(x).pow(2)).clamp_min(1e-30))
    return torch.sigmoid(g) * x


class ERB(nn.Module):
    """Edge residual block: 1x1 conv, then ``x + conv3(relu(bn(conv2(x))))``, optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        x = self.conv1(x)
        out = x + self.conv3(self.relu(self.bn(self.conv2(x))))
        return self.relu(out) if relu else out


# ------------------------------------------------------------------ noise view
class BayarConv2d(nn.Module):
    """Bayar & Stamm's constrained convolution, stored as IMDL-BenCo/MVSS-Net do.

    ``kernel`` ``(in, out, k*k-1)`` holds the off-centre weights; the applied kernel has them
    normalised to sum 1 and a fixed centre of -1 (a prediction-error high-pass filter). As in
    IMDL-BenCo 0.1.45, the normalisation rewrites ``kernel`` in place before every convolution and
    the convolution then uses it as an ordinary parameter: the gradient reaches ``kernel`` directly,
    not through the normalisation (same forward and gradients as the reference).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 3, kernel_size: int = 5, padding: int = 2) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        self.kernel = nn.Parameter(torch.rand(in_channels, out_channels, kernel_size ** 2 - 1))

    @torch.no_grad()
    def project_(self) -> None:
        """Normalise the off-centre weights of every kernel to sum 1, in place."""
        self.kernel.div_(self.kernel.sum(dim=-1, keepdim=True))

    def constrained_kernel(self) -> torch.Tensor:
        """The applied ``(out, in, k, k)`` kernel: ``kernel`` with the centre -1 inserted."""
        ctr = self.kernel_size ** 2 // 2
        k = self.kernel
        minus1 = -torch.ones_like(k[..., :1])
        full = torch.cat([k[..., :ctr], minus1, k[..., ctr:]], dim=-1)
        return full.reshape(self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"BayarConv2d: expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        self.project_()
        return F.conv2d(x, self.constrained_kernel().to(x.dtype), padding=self.padding)


def _to_gray(x: torch.Tensor) -> torch.Tensor:
    """Grey image as MVSS-Net computes it: channel 0 weighted 0.114 and channel 2 weighted 0.2989
    (the authors' code reads the tensor as BGR). Kept so published weights see the input they
    were trained on."""
    return (0.2989 * x[:, 2] + 0.5870 * x[:, 1] + 0.1140 * x[:, 0]).unsqueeze(1)


# ------------------------------------------------------------------ dual attention head
class _PositionAttention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_b = nn.Conv2d(channels, channels // 8, 1)
        self.conv_c = nn.Conv2d(channels, channels // 8, 1)
        self.conv_d = nn.Conv2d(channels, channels, 1)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.conv_b(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        k = self.conv_c(x).flatten(2)  # (B, C/8, N)
        v = self.conv_d(x).flatten(2)  # (B, C, N)
        # the energies are sums over many channels: compute them in float32 (fp16 would overflow)
        with torch.autocast(device_type=x.device.type, enabled=False):
            attn = torch.softmax(torch.bmm(q.float(), k.float()), dim=-1)
            out = torch.bmm(v.float(), attn.transpose(1, 2)).view(b, c, h, w)
        return self.alpha * out.to(x.dtype) + x


class _ChannelAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            a = x.float().flatten(2)  # (B, C, N)
            energy = torch.bmm(a, a.transpose(1, 2))
            energy = energy.max(dim=-1, keepdim=True).values - energy
            out = torch.bmm(torch.softmax(energy, dim=-1), a).view(b, c, h, w)
        return self.beta * out.to(x.dtype) + x


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class DAHead(nn.Module):
    """Dual attention head (DANet): position and channel attention branches, summed, 1x1 conv."""

    def __init__(self, in_channels: int, nclass: int, aux: bool = False) -> None:
        super().__init__()
        inter = in_channels // 4
        self.aux = aux
        self.conv_p1 = _conv_bn_relu(in_channels, inter)
        self.conv_c1 = _conv_bn_relu(in_channels, inter)
        self.pam = _PositionAttention(inter)
        self.cam = _ChannelAttention()
        self.conv_p2 = _conv_bn_relu(inter, inter)
        self.conv_c2 = _conv_bn_relu(inter, inter)
        self.out = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(inter, nclass, 1))
        if aux:
            self.conv_p3 = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(inter, nclass, 1))
            self.conv_c3 = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(inter, nclass, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feat_p = self.conv_p2(self.pam(self.conv_p1(x)))
        feat_c = self.conv_c2(self.cam(self.conv_c1(x)))
        outs = [self.out(feat_p + feat_c)]
        if self.aux:
            outs += [self.conv_p3(feat_p), self.conv_c3(feat_c)]
        return outs


# ------------------------------------------------------------------ loss
def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 - (2*sum(g*p) + s) / (sum(g^2) + sum(p^2) + s)`` over the whole batch (float32)."""
    p, g = prob.float().flatten(), target.float().flatten()
    return 1.0 - (2.0 * (p * g).sum() + smooth) / ((g * g).sum() + (p * p).sum() + smooth)


def _edge_from_mask(mask: torch.Tensor, width: int = 7) -> torch.Tensor:
    """Boundary band of a binary mask when the batch has no ``edge_mask``: the dataset's rule
    (:func:`IMDLBenCo.transforms.geometry.edge_mask`, a ``width`` cross kernel) on the mask as given."""
    from ...transforms.geometry import edge_mask_tensor

    return edge_mask_tensor(mask, width)


# ------------------------------------------------------------------ the model
@MODELS.register_module()
class MVSSNet(nn.Module):
    """MVSS-Net (ICCV 2021 / TPAMI 2022).

    Args:
        nclass: channels of the mask/edge logits; must be 1 (binary manipulation mask).
        aux: also build the two auxiliary 1x1 classifiers of the attention branches (only for
            checkpoints that contain ``head.conv_p3`` / ``head.conv_c3``; they are not in the loss).
        sobel: gate the edge branch with Sobel magnitudes (the paper's ESB); off = plain ERBs.
        if_label: add the image-level BCE term (weights 0.16 seg / 0.04 label / 0.8 edge);
            off = 0.2 seg + 0.8 edge.
        constrain: build the noise stream (Bayar conv + second ResNet-50); off = RGB only.
        n_input: input channels of the RGB stream's first convolution.
        pretrained_base: start both ResNet-50 streams from ImageNet weights read from
            ``resnet50_weights`` (nothing is downloaded).
        resnet50_weights: local torchvision ResNet-50 file (``resnet50-19c8e357.pth`` or
            ``resnet50-0676ba61.pth``); used only with ``pretrained_base``.
        label_loss_on_logits: the image-level BCE on the maximal mask *logit* (a correct
            BCE-with-logits). Off (default, IMDL-BenCo 0.1.45): BCE-with-logits applied to the
            maximal mask *probability*, which squashes it through a second sigmoid (the loss
            never goes below ~0.31 for a manipulated image and trains the label term weakly);
            keep it off to reproduce published MVSS-Net numbers.
    """

    def __init__(self, nclass: int = 1, aux: bool = False, sobel: bool = True, if_label: bool = True,
                 constrain: bool = True, n_input: int = 3, pretrained_base: bool = True,
                 resnet50_weights: str | None = None, label_loss_on_logits: bool = False) -> None:
        super().__init__()
        self.label_loss_on_logits = bool(label_loss_on_logits)
        if nclass != 1:
            raise ValueError(f"MVSSNet: nclass must be 1 (one-channel manipulation mask), got {nclass}")
        self.aux, self.sobel, self.if_label, self.constrain = aux, sobel, if_label, constrain
        # attribute names and creation order give IMDL-BenCo's state-dict names and order
        self.model = DilatedResNet50(n_input)
        chans = (256, 512, 1024, 2048)
        for i, c in enumerate(chans, start=1):
            setattr(self, f"erb_db_{i}", ERB(c, nclass))
        for i in range(1, 4):
            setattr(self, f"erb_trans_{i}", ERB(nclass, nclass))
        if sobel:
            for i, c in enumerate(chans, start=1):
                sx, sy = _sobel_pair(c)
                setattr(self, f"sobel_x{i}", sx)
                setattr(self, f"sobel_y{i}", sy)
        if constrain:
            self.noise_extractor = _ResNetStream(3)
            self.constrain_conv = BayarConv2d(1, 3, 5, padding=2)
        self.head = DAHead(4096 if constrain else 2048, nclass, aux)
        self._load_base(pretrained_base, resnet50_weights)

    def _load_base(self, pretrained_base: bool, path: str | None) -> None:
        from ...modules.pretrained import load_pretrained, read_state_dict, warn_random_init

        if not pretrained_base:
            return
        if not path:
            warn_random_init("MVSSNet", "pretrained_base=True but --resnet50_weights is empty")
            return
        sd = read_state_dict(path)
        load_pretrained(self.model, sd)
        if self.constrain:
            load_pretrained(self.noise_extractor.model, sd)

    # .................................................................. forward
    def _edge_logits(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        maps = []
        for i, f in enumerate(feats, start=1):
            if self.sobel:
                f = _sobel_gate(getattr(self, f"sobel_x{i}"), getattr(self, f"sobel_y{i}"), f)
            maps.append(getattr(self, f"erb_db_{i}")(f))
        res = maps[0]
        for i, m in enumerate(maps[1:], start=1):
            # the authors upsample by fixed factors 2/4; resizing to the 1/4 map also handles
            # sizes that are not multiples of 16
            up = F.interpolate(m, size=size, mode="bilinear", align_corners=True)
            res = getattr(self, f"erb_trans_{i}")(res + up, relu=i < 3)
        return res

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                edge_mask: torch.Tensor | None = None, label: torch.Tensor | None = None,
                *args, **kwargs) -> dict[str, object]:
        if image.ndim != 4:
            raise ValueError(f"MVSSNet: expected image (B, C, H, W), got {tuple(image.shape)}")
        size = image.shape[-2:]
        feats = self.model.features(image)
        edge_logits = F.interpolate(self._edge_logits(feats), size=size, mode="bilinear", align_corners=True)
        top = feats[-1]
        if self.constrain:
            noise = self.noise_extractor(self.constrain_conv(_to_gray(image)))[-1]
            top = torch.cat([top, noise], dim=1)
        mask_logits = F.interpolate(self.head(top)[0], size=size, mode="bilinear", align_corners=True)

        pred_mask = torch.sigmoid(mask_logits)
        edge_prob = torch.sigmoid(edge_logits)
        # image score = global max of the pixel probabilities (sigmoid is monotonic: the max logit
        # gives the same score)
        max_logit = mask_logits.flatten(1).max(dim=1).values.float()
        pred_label = torch.sigmoid(max_logit)

        out: dict[str, object] = {"pred_mask": pred_mask, "pred_label": pred_label}
        visual_image = {"pred_mask": pred_mask, "pred_edge": edge_prob}
        if mask is None:
            zero = mask_logits.new_zeros(()).float()
            out.update(backward_loss=zero, visual_loss={"combined_loss": zero}, visual_image=visual_image)
            return out
        mask = mask.float()
        if edge_mask is None:
            edge_mask = _edge_from_mask(mask)
        if label is None:
            label = (mask.flatten(1).amax(dim=1) > 0)
        seg = dice_loss(pred_mask, mask)
        edge = dice_loss(edge_prob, edge_mask)
        # reference: BCE-with-logits of the max *probability*; corrected: of the max logit
        lab = F.binary_cross_entropy_with_logits(max_logit if self.label_loss_on_logits else pred_label,
                                                 label.float().view(-1))
        if self.if_label:
            combined = 0.16 * seg + 0.04 * lab + 0.8 * edge
        else:
            combined = 0.2 * seg + 0.8 * edge
        visual_image["edge_mask"] = edge_mask
        out.update(
            backward_loss=combined,
            visual_loss={"predict_loss": seg.detach(), "edge_loss": edge.detach(),
                         "label_loss": lab.detach(), "combined_loss": combined.detach()},
            visual_image=visual_image,
        )
        return out
