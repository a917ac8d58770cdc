"""TruFor: RGB + Noiseprint++ fused by a CMX dual SegFormer, with anomaly, confidence and detection.

Guillaro, Cozzolino, Sud, Dufour, Verdoliva, "TruFor: Leveraging all-round clues for trustworthy
image forgery detection and localization", CVPR 2023.

The network (``TruForNet``, held as ``Trufor.model`` so that state-dict keys start with
``model.`` as in IMDL-BenCo):

* ``dncnn``: Noiseprint++, a 17-layer DnCNN turning the image into a one-channel camera-model
  fingerprint residual, repeated to 3 channels;
* ``backbone``: a dual MiT-B2 (CMX) encoder reading the ImageNet-normalised RGB image and the
  Noiseprint++ map, fused at every stage (:mod:`.cmx`);
* ``decode_head``: an all-MLP decoder giving 2-class anomaly logits; ``decode_head_conf``: a second
  one giving the confidence logit map; both bilinearly upsampled to the input size;
* ``detection``: an MLP on 8 statistics pooled from the confidence map and from the anomaly evidence
  weighted by the confidence, giving the image-level logit.

Training phases (IMDL-BenCo's ``phase`` option): phase 1 (Noiseprint++ training) is not part of
IMDL-BenCo, its weights are loaded from a file; phase 2 trains localisation (Noiseprint++ and the
detector frozen); phase 3 trains the detector (everything else frozen), starting from the phase-2
checkpoint given by ``det_resume_ckpt``.
"""

from __future__ import annotations

import logging
import pickle

import torch
import torch.nn.functional as F
from torch import nn

from ...modules.pretrained import load_pretrained, read_state_dict, warn_random_init
from ...registry import MODELS
from ...transforms.normalization import IMAGENET_MEAN, IMAGENET_STD, denormalize
from .cmx import DualMiT, dual_mit_b2
from .config import TruForConfig, load_config
from .heads import MLPDecoderHead, conf_pool_features, detection_mlp, init_decoder_, noiseprint_dncnn

logger = logging.getLogger(__name__)

__all__ = ["Trufor", "TruForNet", "PHASES"]

#: IMDL-BenCo's training phases: 2 = localisation, 3 = detection / confidence
PHASES = (2, 3)

# the loss weights of IMDL-BenCo's Trufor
_CE_WEIGHT_NEGATIVE = 0.5
_CE_WEIGHT_POSITIVE = 2.5
_CE_SHARE = 0.3  # phase 2: 0.3 * weighted CE + 0.7 * Dice
_DICE_SMOOTH = 1.0
_DET_WEIGHT = 0.5  # phase 3: confidence MSE + 0.5 * detection BCE


