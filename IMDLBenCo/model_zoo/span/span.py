"""SPAN: spatial pyramid attention network (Hu, Zhang, Jiang, Chen, Sun, Natarajan; ECCV 2020).

ManTra-Net's feature extractor (``featex``, with identity shortcuts around its equal-width
convolutions, as in IMDL-BenCo) gives 256 features per pixel; a 1x1 convolution
(``outlier_trans``) reduces them to 32; five self-attention blocks (``pixel_attention``) relate
every pixel to its 3x3 neighbours taken at distances 1, 3, 9, 27, 81 (the spatial pyramid), each
followed by a residual 3-layer feed-forward convolution; four 5x5 convolutions 32-16-8-4-1
(``last_layer``) give the mask logits at the input size.

State-dict names follow IMDL-BenCo (``featex.*``, ``pixel_attention.<i>.*``, ``outlier_trans.*``).
IMDL-BenCo 0.1.45 creates the four last convolutions anew, with random weights, inside every
forward call, so they are never trained and absent from its checkpoints; here they are registered
(``last_layer.*``): trained and saved. A checkpoint without them still loads (``strict=True``
included) and a warning says they start untrained. ``redraw_last_layer=True`` reproduces the
reference exactly (for the parity fixture; never for training).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import MODELS
from ..mantra_net.imtfe import IMTFE, load_imtfe_weights, to_mantra_range

logger = logging.getLogger(__name__)

__all__ = ["SPAN", "PixelAttention"]


class PixelAttention(nn.Module):
    """Local self-attention over the 3x3 neighbours at distance ``shift``, then a feed-forward block.

    Keys and values (``k_p``, ``v_p``: one ``in_channels`` slice per neighbour) and the query
    (``q_p``) are 1x1 convolutions; neighbours outside the image are zero-padded and their scores
    multiplied by 0 (not excluded); scores are scaled by 1/8 and soft-maxed over the 9 neighbours.
    Both the attention and the feed-forward (3x3 convs C -> C -> 2C -> C with ReLU) are residual.

    ``per_pixel=False`` reproduces IMDL-BenCo, which flattens the stacked ``(B, 9, C, H, W)``
    neighbours with ``view(B*H*W, 9, C)`` without moving the channel axis last: each attention
    "row" is then a run of ``9*C`` consecutive memory values (pixels of one channel), not the 9
    neighbours of one pixel. ``per_pixel=True`` attends over the 9 neighbours of each pixel, as
    the paper (and its NHWC TensorFlow code) describes; published SPAN numbers come from the former.
    """

    def __init__(self, in_channels: int = 32, shift: int = 1, kernel_range: tuple[int, int] = (3, 3),
                 per_pixel: bool = False) -> None:
        super().__init__()
        self.in_channels, self.shift = in_channels, int(shift)
        self.kernel_range = tuple(kernel_range)
        self.per_pixel = bool(per_pixel)
        n = self.kernel_range[0] * self.kernel_range[1]
        self.k_p = nn.Conv2d(in_channels, in_channels * n, 1)
        self.v_p = nn.Conv2d(in_channels, in_channels * n, 1)
        self.q_p = nn.Conv2d(in_channels, in_channels, 1)
        self.ff1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.ff2 = nn.Conv2d(in_channels, 2 * in_channels, 3, padding=1)
        self.ff3 = nn.Conv2d(2 * in_channels, in_channels, 3, padding=1)

    def _windows(self, t: torch.Tensor, per_neighbour: bool) -> torch.Tensor:
        """``(B, 9, C, H, W)``: for each neighbour, ``t`` (its channel slice ``i`` when
        ``per_neighbour``, else all of ``t``) moved so that pixel ``(y, x)`` holds the value at the
        neighbour's position, 0 outside the image. The same values as the reference's zero-padded
        map cut at each offset, without building the padded copy (at distance 81 it is far larger
        than the image)."""
        b, channels, h, w = t.shape
        kh, kw = self.kernel_range
        c = channels // (kh * kw) if per_neighbour else channels
        out = t.new_zeros(b, kh * kw, c, h, w)
        for i in range(kh):
            for j in range(kw):
                idx = i * kw + j
                dy, dx = (i - kh // 2) * self.shift, (j - kw // 2) * self.shift
                y0, y1 = max(0, -dy), min(h, h - dy)
                x0, x1 = max(0, -dx), min(w, w - dx)
                if y0 < y1 and x0 < x1:
                    first = idx * c if per_neighbour else 0
                    out[:, idx, :, y0:y1, x0:x1] = t[:, first:first + c, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w = x.shape
        kh, kw = self.kernel_range
        n = kh * kw
        keys = self._windows(self.k_p(x), per_neighbour=True)  # (B, n, D, H, W)
        values = self._windows(self.v_p(x), per_neighbour=True)
        inside = self._windows(x.new_ones(b, 1, h, w), per_neighbour=False)  # (B, n, 1, H, W): 1 inside the image
        query = self.q_p(x)
        if self.per_pixel:
            keys, values, inside = (t.permute(0, 3, 4, 1, 2) for t in (keys, values, inside))
            query = query.permute(0, 2, 3, 1)
        # reshape (not view) so that a channels-last input gives the same values
        k = keys.reshape(b * h * w, n, d)
        v = values.reshape(b * h * w, n, d)
        m = inside.reshape(b * h * w, n, 1)
        q = query.reshape(b * h * w, 1, d)
        alpha = F.softmax(torch.matmul(k, q.transpose(-1, -2)) * m / 8, dim=1)
        attended = torch.matmul(alpha.transpose(-1, -2), v)
        if self.per_pixel:
            attended = attended.reshape(b, h, w, d).permute(0, 3, 1, 2)
        t = x + attended.reshape(b, d, h, w)
        return t + F.relu(self.ff3(F.relu(self.ff2(F.relu(self.ff1(t))))))


def _last_layer() -> nn.Sequential:
    """The four 5x5 convolutions 32-16-8-4-1 (ReLU between). Built in this order, with PyTorch's
    default initialisation, they draw the same random numbers as IMDL-BenCo's per-call layers."""
    return nn.Sequential(
        nn.Conv2d(32, 16, 5, padding=2), nn.ReLU(),
        nn.Conv2d(16, 8, 5, padding=2), nn.ReLU(),
        nn.Conv2d(8, 4, 5, padding=2), nn.ReLU(),
        nn.Conv2d(4, 1, 5, padding=2),
    )


