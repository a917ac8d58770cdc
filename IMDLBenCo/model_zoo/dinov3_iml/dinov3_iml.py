"""DINOv3-IML: a frozen DINOv3 (or DINOv2) ViT with LoRA adapters and a small convolutional head.

The backbone is a timm ViT chosen by name (``vit_large_patch16_dinov3`` by default; any DINOv3 or
DINOv2 size), built with random weights and filled from a local file (timm or Meta's official
layout; nothing is downloaded). Its weights are frozen; LoRA adapters (``peft``) on the attention's
QKV projections and the head are the only trainable parameters. The normalised patch tokens of
the last block, as a (B, D, H/p, W/p) map, go through Conv3x3-BN-ReLU (D -> D/2), Conv3x3-BN-ReLU
(D/2 -> D/4) and Conv1x1 (-> 1); the logits are bilinearly upsampled to the input size.

State-dict names: ``backbone.*`` (timm names; peft's ``qkv.base_layer.*`` / ``qkv.lora_A.default.*``
/ ``qkv.lora_B.default.*`` where adapted), ``seg_head.{0,1,3,4,6}.*``, ``label_head.*``,
``backbone_signature``. The engine's checkpoints hold everything except the frozen backbone
tensors (``checkpoint_state_dict``); those come from ``--backbone_weights`` again when loading.
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError, UsageError
from ...registry import MODELS

logger = logging.getLogger(__name__)

__all__ = ["DINOv3_IML", "conv_head", "build_backbone", "load_backbone_weights", "add_lora"]

#: the timm names this model is built and tested for (other timm ViTs with ``forward_intermediates``
#: and an attention ``qkv`` projection may work too)
DINO_BACKBONES = ("vit_small_patch16_dinov3", "vit_small_plus_patch16_dinov3", "vit_base_patch16_dinov3",
                  "vit_large_patch16_dinov3", "vit_huge_plus_patch16_dinov3", "vit_small_patch14_dinov2",
                  "vit_base_patch14_dinov2", "vit_large_patch14_dinov2", "vit_giant_patch14_dinov2")


# ---------------------------------------------------------------------------------- backbone
def build_backbone(name: str, image_size: int = 512, depth: int | None = None) -> nn.Module:
    """The timm ViT ``name`` with random weights, no classifier, and any input size
    (``dynamic_img_size``: DINOv2's position embedding is resampled, DINOv3's RoPE recomputed).

    ``image_size`` sets the size the position embedding is stored at (DINOv2); ``depth`` keeps
    only the first ``depth`` blocks (for quick tests or a shallower model).
    """
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models("*dino*"), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "."
        raise UsageError(f"--backbone {name!r} is not a timm model{hint} DINOv3 / DINOv2 names: "
                         f"{', '.join(DINO_BACKBONES)}")
    kwargs = dict(pretrained=False, num_classes=0, dynamic_img_size=True, img_size=image_size)
    if depth is not None:
        if depth < 1:
            raise UsageError(f"--backbone_depth must be at least 1 (or None for all blocks), got {depth}")
        kwargs["depth"] = depth
    net = timm.create_model(name, **kwargs)
    if not hasattr(net, "forward_intermediates") or not hasattr(net, "patch_embed"):
        raise UsageError(f"--backbone {name!r}: DINOv3_IML needs a timm ViT with patch tokens "
                         f"(forward_intermediates); use one of {', '.join(DINO_BACKBONES)}")
    return net


def _drop_official_qkv_bias(sd: dict[str, torch.Tensor], backbone: nn.Module, path: str) -> dict[str, torch.Tensor]:
    """Meta's DINOv3 files store a ``qkv.bias`` (k part masked). timm's ``*_dinov3`` models have no
    q/v bias (the released ViT-S/B/L/H+ biases are zero) and its ``*_dinov3_qkvb`` twins keep them.
    Drop zero biases here (timm's converter would print one line per block); refuse non-zero ones,
    which the bias-free model would silently lose."""
    own = {name for name, _ in backbone.named_parameters()}
    if any(name.endswith("attn.q_bias") for name in own):
        return sd  # timm's converter splits the bias into q_bias / v_bias
    out = {}
    for key, value in sd.items():
        if key.endswith("attn.qkv.bias") and key not in own:  # (DINOv2 in timm keeps a real qkv.bias)
            q, _, v = value.chunk(3, dim=-1)
            if q.abs().max() > 0 or v.abs().max() > 0:
                raise CheckpointError(
                    f"--backbone_weights {path}: {key} holds non-zero query/value biases, which this backbone has "
                    f"no parameters for; use the '_qkvb' variant of the --backbone name (e.g. "
                    f"vit_large_patch16_dinov3_qkvb)")
            continue
        out[key] = value
    return out


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Fill ``backbone`` from the local file ``path``: timm's layout (``.safetensors`` / ``.pth``
    from the Hugging Face ``timm/`` repositories) or Meta's official DINOv3 / DINOv2 ``.pth``
    (renamed by timm's own converter). Every backbone parameter must be found with its shape;
    otherwise one error names the file and what is missing."""
    from ...modules.pretrained import load_pretrained, read_state_dict

    sd = read_state_dict(path)
    sd = _drop_official_qkv_bias(sd, backbone, path)
    convert = getattr(sys.modules[type(backbone).__module__], "checkpoint_filter_fn", None)
    if convert is not None:  # official names -> timm names, position embedding resampled to our grid
        sd = convert(sd, backbone)
    report = load_pretrained(backbone, sd, adapt_in_channels=False)
    params = {name for name, _ in backbone.named_parameters()}
    missing = [k for k in report.missing if k in params]
    if missing or report.mismatched:
        bad = missing + report.mismatched
        raise CheckpointError(
            f"--backbone_weights {path} does not fit --backbone {type(backbone).__name__} "
            f"({getattr(backbone, 'default_cfg', {}).get('architecture', '?')}): {len(missing)} parameter(s) missing, "
            f"{len(report.mismatched)} with another shape (e.g. {', '.join(bad[:3])}); {report.loaded} loaded. "
            "Give the weights of the same architecture and size, in timm's layout or Meta's official release")


def add_lora(backbone: nn.Module, rank: int, alpha: float, dropout: float, targets: Sequence[str]) -> None:
    """Inject ``peft`` LoRA adapters (adapter name ``default``) into the linear layers of ``backbone``
    whose names end with one of ``targets``, in place."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as err:
        raise ImportError("DINOv3_IML needs the `peft` package for its LoRA adapters: pip install peft "
                          "(or --lora_rank 0 to train the heads on a frozen backbone without adapters)") from err
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    try:
        inject_adapter_in_model(config, backbone)
    except ValueError as err:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear)})
        raise UsageError(f"--lora_targets {list(targets)}: {err}. Linear layers of this backbone: "
                         f"{', '.join(linears)}") from err
    # timm's EVA attention with q/v biases (the ``*_qkvb`` DINOv3 models) computes
    # F.linear(x, qkv.weight, bias), bypassing the adapted module; adding the bias after the module
    # call is the same arithmetic and keeps the adapter in the path
    for module in backbone.modules():
        if getattr(module, "q_bias", None) is not None and hasattr(module, "qkv_bias_separate"):
            module.qkv_bias_separate = True


def conv_head(in_channels: int, width: int) -> nn.Sequential:
    """Conv3x3-BN-ReLU (in -> width), Conv3x3-BN-ReLU (width -> width/2), Conv1x1 (-> 1 logit);
    Kaiming (fan-out) convolutions, BN at 1/0."""
    half = max(width // 2, 1)
    head = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, half, 3, padding=1), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        nn.Conv2d(half, 1, 1),
    )
    for m in head.modules():
        if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            nn.init.zeros_(m.bias)
    return head


def _is_frozen_key(key: str) -> bool:
    """A state-dict key of the frozen backbone (restored from the backbone file, not checkpoints)."""
    return key.startswith("backbone.") and "lora_" not in key


# ------------------------------------------------------------------------------------- model
@MODELS.register_module()
class DINOv3_IML(nn.Module):
    """DINOv3-IML (Yu, Feng, Wang, Ma, arXiv 2604.16083, 2026): frozen DINOv3/DINOv2 ViT + LoRA on
    QKV + a three-layer convolutional mask head.

    Args:
        backbone: timm model name, e.g. ``vit_large_patch16_dinov3`` (the paper's best),
            ``vit_base_patch16_dinov3``, ``vit_small_patch16_dinov3``, ``vit_large_patch14_dinov2``.
        backbone_weights: local file of the backbone's pretrained weights (timm ``.safetensors`` /
            ``.pth`` or Meta's official ``.pth``). Without it the backbone is random (one warning).
            Testing a checkpoint needs the same file: checkpoints do not store the frozen backbone.
        lora_rank: LoRA rank r (0: no adapters, only the heads train).
        lora_alpha: LoRA alpha (scale alpha / r); the paper uses 2 x rank.
        lora_dropout: dropout on the LoRA input.
        lora_targets: names of the linear layers to adapt (suffix match; ``qkv`` as in the paper;
            ``proj``, ``fc1``, ``fc2`` also exist).
        head_channels: width of the head's first convolution (the second has half); default
            embed_dim / 2, as published.
        edge_lambda: weight of the edge-weighted BCE term, used when the run gives
            ``--edge_mask_width`` (the paper: 20 with width 7).
        backbone_depth: keep only the first N blocks (default all; for quick tests).
        image_size: input size the DINOv2 position embedding is stored at (the script's
            ``--image_size``); any other size multiple of the patch works too, other sizes are padded.
        if_predict_label: add an image-level head (linear on the mean patch feature) -> ``pred_label``.
    """

    def __init__(self, backbone: str = "vit_large_patch16_dinov3", backbone_weights: str | None = None,
                 lora_rank: int = 32, lora_alpha: float = 64.0, lora_dropout: float = 0.0,
                 lora_targets: Sequence[str] = ("qkv",), head_channels: int | None = None,
                 edge_lambda: float = 20.0, backbone_depth: int | None = None, image_size: int = 512,
                 if_predict_label: bool = False) -> None:
        super().__init__()
        if lora_rank < 0:
            raise UsageError(f"--lora_rank must be >= 0, got {lora_rank}")
        self.backbone_name = backbone
        self.backbone_weights = backbone_weights
        self.edge_lambda = float(edge_lambda)
        self.backbone = build_backbone(backbone, image_size, backbone_depth)
        if backbone_weights:
            load_backbone_weights(self.backbone, backbone_weights)
        else:
            from ...modules.pretrained import warn_random_init

            warn_random_init("DINOv3_IML", "--backbone_weights is empty")
        self.backbone.requires_grad_(False)
        if lora_rank > 0:
            add_lora(self.backbone, lora_rank, lora_alpha, lora_dropout, lora_targets)  # adapters train
        self.patch_size = tuple(self.backbone.patch_embed.patch_size)
        dim = int(self.backbone.embed_dim)
        self.seg_head = conv_head(dim, head_channels or dim // 2)
        self.label_head = nn.Linear(dim, 1) if if_predict_label else None
        # which backbone weights the adapters were trained on: stored in checkpoints, compared on load
        self.register_buffer("backbone_signature", self._backbone_signature(), persistent=True)
        self.register_load_state_dict_pre_hook(self._check_backbone_signature)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """What the engine's checkpoints store: LoRA adapters, heads (with BN statistics) and the
        backbone signature, not the frozen backbone (it comes from ``--backbone_weights``)."""
        return {k: v for k, v in self.state_dict().items() if not _is_frozen_key(k)}

    def optional_checkpoint_keys(self) -> list[str]:
        """The frozen backbone's keys, and the signature (absent from checkpoints written elsewhere):
        a checkpoint may lack them."""
        return [k for k in self.state_dict() if _is_frozen_key(k)] + ["backbone_signature"]

    def checkpoint_keys_absent(self, keys: Iterable[str]) -> None:
        """Called by ``load_checkpoint`` with the optional keys the file did not hold."""
        n = len([k for k in keys if _is_frozen_key(k)])
        if not n:
            return  # only the signature is absent: the backbone came with the file
        if self.backbone_weights:
            logger.info("DINOv3_IML: the checkpoint holds the adapters and heads; the frozen backbone (%d tensors) "
                        "comes from --backbone_weights %s, which must be the file the checkpoint was trained with",
                        n, self.backbone_weights)
        else:
            logger.warning("DINOv3_IML: the checkpoint holds only the adapters and heads; the frozen backbone "
                           "(%d tensors) comes from --backbone_weights, which is empty, so the backbone is random "
                           "and the predictions meaningless. Pass the backbone file the checkpoint was trained "
                           "with (see backbone_weights in the training run's config.json)", n)

    def _backbone_signature(self) -> torch.Tensor:
        """float64 (count, sum, sum of squares) over the frozen backbone tensors (the position
        embedding left out: it depends on --image_size); zeros on the meta device."""
        stats = torch.zeros(3, dtype=torch.float64, device="cpu")
        for key, value in self.backbone.state_dict().items():
            if _is_frozen_key("backbone." + key) and "pos_embed" not in key and value.is_floating_point():
                if value.device.type == "meta":
                    return torch.zeros(3, dtype=torch.float64, device="meta")
                v = value.detach().to("cpu", torch.float64)
                stats += torch.stack([torch.tensor(float(v.numel()), dtype=torch.float64), v.sum(), v.square().sum()])
        return stats

    def _check_backbone_signature(self, module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str,
                                  *args) -> None:
        """Warn when a checkpoint's adapters were trained on other backbone weights than ours; keep
        our signature unless the checkpoint brings the backbone itself (a full or merged export)."""
        key = prefix + "backbone_signature"
        theirs = state_dict.get(key)
        if theirs is None:
            return
        if any(k.startswith(prefix) and _is_frozen_key(k[len(prefix):]) for k in state_dict):
            return  # the backbone is in the file: its signature comes with it
        mine = self.backbone_signature.detach().cpu()
        theirs = theirs.detach().cpu().to(torch.float64)
        if mine.abs().sum() > 0 and theirs.abs().sum() > 0 and not torch.allclose(theirs, mine, rtol=1e-6, atol=0):
            logger.warning("DINOv3_IML: this checkpoint was trained on other backbone weights than the ones "
                           "built now (--backbone_weights %s); its adapters will not fit them. Pass the "
                           "backbone file of the training run", self.backbone_weights or "empty: random")
        state_dict[key] = self.backbone_signature.detach().clone()

    def merge_lora_(self) -> DINOv3_IML:
        """Fold the LoRA adapters into the backbone's weights (``peft``'s merge, then the adapted
        layers are replaced by their base layers), in place; returns ``self``.

        The merged model computes the same outputs without adapter overhead, and its
        ``state_dict()`` is a self-contained inference checkpoint: it loads into a model built with
        the same ``--backbone`` and ``--lora_rank 0`` (no backbone file needed).
        """
        from peft.tuners.tuners_utils import BaseTunerLayer

        adapted = [(name, m) for name, m in self.backbone.named_modules() if isinstance(m, BaseTunerLayer)]
        for name, layer in adapted:
            layer.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            parent = self.backbone.get_submodule(parent_name) if parent_name else self.backbone
            setattr(parent, child, layer.get_base_layer())
        self.backbone.requires_grad_(False)
        self.backbone_signature.copy_(self._backbone_signature())
        return self

    # ------------------------------------------------------------------ forward
    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalised last-block patch tokens as (B, D, H'/p, W'/p), where (H', W') is the input
        padded (bottom / right, zeros) up to a multiple of the patch size; returns (map, (H', W'))."""
        h, w = image.shape[-2:]
        ph, pw = self.patch_size
        pad_h, pad_w = (-h) % ph, (-w) % pw
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h))
        feats = self.backbone.forward_intermediates(image, indices=1, norm=True, output_fmt="NCHW",
                                                    intermediates_only=True)[-1]
        return feats, (h + pad_h, w + pad_w)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, label: torch.Tensor | None = None,
                *args, edge_mask: torch.Tensor | None = None, **kwargs) -> dict[str, object]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"DINOv3_IML: expected image (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        feats, padded = self.features(image)
        logits = self.seg_head(feats)
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)[..., :h, :w]
        pred_mask = torch.sigmoid(logits)
        out: dict[str, object] = {"pred_mask": pred_mask, "pred_label": None, "visual_image": {"pred_mask": pred_mask}}
        label_logit = None
        if self.label_head is not None:
            label_logit = self.label_head(feats.mean(dim=(2, 3))).squeeze(1)
            out["pred_label"] = torch.sigmoid(label_logit)
        if mask is None:
            zero = logits.new_zeros((), dtype=torch.float32)
            out.update(backward_loss=zero, visual_loss={"predict_loss": zero})
            return out
        target = mask.to(logits.dtype)
        predict_loss = F.binary_cross_entropy_with_logits(logits, target)
        loss = predict_loss
        visual_loss = {"predict_loss": predict_loss.detach()}
        if edge_mask is not None and self.edge_lambda > 0:
            edge_loss = F.binary_cross_entropy_with_logits(logits, target, weight=edge_mask.to(logits.dtype))
            edge_loss = edge_loss * self.edge_lambda
            loss = loss + edge_loss
            visual_loss["edge_loss"] = edge_loss.detach()
        if label_logit is not None and label is not None:
            label_loss = F.binary_cross_entropy_with_logits(label_logit, label.to(label_logit.dtype).view(-1))
            loss = loss + label_loss
            visual_loss["label_loss"] = label_loss.detach()
        if len(visual_loss) > 1:
            visual_loss["combined_loss"] = loss.detach()
        out.update(backward_loss=loss, visual_loss=visual_loss)
        return out
