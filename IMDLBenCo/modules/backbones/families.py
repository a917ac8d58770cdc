"""The backbone families: ResNet, ViT (8 blocks), ViT-16 (12 blocks), Swin, SegFormer, U-Net, ConvNeXt.

Parameter names and shapes follow IMDL-BenCo's backbones (``modules/backbones``) so their
checkpoints load with ``strict=True``; the ConvNeXt family is ours (no IMDL-BenCo counterpart).
Encoders come from timm (``pretrained=False``; weights only from ``pretrained_path``), SegFormer
from :mod:`IMDLBenCo.modules.mit`, U-Net is written here.
"""

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..mit import MIT_CONFIGS, MixVisionTransformer
from .base import BackboneModel, deconv_stack, widen_conv

__all__ = ["ResNetBackbone", "ViTBackbone", "ViT16Backbone", "SwinBackbone", "SegFormerBackbone",
           "UNetBackbone", "ConvNeXtBackbone"]


def _timm():
    import timm  # heavy; imported when a backbone is built

    return timm


class ResNetBackbone(BackboneModel):
    """timm ResNet cut after layer3 (stride 16) + 4 transposed convs (k4, no activation) to full size.

    Options: ``encoder_name`` (any timm ResNet, default ``resnet152``), ``if_predict_label``,
    ``pretrained_path`` (timm/torchvision ResNet keys ``conv1``, ``bn1``, ``layer1-3`` are mapped).
    Any input size; multiples of 16 avoid a final resize.
    """

    family = "resnet"
    _CHILD_INDEX = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6}

    def __init__(self, extractor: str | None = None, encoder_name: str = "resnet152",
                 if_predict_label: bool = False, pretrained_path: str | None = None) -> None:
        super().__init__(extractor, if_predict_label)
        net = _timm().create_model(encoder_name, pretrained=False)
        children = list(net.children())[:7]  # conv1, bn1, act1, maxpool, layer1, layer2, layer3
        if self.extractor:
            children[0] = widen_conv(children[0], self.in_channels)
        self.backbone = nn.Sequential(*children)
        feat = net.feature_info[-2]["num_chs"]
        # IMDL-BenCo's decoder has no activations between its transposed convs; kept so that its
        # checkpoints behave the same
        self.deconv_model = deconv_stack([feat, 256, 128, 64, 1], kernel_size=4, relu=False)
        self._finish(feat, pretrained_path)

    def pretrained_key(self, key: str) -> str | None:
        head, _, rest = key.partition(".")
        if head in self._CHILD_INDEX:
            return f"backbone.{self._CHILD_INDEX[head]}.{rest}"
        return None

    def logits(self, x):
        feat = self.backbone(x)
        return self.deconv_model(feat), feat