class TruForNet(nn.Module):
    """The TruFor network. ``forward(x)`` takes RGB in [0, 1] (the official TruFor convention) and
    returns ``(anomaly_logits (B,2,H,W), confidence_logits (B,1,H,W), detection_logit (B,1))``."""

    def __init__(self, cfg: TruForConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or TruForConfig()
        channels = (64, 128, 320, 512)
        # registration order = IMDL-BenCo's state-dict order
        self.backbone: DualMiT = dual_mit_b2()
        self.decode_head = MLPDecoderHead(channels, cfg.num_classes, cfg.decoder_embed_dim)
        init_decoder_(self.decode_head, cfg.bn_eps, cfg.bn_momentum)
        # the confidence decoder is not re-initialised by the reference: its BatchNorm keeps eps 1e-5
        self.decode_head_conf = MLPDecoderHead(channels, 1, cfg.decoder_embed_dim)
        self.detection = detection_mlp()
        self.dncnn = noiseprint_dncnn()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        noiseprint = self.dncnn(x).repeat(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        rgb = (x - mean) / std
        feats = self.backbone(rgb, noiseprint)
        anomaly = F.interpolate(self.decode_head(feats), size=size, mode="bilinear", align_corners=False)
        conf = F.interpolate(self.decode_head_conf(feats), size=size, mode="bilinear", align_corners=False)
        # the pooled statistics (log-sum-exp over all pixels) in float32, also under autocast
        with torch.autocast(device_type=x.device.type, enabled=False):
            f1, f2 = conf_pool_features(anomaly.float(), conf.float())
            det = self.detection(torch.cat((f1, f2), dim=-1))
        return anomaly, conf, det


def _read_checkpoint(path: str, option: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (unwrapping ``{"model"|"state_dict"|"network": ...}``), read with
    ``weights_only=True``; a file that needs arbitrary unpickling gets an error saying what to do."""
    try:
        sd = read_state_dict(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"Trufor: {option} {path!r} does not exist") from err
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"Trufor: {option} {path!r} holds Python objects besides tensors (the official trufor.pth.tar "
            "stores numpy values), which are not loaded for safety. If you trust the file, save its state "
            "dict once: python -c \"import torch; c = torch.load('IN', weights_only=False); "
            "torch.save(c.get('state_dict', c), 'OUT.pth')\" and pass OUT.pth"
        ) from err
    if isinstance(sd.get("network"), dict):  # the official noiseprint++.th layout
        sd = sd["network"]
    return sd


def _strip_prefix(sd: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Keep the entries under the first prefix that some key carries, with the prefix removed."""
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def _strict_load(module: nn.Module, sd: dict[str, torch.Tensor], path: str, option: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {list(sd[k].shape)} vs {list(own[k].shape)}" for k in own
             if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{name}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if keys]
        raise ValueError(f"Trufor: {option} {path!r} does not fit the model ({'; '.join(parts)})")
    module.load_state_dict(sd, strict=True)


@MODELS.register_module()
class Trufor(nn.Module):
    """TruFor (CVPR 2023) with IMDL-BenCo's two training phases.

    Args:
        phase: 2 = localisation (trains the encoder and the anomaly decoder; Noiseprint++ and the
            detector frozen; loss 0.3 weighted CE + 0.7 Dice); 3 = detection (trains the detector
            only; loss confidence MSE + 0.5 detection BCE).
        np_pretrain_weights: local Noiseprint++ file (``noiseprint.pth``: the ``dncnn`` part of the
            official TruFor weights; ``{"network": ...}``, bare, or with a ``dncnn.`` /
            ``model.dncnn.`` prefix). Loaded in phase 2 (and in phase 3 without
            ``det_resume_ckpt``).
        mit_b2_pretrain_weights: local SegFormer ``mit_b2.pth`` (ImageNet) for the RGB stream of the
            encoder (non-strict, as IMDL-BenCo).
        config_path: TruFor YAML (IMDL-BenCo's ``configs/trufor.yaml`` layout); empty or a missing
            ``trufor.yaml`` = the built-in copy.
        det_resume_ckpt: phase 3: the phase-2 checkpoint (ours or IMDL-BenCo's ``{"model": ...}``,
            a bare state dict, or the official TruFor ``state_dict`` without the ``model.`` prefix),
            loaded strictly into the whole model.
        single_normalization: ours, off by default. The dataset already ImageNet-normalises the
            image and IMDL-BenCo's TruFor normalises it again, also feeding Noiseprint++ the
            normalised tensor. True undoes the dataset normalisation first, so Noiseprint++ reads RGB
            in [0, 1] and the encoder a once-normalised image, as in the official TruFor (needed for
            the official weights to behave as published).
        mit_b2_both_streams: ours, off by default. Also load ``mit_b2.pth`` into the Noiseprint++
            stream (``extra_*``), as the official TruFor training does; IMDL-BenCo loads the RGB stream only.
        train_confidence_head: ours, off by default. In phase 3 also train the confidence decoder,
            with the official TruFor confidence loss (``sigmoid(confidence)`` against the TCP target,
            border pixels left out; see ``_confidence_loss``). IMDL-BenCo keeps the decoder frozen and
            compares the raw logits, so its confidence loss trains nothing.
    """

    def __init__(
        self,
        phase: int = 2,
        np_pretrain_weights: str | None = None,
        mit_b2_pretrain_weights: str | None = None,
        config_path: str | None = None,
        det_resume_ckpt: str | None = None,
        single_normalization: bool = False,
        mit_b2_both_streams: bool = False,
        train_confidence_head: bool = False,
    ) -> None:
        super().__init__()
        if phase not in PHASES:
            raise ValueError(
                f"Trufor: --phase {phase!r} is not available; use 2 (localisation) or 3 (detection). Phase 1 "
                "(Noiseprint++ training) is not part of IMDL-BenCo: give its weights with --np_pretrain_weights"
            )
        self.phase = phase
        self.single_normalization = single_normalization
        self.train_confidence_head = train_confidence_head
        self.model = TruForNet(load_config(config_path))
        self._load_weights(np_pretrain_weights or None, mit_b2_pretrain_weights or None, det_resume_ckpt or None,
                           mit_b2_both_streams)
        self._freeze()

    # ------------------------------------------------------------------ weights and freezing
    def _load_weights(self, np_path: str | None, mit_path: str | None, det_path: str | None,
                      both_streams: bool) -> None:
        absent: list[str] = []
        if self.phase == 3 and det_path:
            if np_path or mit_path:
                logger.info("Trufor: phase 3 starts from --det_resume_ckpt; --np_pretrain_weights / "
                            "--mit_b2_pretrain_weights are not read")
            sd = _read_checkpoint(det_path, "--det_resume_ckpt")
            if not any(k.startswith("model.") for k in sd):  # official TruFor names
                sd = {f"model.{k}": v for k, v in sd.items()}
            _strict_load(self, sd, det_path, "--det_resume_ckpt")
            logger.info("Trufor: phase 3 starts from %s", det_path)
            return
        if self.phase == 3:
            absent.append("phase 3 without --det_resume_ckpt (the phase-2 checkpoint)")
        if np_path:
            sd = _strip_prefix(_read_checkpoint(np_path, "--np_pretrain_weights"), ("model.dncnn.", "dncnn."))
            _strict_load(self.model.dncnn, sd, np_path, "--np_pretrain_weights")
            logger.info("Trufor: Noiseprint++ loaded from %s", np_path)
        else:
            absent.append("--np_pretrain_weights is empty")
        if mit_path:
            sd = _read_checkpoint(mit_path, "--mit_b2_pretrain_weights")
            if both_streams:
                sd = {**sd, **{f"extra_{k}": v for k, v in sd.items()
                               if k.startswith(("patch_embed", "block", "norm"))}}
            load_pretrained(self.model.backbone, sd, adapt_in_channels=False)
        else:
            absent.append("--mit_b2_pretrain_weights is empty")
        if absent:
            warn_random_init("Trufor", "; ".join(absent))

    def _freeze(self) -> None:
        net = self.model
        if self.phase == 2:
            net.dncnn.requires_grad_(False)
            net.detection.requires_grad_(False)
        else:
            net.requires_grad_(False)
            net.detection.requires_grad_(True)
            if self.train_confidence_head:
                net.decode_head_conf.requires_grad_(True)

    # ------------------------------------------------------------------ losses
    @staticmethod
    def _localisation_losses(evidence: torch.Tensor, prob: torch.Tensor, mask: torch.Tensor):
        """Weighted CE on the class-1 probability (written with log-sigmoids of the logit
        difference: the same value, finite where the probability saturates) and Dice."""
        ce = -(_CE_WEIGHT_NEGATIVE * (1 - mask) * F.logsigmoid(-evidence)
               + _CE_WEIGHT_POSITIVE * mask * F.logsigmoid(evidence)).mean()
        m, p = mask.reshape(-1), prob.reshape(-1)
        dice = 1.0 - (2.0 * (m * p).sum() + _DICE_SMOOTH) / (m.square().sum() + p.square().sum() + _DICE_SMOOTH)
        return ce, dice

    def _confidence_loss(self, conf: torch.Tensor, prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE between the confidence map and the "true class probability" (TCP: the predicted
        probability of the ground-truth class), the target of the confidence decoder.

        IMDL-BenCo: raw confidence logits against ``(1-m)(1-p) + m p`` over all pixels. With
        ``train_confidence_head`` (official TruFor): ``sigmoid(confidence)`` against the TCP of an
        eroded (15x15) forged region and of the complement of a dilated (11x11) one, the pixels near
        the region border (in neither) left out.
        """
        if not self.train_confidence_head:
            tcp = (1 - mask) * (1 - prob) + mask * prob
            return (conf - tcp).square().mean()
        forged = F.max_pool2d(1 - mask, 15, stride=1, padding=7).neg().add(1)  # erosion
        pristine = 1 - F.max_pool2d(mask, 11, stride=1, padding=5)  # complement of the dilation
        tcp = (prob * forged + (1 - prob) * pristine).detach()
        valid = (forged > 0) | (pristine > 0)
        if not bool(valid.any()):  # every pixel within a border band: nothing to learn from
            return conf.sum() * 0.0
        return F.mse_loss(torch.sigmoid(conf)[valid], tcp[valid])

    # ------------------------------------------------------------------ forward
    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, label: torch.Tensor | None = None,
                *args, **kwargs) -> dict[str, object]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"Trufor: expected image (B, 3, H, W), got {tuple(image.shape)}")
        # IMDL-BenCo passes the dataset's (normalised) tensor as if it were RGB in [0, 1]
        x = denormalize(image) if self.single_normalization else image
        anomaly, conf, det = self.model(x)
        with torch.autocast(device_type=image.device.type, enabled=False):
            # softmax over two classes, class 1 = sigmoid(l1 - l0)
            evidence = (anomaly[:, 1:2] - anomaly[:, 0:1]).float()
            pred_mask = torch.sigmoid(evidence)
            det_logit = det[:, 0].float()
            pred_label = torch.sigmoid(det_logit)
            conf = conf.float()
            out: dict[str, object] = {
                "pred_mask": pred_mask,
                "pred_label": pred_label,
                "visual_image": {"pred_mask": pred_mask, "confidence": torch.sigmoid(conf).detach()},
            }
            if mask is None:
                zero = evidence.new_zeros(())
                out["backward_loss"] = zero
                out["visual_loss"] = {"combined_loss": zero}
                return out
            mask = mask.float()
            if self.phase == 2:
                ce, dice = self._localisation_losses(evidence, pred_mask, mask)
                loss = _CE_SHARE * ce + (1 - _CE_SHARE) * dice
                visual = {"loss_ce": ce, "dice_loss": dice, "combined_loss": loss}
            else:
                if label is None:
                    label = (mask.flatten(1).amax(dim=1) > 0).float()
                loss_conf = self._confidence_loss(conf, pred_mask, mask)
                loss_det = F.binary_cross_entropy_with_logits(det_logit, label.float().reshape(-1))
                loss = loss_conf + _DET_WEIGHT * loss_det
                visual = {"loss_conf": loss_conf, "loss_det": loss_det, "combined_loss": loss}
        out["backward_loss"] = loss
        out["visual_loss"] = {k: v.detach() for k, v in visual.items()}
        return out
