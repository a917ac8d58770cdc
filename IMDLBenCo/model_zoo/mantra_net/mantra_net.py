"""ManTra-Net: manipulation tracing network (Wu, AbdAlmageed, Natarajan, CVPR 2019).

Two parts, named as in the authors' PyTorch port and IMDL-BenCo (so ``MantraNetv4.pt`` and
IMDL-BenCo checkpoints load with ``strict=True``):

* ``IMTFE``: the image manipulation trace feature extractor (:mod:`.imtfe`), 256 unit-length
  features per pixel;
* ``AnomalyDetector``: the local anomaly detection network. A 1x1 convolution adapts the features
  to 64 channels, a TensorFlow-style batch normalisation (always batch statistics, eps 1e-3)
  follows, and each pixel is compared with the mean of its 7x7, 15x15, 31x31 neighbourhoods and of
  the whole image: ``|mean - x| / max(sigma_image, sigma_F + eps)`` (a Z-score with a learnt
  floor ``sigma_F``). The four Z-score maps, from the most local to the global one, are read as a
  4-step sequence by a ConvLSTM (or ConvGRU) with 8 hidden channels and 7x7 kernels, whose last
  hidden state gives the mask logits through a 7x7 convolution.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import MODELS
from .imtfe import IMTFE, load_imtfe_weights, to_mantra_range

logger = logging.getLogger(__name__)

__all__ = ["MantraNet", "AnomalyDetector", "tf_hard_sigmoid", "tf_batch_norm"]


def tf_hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras' hard sigmoid ``clip(0.2 x + 0.5, 0, 1)``, with the reference's cut at |x| > 2.5 (the
    value and the zero gradient outside the cut are exactly those of the port ManTra-Net's
    weights were converted with; torch's ``hardsigmoid`` has slope 1/6)."""
    y = 0.2 * x + 0.5
    return torch.where(x < -2.5, torch.zeros_like(y), torch.where(x > 2.5, torch.ones_like(y), y))


