"""CAT-Net: Compression Artifact Tracing Network (Kwon, Nam, Yu, Lee, Kim; IJCV 2022, and
Kwon, Yu, Nam, Lee; WACV 2021), registered as ``Cat_Net``.

The network (:mod:`.network`) reads the RGB image and the quantised luminance DCT coefficients
plus quantisation table of the JPEG file, which the post-function ``cat_net_post_func``
(:mod:`.post_function`) adds to every sample. It predicts 2-class logits at 1/4 resolution; the
loss is a class-weighted cross-entropy (0.5 authentic, 2.5 manipulated) on the logits
bilinearly upsampled to the mask, and ``pred_mask`` is the manipulated-class softmax bicubically
upsampled to the input size. State-dict keys equal IMDL-BenCo 0.1.45's (``model.*``,
``loss.criterion.weight``), so its checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import MODELS
from .config import load_config
from .network import CATNetwork, dct_histogram_volume
from .post_function import DCT_SOURCES

logger = logging.getLogger(__name__)

__all__ = ["Cat_Net", "WeightedCrossEntropy", "convert_authors_checkpoint"]

#: the authors' class weights (authentic, manipulated); a state-dict buffer, so checkpoints carry it
CLASS_WEIGHTS = (0.5, 2.5)


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with class weights and an ignored label; logits smaller than the target are
    bilinearly upsampled to it first (as the authors' ``CrossEntropy``)."""

    def __init__(self, ignore_label: int = -1, weight=CLASS_WEIGHTS) -> None:
        super().__init__()
        self.ignore_label = int(ignore_label)
        # nn.CrossEntropyLoss keeps ``weight`` as a buffer: key ``criterion.weight``
        self.criterion = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32),
                                             ignore_index=self.ignore_label)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return self.criterion(logits, target)


#: globals of NumPy scalars and dtypes, which the authors' ``.pth.tar`` files may hold beside the
#: weights (e.g. ``best_p_mIoU``): data, not code, so they may be unpickled with weights_only
_NUMPY_SCALAR_NAMES = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype")


def _numpy_scalar_globals(names: list[str]) -> list | None:
    """The objects to allow for ``names`` (as ``get_unsafe_globals_in_checkpoint`` lists them), or
    None when any of them is not a NumPy scalar/dtype global."""
    import numpy as np

    if not names or any(n not in _NUMPY_SCALAR_NAMES for n in names):
        return None
    core = getattr(np, "_core", None) or np.core  # NumPy 2 / 1
    scalar = core.multiarray.scalar
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")] if hasattr(np, "dtypes") else []
    # a file pickled under NumPy 1 names the scalar constructor numpy.core.multiarray.scalar
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype, *dtypes]


def _read_stream_file(path: str, option: str) -> dict[str, torch.Tensor]:
    """A pretrained file as a state dict (``{"state_dict": ...}`` unwrapped), read with
    ``weights_only=True``; NumPy scalars stored beside the weights are allowed. Any other
    refusal gets a message saying what to do."""
    import pickle

    from ...modules.pretrained import read_state_dict

    try:
        return read_state_dict(path)
    except pickle.UnpicklingError as err:
        allowed = _numpy_scalar_globals(list(torch.serialization.get_unsafe_globals_in_checkpoint(path)))
        if allowed is not None:
            with torch.serialization.safe_globals(allowed):
                return read_state_dict(path)
        failure: Exception = err
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - any other reading error gets the same advice
        failure = err
    raise ValueError(
        f"{option} {path!r}: could not be read as a state dict with torch.load(weights_only=True) "
        f"({type(failure).__name__}: {str(failure)[:300]}). If the file comes from a source you trust, save its "
        f"weights alone once: python -c \"import torch; c = torch.load('{path}', weights_only=False); "
        f"torch.save(c.get('state_dict', c), 'weights_only.pth')\" and pass that file"
    ) from failure