def _accept_state_without_last_layer(module: SPAN, incompatible) -> None:
    """``load_state_dict`` post-hook: a state dict that lacks *all* of ``last_layer.*`` (IMDL-BenCo
    checkpoints) is complete; one warning says those layers start untrained. A partial
    ``last_layer`` stays an error under ``strict=True``."""
    names = module.optional_checkpoint_keys()
    found: dict[str, list[str]] = {}
    for key in incompatible.missing_keys:
        for name in names:
            if key.endswith(name) and (len(key) == len(name) or key[-len(name) - 1] == "."):
                found.setdefault(key[: len(key) - len(name)], []).append(key)
    for prefix, keys in found.items():
        if len(keys) != len(names):
            continue
        for key in keys:
            incompatible.missing_keys.remove(key)
        logger.warning(
            "SPAN: the loaded weights have no %slast_layer.* (IMDL-BenCo 0.1.45 re-creates those four "
            "convolutions at random in every forward call and never saves them); they keep their current, "
            "untrained values. Fine-tune before trusting the masks.", prefix)


@MODELS.register_module()
class SPAN(nn.Module):
    """SPAN (ECCV 2020), as in IMDL-BenCo 0.1.45 except for the registered last layers.

    Args:
        weight_path: local ManTra-Net feature-extractor file, ``IMTFEv4.pt`` (or ``MantraNetv4.pt``,
            whose ``IMTFE.*`` part is used) from RonyAbecidan/ManTraNet-pytorch. IMDL-BenCo requires
            it; here an empty value starts from random weights with one warning. Nothing is
            downloaded.
        layers_steps: neighbour distance of each pixel-attention block (the pyramid).
        redraw_last_layer: IMDL-BenCo's behaviour: the last four convolutions are not part of the
            model and are created with fresh random weights (from the global torch RNG) at every
            call. Only for reproducing the reference's parity fixture; never for training.
        per_pixel_attention: attend over the 9 neighbours of each pixel (the paper); off
            (default, IMDL-BenCo): the reference's memory reinterpretation (see :class:`PixelAttention`).

    IMDL-BenCo's ``device`` argument is not needed: the training scripts move the model
    (``--device``), and nothing here is placed on a fixed device.
    """

    def __init__(self, weight_path: str | None = None, layers_steps: Sequence[int] = (1, 3, 9, 27, 81),
                 redraw_last_layer: bool = False, per_pixel_attention: bool = False) -> None:
        super().__init__()
        steps = [int(s) for s in layers_steps]
        if not steps or any(s < 1 for s in steps):
            raise ValueError(f"SPAN: layers_steps must be positive neighbour distances, got {list(layers_steps)}")
        self.redraw_last_layer = bool(redraw_last_layer)
        self.featex = IMTFE(residual=True)
        self.pixel_attention = nn.ModuleList(
            [PixelAttention(32, shift=s, per_pixel=per_pixel_attention) for s in steps])
        self.outlier_trans = nn.Conv2d(256, 32, 1)
        if self.redraw_last_layer:
            self.last_layer = None
        else:
            self.last_layer = _last_layer()
            self.register_load_state_dict_post_hook(_accept_state_without_last_layer)
        self._load_weights(weight_path)

    def optional_checkpoint_keys(self) -> tuple[str, ...]:
        """State-dict keys a loaded checkpoint may lack (IMDL-BenCo's SPAN checkpoints have no
        ``last_layer``); they then keep their initial values. The engine's checkpoint loader asks
        for these; a direct ``load_state_dict`` is handled by the post-hook above."""
        if self.last_layer is None:
            return ()
        return tuple(f"last_layer.{k}" for k in self.last_layer.state_dict())

    def _load_weights(self, path: str | None) -> None:
        from ...modules.pretrained import warn_random_init

        if not path:
            warn_random_init("SPAN", "--weight_path is empty; IMTFEv4.pt from RonyAbecidan/ManTraNet-pytorch "
                                     "gives the published start of the feature extractor")
            return
        load_imtfe_weights(self.featex, path, "--weight_path")

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, *args, **kwargs) -> dict[str, object]:
        x = self.outlier_trans(self.featex(to_mantra_range(image)))
        for block in self.pixel_attention:
            x = block(x)
        head = self.last_layer
        if head is None:  # the reference's per-call random layers
            head = _last_layer().to(device=x.device, dtype=x.dtype)
        logits = head(x)
        pred_mask = torch.sigmoid(logits)
        loss = logits.new_zeros(()) if mask is None else F.binary_cross_entropy_with_logits(logits, mask.float())
        return {
            "backward_loss": loss,
            "pred_mask": pred_mask,
            "pred_label": None,
            "visual_loss": {"predict_loss": loss.detach()},
            "visual_image": {"pred_mask": pred_mask},
        }