def tf_batch_norm(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Normalise each channel by its statistics over the batch and the image, in train and eval
    mode alike (no running averages, no affine parameters; the biased variance), as the Keras
    layer of the original model was exported."""
    c = x.shape[1]
    mean = x.mean(dim=(0, 2, 3))
    var = ((x - mean.view(1, c, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    return (x - mean.view(1, c, 1, 1)) / torch.pow(var.view(1, c, 1, 1) + eps, 0.5)


class _ConvLSTMCell(nn.Module):
    """ConvLSTM cell with Keras' hard-sigmoid gates; one convolution gives the i, f, g, o maps."""

    def __init__(self, input_dim: int, hidden_dim: int, kernel_size: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.conv = nn.Conv2d(input_dim + hidden_dim, 4 * hidden_dim, kernel_size, padding=kernel_size // 2)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[-2:])
        return zeros, zeros

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, g, o = torch.split(self.conv(torch.cat([x, h], dim=1)), self.hidden_dim, dim=1)
        c = tf_hard_sigmoid(f) * c + tf_hard_sigmoid(i) * torch.tanh(g)
        h = tf_hard_sigmoid(o) * torch.tanh(c)
        return h, c


class _ConvGRUCell(nn.Module):
    """ConvGRU cell (the port's lighter variant): reset/update gates from ``[h, x]``, candidate
    from ``[x, r * h]``."""

    def __init__(self, input_dim: int, hidden_dim: int, kernel_size: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.conv1 = nn.Conv2d(input_dim + hidden_dim, 2 * hidden_dim, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv2d(input_dim + hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[-2:])

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        r, u = torch.split(self.conv1(torch.cat([h, x], dim=1)), self.hidden_dim, dim=1)
        r, u = tf_hard_sigmoid(r), tf_hard_sigmoid(u)
        candidate = torch.tanh(self.conv2(torch.cat([x, r * h], dim=1)))
        return (1 - u) * h + u * candidate


class _Recurrence(nn.Module):
    """Runs one cell over a sequence and returns the last hidden state. The cell sits in
    ``cell_list.0`` because that is where the port (a multi-layer ConvLSTM) keeps it."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell_list = nn.ModuleList([cell])

    def forward(self, steps: tuple[torch.Tensor, ...]) -> torch.Tensor:
        cell = self.cell_list[0]
        state = cell.initial_state(steps[0])
        for x in steps:
            state = cell(x, state)
        return state[0] if isinstance(state, tuple) else state


class AnomalyDetector(nn.Module):
    """Local anomaly detection network: IMTFE features ``(B, 256, H, W)`` -> mask logits ``(B, 1, H, W)``.

    ``end`` holds the final convolution and the sigmoid (the port's ``nn.Sequential``, whose
    ``end.0`` keys the weight files use); :meth:`forward` returns the logits before the sigmoid.
    """

    def __init__(self, eps: float = 1e-6, with_GRU: bool = False) -> None:
        super().__init__()
        self.eps = float(eps)
        self.with_GRU = bool(with_GRU)
        self.adaptation = nn.Conv2d(256, 64, 1, bias=False)
        self.sigma_F = nn.Parameter(torch.zeros(1, 64, 1, 1))
        if self.with_GRU:
            self.conv_gru = _Recurrence(_ConvGRUCell(64, 8, 7))
        else:
            self.conv_lstm = _Recurrence(_ConvLSTMCell(64, 8, 7))
        self.end = nn.Sequential(nn.Conv2d(8, 1, 7, padding=3), nn.Sigmoid())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # statistics, divisions and the recurrence in float32: under fp16 autocast the variance and
        # the Z-scores can overflow; without autocast this changes nothing
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = tf_batch_norm(self.adaptation(features.float()))
            h, w = x.shape[-2:]
            # the global mean over the *current* size (IMDL-BenCo keeps the first training size)
            mu = F.avg_pool2d(x, (h, w), stride=1)
            sigma = torch.sqrt(F.avg_pool2d(torch.square(x - mu), (h, w), stride=1))
            inv_sigma = torch.pow(torch.max(sigma, self.sigma_F + self.eps), -1)
            z_global = torch.abs((mu - x) * inv_sigma)
            z_local = [torch.abs((F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False) - x) * inv_sigma)
                       for k in (7, 15, 31)]
            hidden = (self.conv_gru if self.with_GRU else self.conv_lstm)((*z_local, z_global))
            return self.end[0](hidden)


@MODELS.register_module()
class MantraNet(nn.Module):
    """ManTra-Net (CVPR 2019), as in IMDL-BenCo 0.1.45.

    Args:
        in_channel: image channels (3).
        eps: added to the learnt standard-deviation floor ``sigma_F`` of the Z-scores.
        with_GRU: a ConvGRU instead of the ConvLSTM (the port's variant; not the published weights).
        weight_path: local pretrained file. ``MantraNetv4.pt`` (the whole model, bare or as
            ``{"model": ...}`` written by IMDL-BenCo's ``modify_weights.py``) or ``IMTFEv4.pt``
            (the feature extractor only; the anomaly detector then starts random). Empty: random
            initialisation with one warning. Nothing is downloaded.
        loss_on_logits: BCE-with-logits on the mask *logits* (a correct BCE). Off (default,
            IMDL-BenCo 0.1.45): BCE-with-logits applied to the sigmoid *probabilities*, i.e. a
            second sigmoid: the loss stays above 0.31 for a masked pixel and its gradient is damped;
            keep it off to reproduce IMDL-BenCo's numbers.

    IMDL-BenCo's ``device`` argument is not needed: the training scripts move the model
    (``--device``), and nothing here is placed on a fixed device.
    """

    def __init__(self, in_channel: int = 3, eps: float = 1e-6, with_GRU: bool = False,
                 weight_path: str | None = None, loss_on_logits: bool = False) -> None:
        super().__init__()
        if in_channel != 3:
            raise ValueError(f"MantraNet: in_channel must be 3 (RGB; the SRM bank and the de-normalisation "
                             f"assume it), got {in_channel}")
        self.loss_on_logits = bool(loss_on_logits)
        self.IMTFE = IMTFE(in_channel)
        self.AnomalyDetector = AnomalyDetector(eps=eps, with_GRU=with_GRU)
        self._load_weights(weight_path)

    def _load_weights(self, path: str | None) -> None:
        from ...modules.pretrained import read_state_dict, warn_random_init

        if not path:
            warn_random_init("MantraNet", "--weight_path is empty; MantraNetv4.pt or IMTFEv4.pt from "
                                          "RonyAbecidan/ManTraNet-pytorch gives the published start")
            return
        state = read_state_dict(path)
        if not any(k.startswith("AnomalyDetector.") for k in state):
            load_imtfe_weights(self.IMTFE, path, "--weight_path", state)
            logger.info("MantraNet: %s holds the feature extractor only; the anomaly detector starts random", path)
            return
        own = self.state_dict()
        problems = []
        missing = [k for k in own if k not in state]
        if missing:
            problems.append(f"{len(missing)} key(s) missing (e.g. {', '.join(missing[:3])})")
            if any(".conv_lstm." in k or ".conv_gru." in k for k in missing):
                problems.append("a ConvLSTM file needs with_GRU=False, a ConvGRU file with_GRU=True")
        wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items()
                 if k in state and state[k].shape != v.shape]
        if wrong:
            problems.append(f"other shapes: {', '.join(wrong[:3])}")
        if problems:
            raise ValueError(f"--weight_path {path}: not a MantraNet weight file for these options: " + "; ".join(problems))
        unexpected = [k for k in state if k not in own]
        if unexpected:
            logger.info("MantraNet: ignoring %d unexpected key(s) of %s (e.g. %s)", len(unexpected), path,
                        ", ".join(unexpected[:3]))
        self.load_state_dict({k: state[k] for k in own}, strict=True)
        logger.info("MantraNet: loaded %d tensors from %s", len(own), path)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, *args, **kwargs) -> dict[str, object]:
        logits = self.AnomalyDetector(self.IMTFE(to_mantra_range(image)))
        pred_mask = torch.sigmoid(logits)
        if mask is None:
            loss = logits.new_zeros(())
        else:
            # reference: BCE-with-logits of the probabilities (see ``loss_on_logits``)
            loss = F.binary_cross_entropy_with_logits(logits if self.loss_on_logits else pred_mask, mask.float())
        return {
            "backward_loss": loss,
            "pred_mask": pred_mask,
            "pred_label": None,
            "visual_loss": {"predict_loss": loss.detach()},
            "visual_image": {"pred_mask": pred_mask},
        }
