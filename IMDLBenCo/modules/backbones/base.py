"""Shared machinery of the backbone models: extractor input head, loss, output dict, weights."""

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..extractors import build_extractor
from ..pretrained import LoadReport, load_pretrained, read_state_dict, warn_random_init

logger = logging.getLogger(__name__)

__all__ = ["BackboneModel", "deconv_stack", "widen_conv"]


def deconv_stack(channels: Sequence[int], kernel_size: int = 3, relu: bool = True) -> nn.Sequential:
    """Transposed convolutions, each doubling the resolution: ``channels[0] -> ... -> channels[-1]``.

    ``relu``: a ReLU between consecutive layers (never after the last, which gives logits); the
    ReLUs take Sequential slots, so the convolutions sit at indices 0, 2, 4 ... (IMDL-BenCo layout).
    ``kernel_size`` 4 (padding 1) or 3 (padding 1, output_padding 1) both give exactly 2x.
    """
    layers: list[nn.Module] = []
    n = len(channels) - 1
    for i in range(n):
        if kernel_size == 4:
            layers.append(nn.ConvTranspose2d(channels[i], channels[i + 1], 4, stride=2, padding=1))
        else:
            layers.append(nn.ConvTranspose2d(channels[i], channels[i + 1], 3, stride=2, padding=1,
                                             output_padding=1))
        if relu and i < n - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def widen_conv(conv: nn.Conv2d, in_channels: int, bias: bool | None = None) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs: the original weights on the first input
    channels, Kaiming-initialised weights on the new ones. ``bias=False`` drops the bias."""
    has_bias = conv.bias is not None if bias is None else bias
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=has_bias)
    with torch.no_grad():
        if new.weight.device.type != "meta":
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
            new.weight[:, : conv.in_channels] = conv.weight
            if has_bias and conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


class BackboneModel(nn.Module):
    """Base of every backbone model: optional extractor, mask head, optional label head.

    Subclasses build their encoder/decoder in ``__init__`` (after calling this one, reading
    ``self.in_channels`` = 3 + extractor channels) and implement ``logits(x)`` returning
    ``(mask logits (B,1,h,w), deepest feature map (B,C,h',w') or pooled (B,C))``.
    They call ``self._finish(label_channels, pretrained_path)`` last.

    ``forward(image, mask=None, label=None, ...)`` returns the output dict of ARCHITECTURE.md:
    ``pred_mask`` = sigmoid of the logits resized to the input size, loss = BCE-with-logits on the
    logits (+ BCE on the label logit when ``if_predict_label``).
    """

    #: option name of the pretrained file (shown in the random-init warning)
    pretrained_option = "pretrained_path"

    def __init__(self, extractor: str | None = None, if_predict_label: bool = False) -> None:
        super().__init__()
        self.extractor = extractor
        self.if_predict_label = bool(if_predict_label)
        extra = 0
        if extractor:
            self.input_head, extra = build_extractor(extractor)
        self.in_channels = 3 + extra
        self.extra_channels = extra

    # ------------------------------------------------------------------ construction helpers
    def _finish(self, label_channels: int, pretrained_path: str | None) -> None:
        if self.if_predict_label:
            self.label_head = nn.Linear(label_channels, 1)
        if pretrained_path:
            self.load_pretrained(pretrained_path)
        else:
            warn_random_init(self.registered_name(), self.pretrained_option)

    def registered_name(self) -> str:
        fam = getattr(self, "family", type(self).__name__)
        return f"{self.extractor}_{fam}" if self.extractor else fam

    def pretrained_key(self, key: str) -> str | None:
        """Map a key of an encoder's own checkpoint (timm / official) to this model's key."""
        return key

    def adapt_pretrained(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hook: reshape entries of a foreign checkpoint (e.g. a position embedding) before loading."""
        return sd

    def load_pretrained(self, path: str) -> LoadReport:
        """Load a local weights file: our own checkpoints or the encoder's official/timm keys."""
        own = set(self.state_dict())

        def key_map(k: str) -> str | None:
            return k if k in own else self.pretrained_key(k)

        sd = self.adapt_pretrained(read_state_dict(path))
        report = load_pretrained(self, sd, key_map=key_map)
        report.path = path
        return report

    # ------------------------------------------------------------------ forward
    def prepare_input(self, image: torch.Tensor) -> torch.Tensor:
        """RGB, or RGB concatenated with the extractor's output along channels."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(
                f"{self.registered_name()}: expected image of shape (B, 3, H, W), got {tuple(image.shape)}"
            )
        if not self.extractor:
            return image
        return torch.cat([image, self.input_head(image)], dim=1)

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                label: torch.Tensor | None = None, *args, **kwargs) -> dict[str, object]:
        x = self.prepare_input(image)
        logits, deep = self.logits(x)
        if logits.shape[-2:] != image.shape[-2:]:
            logits = F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
        pred_mask = torch.sigmoid(logits)
        pred_label = None
        label_logit = None
        if self.if_predict_label:
            pooled = deep.flatten(2).mean(-1) if deep.ndim == 4 else deep
            label_logit = self.label_head(pooled).squeeze(1)
            pred_label = torch.sigmoid(label_logit)
        visual_loss: dict[str, torch.Tensor] = {}
        loss = None
        if mask is not None:
            loss = F.binary_cross_entropy_with_logits(logits, mask.to(logits.dtype))
            visual_loss["predict_loss"] = loss
            if label_logit is not None and label is not None:
                label_loss = F.binary_cross_entropy_with_logits(label_logit, label.to(label_logit.dtype).view(-1))
                visual_loss["label_loss"] = label_loss
                loss = loss + label_loss
                visual_loss["combined_loss"] = loss
        return {
            "backward_loss": loss,
            "pred_mask": pred_mask,
            "pred_label": pred_label,
            "visual_loss": visual_loss,
            "visual_image": {"pred_mask": pred_mask},
        }


def register_family(registry, family: str, cls: type, extractors: Sequence[str]) -> list[str]:
    """Register ``family`` and ``<extractor>_<family>`` factories whose signature is ``cls``'s
    (minus ``extractor``), so options are made from it."""
    import inspect
    import typing

    sig = inspect.signature(cls.__init__)
    params = [p for name, p in sig.parameters.items() if name not in ("self", "extractor")]
    hints = typing.get_type_hints(cls.__init__)
    hints.pop("extractor", None)
    names = []
    for ex in [None, *extractors]:
        name = f"{ex}_{family}" if ex else family

        def factory(*, _ex=ex, **kwargs):
            return cls(extractor=_ex, **kwargs)

        factory.__signature__ = inspect.Signature(params, return_annotation=nn.Module)
        factory.__annotations__ = {k: v for k, v in hints.items() if k != "return"}
        factory.__name__ = factory.__qualname__ = name
        factory.__doc__ = (f"{name}: {cls.__doc__.strip().splitlines()[0]}"
                           + (f" Input head: {ex} extractor." if ex else ""))
        registry.register_module(name=name, module=factory)
        names.append(name)
    return names