def convert_authors_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The state dict of ``Cat_Net`` from the authors' trained ``CAT_full_v1.pth.tar`` /
    ``CAT_full_v2.pth.tar`` (their ``state_dict`` holds the network's keys without the ``model.``
    prefix and no class weights). Load it with ``model.load_state_dict(sd, strict=True)`` or save
    ``{"model": sd}`` as a checkpoint for the test scripts. An IMDL-BenCo checkpoint is returned
    as it is."""
    sd = _read_stream_file(path, "convert_authors_checkpoint")
    if any(k.startswith("model.") for k in sd):
        return sd
    out = {f"model.{k}": v for k, v in sd.items()}
    out["loss.criterion.weight"] = torch.tensor(CLASS_WEIGHTS, dtype=torch.float32)
    return out


@MODELS.register_module()
class Cat_Net(nn.Module):
    """CAT-Net (IJCV 2022), two-stream HRNet on RGB pixels and JPEG DCT coefficients.

    Args:
        cfg_file: network configuration: ``CAT_full.yaml`` (built in; any path whose file name is
            ``CAT_full.yaml`` and that does not exist also selects it, e.g. IMDL-BenCo's
            ``./configs/CAT_full.yaml``), or the path of a CAT-Net YAML/JSON file.
        pretrained_rgb_path: local ``hrnetv2_w48_imagenet_pretrained.pth`` (HRNet-W48 ImageNet)
            for the RGB stream. Default: ``MODEL.PRETRAINED_RGB`` of a configuration file, if set.
        pretrained_dct_path: local ``DCT_djpeg.pth.tar`` (the authors' DCT stream pretrained on
            double-JPEG detection); its ``last_layer`` is not loaded. Default:
            ``MODEL.PRETRAINED_DCT`` of a configuration file, if set.
        dct_source: how the post-function obtains the coefficients: ``file`` (default: the
            original JPEG file's coefficients, as the CAT-Net authors feed them; see the README) or
            ``benco`` (IMDL-BenCo 0.1.45's re-encoding of the normalised image, whose uint8 cast
            wraps the values, at quality 75: to reproduce its published numbers and use its
            checkpoints). The model checks that its batches were prepared the way this option says.
        rgb_from_normalized: undo the engine's ImageNet normalisation before the model's own
            ``(x - 127.5) / 127.5`` scaling, so the RGB stream sees [-1, 1] as the authors feed
            it. Off by default: IMDL-BenCo applies that scaling to the already normalised image,
            and its checkpoints were trained that way.
        clamp_pred_mask: clamp ``pred_mask`` to [0, 1]. The bicubic upsampling of the softmax
            overshoots at edges; the engine (and every evaluator) expects probabilities. Turn it
            off only to compare raw values with IMDL-BenCo (see the README).
        ignore_padding_in_loss: with ``--if_padding``, leave the padding out of the loss (the
            authors pad the mask with the ignored label); IMDL-BenCo counts it as authentic.
    """

    def __init__(self, cfg_file: str = "CAT_full.yaml", pretrained_rgb_path: str | None = None,
                 pretrained_dct_path: str | None = None, dct_source: Literal["file", "benco"] = "file",
                 rgb_from_normalized: bool = False, clamp_pred_mask: bool = True,
                 ignore_padding_in_loss: bool = False) -> None:
        super().__init__()
        if dct_source not in DCT_SOURCES:
            raise ValueError(f"Cat_Net --dct_source {dct_source!r}: expected one of {DCT_SOURCES}")
        cfg = load_config(cfg_file)
        if cfg.num_classes != 2:
            raise ValueError(f"Cat_Net --cfg_file {cfg_file!r}: DATASET.NUM_CLASSES is {cfg.num_classes}; "
                             f"pred_mask is the second class's probability, so it must be 2")
        self.dct_source = dct_source
        self.rgb_from_normalized = bool(rgb_from_normalized)
        self.clamp_pred_mask = bool(clamp_pred_mask)
        self.ignore_padding_in_loss = bool(ignore_padding_in_loss)
        self.model = CATNetwork(cfg)
        self.loss = WeightedCrossEntropy(ignore_label=cfg.ignore_label)
        self.model.init_weights()
        self._load_pretrained(cfg, pretrained_rgb_path, pretrained_dct_path)

    # ------------------------------------------------------------------------------ weights
    def _load_pretrained(self, cfg, rgb_path: str | None, dct_path: str | None) -> None:
        from ...modules.pretrained import load_pretrained, warn_random_init

        absent: list[str] = []
        streams = (("RGB", "--pretrained_rgb_path", rgb_path, cfg.pretrained_rgb, "MODEL.PRETRAINED_RGB"),
                   ("DCT", "--pretrained_dct_path", dct_path, cfg.pretrained_dct, "MODEL.PRETRAINED_DCT"))
        for stream, option, given, from_cfg, cfg_key in streams:
            path = given or None
            if path is None and from_cfg:
                if os.path.isfile(from_cfg):
                    path = from_cfg
                else:  # IMDL-BenCo's shipped YAML names files on its authors' machine
                    absent.append(f"{cfg_key} {from_cfg!r} of {cfg.source} does not exist")
                    continue
            if path is None:
                absent.append(f"{option} is empty")
                continue
            state = _read_stream_file(path, option)
            if stream == "DCT":
                # the double-JPEG classifier's head does not fit the fused network (as the authors)
                state = {k: v for k, v in state.items() if not k.startswith("last_layer")}
            report = load_pretrained(self.model, state, adapt_in_channels=False)
            if report.loaded == 0:
                raise ValueError(f"{option} {path!r}: no tensor of this file matches CAT-Net's {stream} stream "
                                 f"(keys such as {list(state)[:3]}); is it the right file?")
            logger.info("Cat_Net %s stream: loaded %d tensors from %s", stream, report.loaded, path)
        if absent:
            warn_random_init("Cat_Net", "; ".join(absent))

    # ------------------------------------------------------------------------------ forward
    def _check_inputs(self, image: torch.Tensor, DCT_coef: torch.Tensor | None,
                      qtables: torch.Tensor | None, dct_source: Any) -> None:
        if DCT_coef is None or qtables is None:
            raise ValueError(
                "Cat_Net needs 'DCT_coef' and 'qtables' in the batch. The post-function cat_net_post_func "
                "adds them; the engine applies it for --model Cat_Net. When building a dataset yourself, pass "
                "post_funcs=IMDLBenCo.model_zoo.cat_net.cat_net_post_func"
            )
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"Cat_Net: expected image (B, 3, H, W), got {tuple(image.shape)}")
        b, _, h, w = image.shape
        if h % 8 or w % 8:
            raise ValueError(f"Cat_Net: the image is {h}x{w}; both sides must be multiples of 8 (the DCT stream "
                             f"works on 8x8 JPEG blocks). Use an --image_size that is a multiple of 8 "
                             f"(512 recommended)")
        if tuple(DCT_coef.shape) != (b, h, w):
            raise ValueError(f"Cat_Net: DCT_coef has shape {tuple(DCT_coef.shape)}; expected ({b}, {h}, {w}), one "
                             f"coefficient per pixel of the image (block layout, as cat_net_post_func makes it)")
        if tuple(qtables.shape[-2:]) != (8, 8) or qtables.shape[0] != b:
            raise ValueError(f"Cat_Net: qtables has shape {tuple(qtables.shape)}; expected ({b}, 8, 8), the "
                             f"luminance quantisation table of each image")
        if dct_source is not None:
            found = {dct_source} if isinstance(dct_source, str) else set(dct_source)
            if found != {self.dct_source}:
                raise ValueError(
                    f"Cat_Net was built with --dct_source {self.dct_source} but its batch was prepared with "
                    f"{sorted(found)}: the engine must give the post-function the model's dct_source (see "
                    f"IMDLBenCo/model_zoo/cat_net/README.md, 'Inputs')"
                )

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                DCT_coef: torch.Tensor | None = None, qtables: torch.Tensor | None = None,
                *args, **kwargs) -> dict[str, Any]:
        self._check_inputs(image, DCT_coef, qtables, kwargs.get("DCT_source"))
        rgb = image
        if self.rgb_from_normalized:
            from ...transforms.normalization import denormalize

            rgb = denormalize(image) * 255.0
        rgb = ((rgb - 127.5) / 127.5).detach().float()
        volume = dct_histogram_volume(DCT_coef)
        qtable = qtables.float()
        if qtable.ndim == 3:
            qtable = qtable.unsqueeze(1)  # (B, 1, 8, 8)
        logits = self.model(rgb, volume, qtable)

        if mask is None:
            loss = logits.new_zeros(())
        else:
            target = mask.squeeze(1).long()
            shape_mask = kwargs.get("shape_mask")
            if self.ignore_padding_in_loss and shape_mask is not None:
                target = target.masked_fill(shape_mask.squeeze(1) < 0.5, self.loss.ignore_label)
            loss = self.loss(logits, target)
        prob = F.softmax(logits, dim=1)[:, 1:2]
        pred = F.interpolate(prob, size=image.shape[-2:], mode="bicubic", align_corners=False)
        if self.clamp_pred_mask:
            pred = pred.clamp(0.0, 1.0)
        return {
            "backward_loss": loss,
            "pred_mask": pred,
            "pred_label": None,
            "visual_loss": {"predict_loss": loss.detach()},
            "visual_image": {"pred_mask": pred.detach()},
        }