def _vit_tokens(proj: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    y = proj(x)
    return y.flatten(2).transpose(1, 2), (y.shape[-2], y.shape[-1])


class ViTBackbone(BackboneModel):
    """timm ViT-B/16 (first ``depth`` blocks) on a 16x-downsampled token grid + 4 transposed convs.

    With an extractor, its output gets its own patch embedding (``feature_patch_embed``); both
    token sets share the transformer (position embedding of 2N+1 tokens) and are summed before
    decoding. ``image_size`` sets the stored position-embedding grid (IMDL-BenCo: 512 -> 32x32);
    other input sizes (multiples of 16) work by interpolating it. ``head`` (ImageNet classifier)
    is kept frozen only so timm / IMDL-BenCo weights load strictly.
    """

    family = "vit"
    default_depth = 8

    def __init__(self, extractor: str | None = None, encoder_name: str = "vit_base_patch16_224",
                 image_size: int = 512, depth: int | None = None, if_predict_label: bool = False,
                 pretrained_path: str | None = None) -> None:
        super().__init__(extractor, if_predict_label)
        depth = self.default_depth if depth is None else depth
        net = _timm().create_model(encoder_name, pretrained=False, img_size=image_size, depth=depth)
        patch = net.patch_embed.patch_size
        self.patch_size = patch[0]
        self.grid = net.patch_embed.grid_size
        dim = net.embed_dim
        self.two_streams = bool(self.extractor) and self.family == "vit"
        self.cls_token = net.cls_token
        if self.two_streams:
            n = self.grid[0] * self.grid[1]
            pos = torch.zeros(1, 1 + 2 * n, dim)
            nn.init.trunc_normal_(pos, std=0.02)
            self.pos_embed = nn.Parameter(pos)
            self.feature_patch_embed = nn.Conv2d(self.extra_channels, dim, patch, patch, bias=False)
        else:
            self.pos_embed = net.pos_embed
        self.patch_embed = net.patch_embed
        if self.extractor and not self.two_streams:
            self.patch_embed.proj = widen_conv(self.patch_embed.proj, self.in_channels, bias=False)
        self.blocks = net.blocks
        self.norm = net.norm
        self.head = net.head
        self.head.requires_grad_(False)
        self.deconv_model = deconv_stack([dim, 256, 128, 64, 1], kernel_size=3, relu=True)
        self._finish(dim, pretrained_path)

    def _pos(self, pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings (without the class token) resized to ``grid``."""
        if tuple(grid) == tuple(self.grid):
            return pos
        from timm.layers import resample_abs_pos_embed

        return resample_abs_pos_embed(pos, list(grid), list(self.grid), num_prefix_tokens=0)

    def adapt_pretrained(self, sd):
        pos = sd.get("pos_embed")
        if isinstance(pos, torch.Tensor) and pos.shape != self.pos_embed.shape:
            # a timm / MAE checkpoint trained at 224: resample its grid to ours (and duplicate it
            # for the two token streams), as timm does when it changes img_size
            from timm.layers import resample_abs_pos_embed

            n_old = int(round((pos.shape[1] - 1) ** 0.5))
            grid = resample_abs_pos_embed(pos[:, 1:], list(self.grid), [n_old, n_old], num_prefix_tokens=0)
            sd["pos_embed"] = torch.cat([pos[:, :1], grid] + ([grid] if self.two_streams else []), dim=1)
        return sd

    def logits(self, x):
        b = x.shape[0]
        if self.two_streams:
            rgb, grid = _vit_tokens(self.patch_embed.proj, x[:, :3])
            feat, _ = _vit_tokens(self.feature_patch_embed, x[:, 3:])
            n_built = self.grid[0] * self.grid[1]
            pos = torch.cat([self._pos(self.pos_embed[:, 1:1 + n_built], grid),
                             self._pos(self.pos_embed[:, 1 + n_built:], grid)], dim=1)
            tokens = torch.cat([rgb, feat], dim=1)
        else:
            tokens, grid = _vit_tokens(self.patch_embed.proj, x)
            pos = self._pos(self.pos_embed[:, 1:], grid)
        tokens = tokens + pos
        cls = self.cls_token.expand(b, -1, -1) + self.pos_embed[:, :1]
        tokens = self.norm(self.blocks(torch.cat([cls, tokens], dim=1)))[:, 1:]
        n = grid[0] * grid[1]
        if self.two_streams:
            tokens = tokens[:, :n] + tokens[:, n:]
        fmap = tokens.transpose(1, 2).reshape(b, -1, grid[0], grid[1])
        return self.deconv_model(fmap), fmap


class ViT16Backbone(ViTBackbone):
    """timm ViT-B/16 with all 12 blocks + 4 transposed convs; an extractor widens the patch embedding.

    Same options as ``vit``; ``image_size`` sets the stored position grid (default 512).
    """

    family = "vit16"
    default_depth = 12


class SwinBackbone(BackboneModel):
    """timm Swin-B (window 7, embed 128, depths 2-2-18-2) stride-32 features + 5 transposed convs.

    ``image_size`` is the size the model is built for (IMDL-BenCo: 512); other sizes work (timm's
    dynamic padding). An extractor widens ``patch_embed.proj`` (without bias).
    """

    family = "swin"

    def __init__(self, extractor: str | None = None, encoder_name: str = "swin_base_patch4_window7_224",
                 image_size: int = 512, if_predict_label: bool = False,
                 pretrained_path: str | None = None) -> None:
        super().__init__(extractor, if_predict_label)
        net = _timm().create_model(encoder_name, pretrained=False, img_size=image_size,
                                   strict_img_size=False, dynamic_img_size=True)
        for name, child in net.named_children():
            setattr(self, name, child)
        if self.extractor:
            self.patch_embed.proj = widen_conv(self.patch_embed.proj, self.in_channels, bias=False)
        self.head.requires_grad_(False)  # ImageNet classifier: kept for key compatibility only
        dim = net.num_features
        self.deconv_model = deconv_stack([dim, 256, 128, 64, 32, 1], kernel_size=3, relu=True)
        self._finish(dim, pretrained_path)

    def logits(self, x):
        y = self.norm(self.layers(self.patch_embed(x)))  # NHWC
        fmap = y.permute(0, 3, 1, 2)
        return self.deconv_model(fmap), fmap


class SegFormerBackbone(BackboneModel):
    """SegFormer MiT encoder (default MiT-B2) stride-32 features + 5 transposed convs.

    ``pretrained_path`` takes an official ``mit_b*.pth`` (``pretrain_pth_path`` is IMDL-BenCo's name
    of the same option, accepted as an alias). An extractor widens ``patch_embed1.proj``.
    """

    family = "segformer"

    def __init__(self, extractor: str | None = None, encoder_name: str = "mit_b2",
                 if_predict_label: bool = False, pretrained_path: str | None = None,
                 pretrain_pth_path: str | None = None) -> None:
        super().__init__(extractor, if_predict_label)
        if encoder_name not in MIT_CONFIGS:
            raise ValueError(f"segformer: encoder_name must be one of {sorted(MIT_CONFIGS)}, got {encoder_name!r}")
        from .. import mit

        enc = getattr(mit, encoder_name)(in_chans=self.in_channels, stem_bias=not self.extractor)
        for name, child in enc.named_children():
            setattr(self, name, child)
        dim = enc.embed_dims[-1]
        self.deconv_model = deconv_stack([dim, 256, 128, 64, 32, 1], kernel_size=3, relu=True)
        self._finish(dim, pretrained_path or pretrain_pth_path)

    def logits(self, x):
        # the MiT stage loop reads patch_embed{i}/block{i}/norm{i}, which this module holds
        fmap = MixVisionTransformer.forward_features(self, x)[-1]
        return self.deconv_model(fmap), fmap


class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), _DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = _DoubleConv(cin, cout)

    def forward(self, x, skip):
        x = self.up(x)
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dy or dx:  # odd sizes: pad the upsampled map to the skip connection
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class _OutConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.conv(x)


class _UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with transposed-conv upsampling and BatchNorm."""

    def __init__(self, in_channels: int = 3, base: int = 64) -> None:
        super().__init__()
        c = [base * 2 ** i for i in range(5)]
        self.inc = _DoubleConv(in_channels, c[0])
        self.down1, self.down2 = _Down(c[0], c[1]), _Down(c[1], c[2])
        self.down3, self.down4 = _Down(c[2], c[3]), _Down(c[3], c[4])
        self.up1, self.up2 = _Up(c[4], c[3]), _Up(c[3], c[2])
        self.up3, self.up4 = _Up(c[2], c[1]), _Up(c[1], c[0])
        self.outc = _OutConv(c[0], 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        y = self.up4(self.up3(self.up2(self.up1(x5, x4), x3), x2), x1)
        return self.outc(y), x5


class UNetBackbone(BackboneModel):
    """U-Net (4 down / 4 up, 64-1024 channels, BatchNorm) ending in a 1-channel 1x1 conv.

    Same layout as milesial/Pytorch-UNet (``unet_carvana``), so its weights load via
    ``pretrained_path`` (keys prefixed ``net.``; its 2-class output conv is left random).
    ``base_channels`` scales the width. Any input size (multiples of 16 avoid padding).
    """

    family = "unet"

    def __init__(self, extractor: str | None = None, base_channels: int = 64,
                 if_predict_label: bool = False, pretrained_path: str | None = None) -> None:
        super().__init__(extractor, if_predict_label)
        self.net = _UNet(self.in_channels, base_channels)
        self._finish(base_channels * 16, pretrained_path)

    def pretrained_key(self, key: str) -> str | None:
        return "net." + key

    def logits(self, x):
        return self.net(x)


class ConvNeXtBackbone(BackboneModel):
    """timm ConvNeXt (default ``convnext_tiny``) 4-stage features + a light FPN decoder.

    Decoder: each stage -> 1x1 conv to ``decoder_channels``, upsampled to stride 4 and summed, then
    3x3 conv + BatchNorm + ReLU and a 1x1 conv to one logit map (resized to the input). An
    extractor widens the stem convolution. Weights: a timm ConvNeXt file via ``pretrained_path``
    (keys prefixed ``encoder.``; the classifier is dropped).
    """

    family = "convnext"

    def __init__(self, extractor: str | None = None, encoder_name: str = "convnext_tiny",
                 decoder_channels: int = 64, if_predict_label: bool = False,
                 pretrained_path: str | None = None) -> None:
        super().__init__(extractor, if_predict_label)
        enc = _timm().create_model(encoder_name, pretrained=False, in_chans=self.in_channels)
        enc.prune_intermediate_layers(4, prune_norm=True, prune_head=True)
        self.encoder = enc
        chans: list[int] = [f["num_chs"] for f in enc.feature_info][-4:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, decoder_channels, 1) for c in chans)
        self.fuse = nn.Sequential(
            nn.Conv2d(decoder_channels, decoder_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_channels), nn.ReLU(inplace=True),
            nn.Conv2d(decoder_channels, 1, 1),
        )
        self._finish(chans[-1], pretrained_path)

    def pretrained_key(self, key: str) -> str | None:
        if re.match(r"(head|norm_pre)\.", key):
            return None
        return "encoder." + key

    def logits(self, x):
        feats = self.encoder.forward_intermediates(x, indices=4, intermediates_only=True)
        size = feats[0].shape[-2:]
        y = 0
        for lat, f in zip(self.lateral, feats):
            z = lat(f)
            if z.shape[-2:] != size:
                z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
            y = y + z
        return self.fuse(y), feats[-1]
