"""``benco cam`` / ``test_cam.py``: class-activation maps (Grad-CAM and relatives) of a model.

For every image of a dataset (or a plain folder of images) the CAM of one layer of the model is
written as ``cam/<stem>.png`` (8-bit grey heat map at the image's original size: padding dropped,
resize undone, exactly as the saved masks) and ``cam/<stem>_overlay.jpg`` (the heat map in a colour
map blended over the image), with an index in ``cam.json``. ``<stem>`` follows the unique-name rule
of the saved masks (:func:`~IMDLBenCo.engine.save_images.prediction_paths`), so with the same
``--output_dir`` as ``test_save_images.py`` the folders ``pred/`` and ``cam/`` sit side by side and
``benco report`` shows the overlay next to each prediction.

Options of its own (parsed first; everything else goes to the ``test_save_images`` parser:
``--model`` and its options, ``--checkpoint_path``, ``--test_data_path``, ``--image_size``,
``--if_padding``/``--if_resizing``, ``--output_dir``, ``--device`` ...):

``--target_layer NAME``
    dotted module path as in ``model.named_modules()``. Default: chosen automatically, the last
    module, in forward execution order (the order in which modules return), whose output is a 4-D
    feature map (B, C, H, W) with C > 1, H × W > 1 and the input's aspect ratio (so attention
    tensors (B, heads, N, d) do not count), that runs once per forward and that the target depends
    on (a gradient reaches it); a model with no such map gets its last 1-channel map (a warning says
    so). ``cam.json`` and the log say which one was chosen.
``--cam_method``
    gradcam (default), gradcam++, xgradcam, eigencam, layercam, hirescam (the ``grad-cam`` package).
``--cam_target``
    ``mask`` (default): the sum of ``pred_mask`` over the pixels predicted manipulated (> 0.5) in
    the image's region (padding excluded), or over the whole region when none is, like grad-cam's
    ``SemanticSegmentationTarget``; ``label``: ``pred_label`` (the model must return one).
``--reshape_tokens``
    for a layer whose output is a ViT-style token sequence (B, N, C): ``auto`` (default) reshapes it
    to (B, C, √N, √N) when N is a square, or drops the first (class) token when N − 1 is; an integer
    K drops the first K tokens (class and register tokens) and reshapes the rest; ``off`` refuses
    token outputs. 4-D outputs are never reshaped.

Gradients are computed (no ``torch.no_grad``), with the model in eval mode (train mode with
``--no_model_eval``); the input image is made to require a gradient and the parameters do not
(restored afterwards), so layers of frozen parts work and no weight gradient is stored. Each
sample is handled by exactly one rank (exact sharding); rank 0 writes ``cam.json``. Needs the
optional ``grad-cam`` package (``pip install grad-cam``).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import runfolder
from ..errors import UsageError
from ..outputs import DEFAULT_THRESHOLD, is_positive
from .builders import batch_to_device, eval_loader, evaluation_mode, forward, import_modules, names_of
from .checkpoint import load_checkpoint, plain, unwrap_model
from .fileio import atomic_write
from .inference import gather_records, run_inference
from .save_images import prediction_dataset, prediction_paths, restore_size, to_uint8
from .session import eval_session
from .writers import write_json

__all__ = ["cam_main", "build_cam_parser", "CAM_METHODS", "CAM_TARGETS", "choose_target_layer", "is_feature_map",
           "TokenGrid"]

logger = logging.getLogger("IMDLBenCo.engine")

#: --cam_method → the pytorch_grad_cam class
CAM_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "eigencam": "EigenCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
}
#: methods that need no gradient
_GRADIENT_FREE = {"eigencam"}
CAM_TARGETS = ("mask", "label")
INSTALL_HINT = "pip install grad-cam"
#: blend of the overlay: this much of the image, the rest heat map
IMAGE_WEIGHT = 0.5


# ------------------------------------------------------------------------------ options
def _reshape_tokens(value: str) -> Any:
    low = value.strip().lower()
    if low in ("auto", "off"):
        return low
    try:
        k = int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected auto, off or a number of leading tokens (0, 1, 5 ...)") from None
    if k < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: the number of leading tokens must be 0 or more")
    return k


def build_cam_parser(prog: str = "test_cam.py") -> argparse.ArgumentParser:
    """The options of ``benco cam`` / ``test_cam.py`` itself (the rest go to test_save_images's parser)."""
    p = argparse.ArgumentParser(
        prog=prog, add_help=False, allow_abbrev=False,
        usage=f"{prog} [--import MODULE] [--target_layer NAME] [--cam_method METHOD] [--cam_target {{mask,label}}] "
              "[--reshape_tokens {auto,off,K}] --model MODEL [model options] --checkpoint_path FILE "
              "--test_data_path PATH --image_size S (--if_resizing | --if_padding) [--output_dir DIR] ...",
        description="Class-activation maps (Grad-CAM and relatives) of a model and checkpoint on a dataset or a "
                    "folder of images: cam/<stem>.png (grey heat map at the original size), cam/<stem>_overlay.jpg "
                    "(heat map over the image) and cam.json in --output_dir. Use the --output_dir of "
                    "test_save_images.py to have pred/ and cam/ side by side; `benco report` then shows both. "
                    f"Needs the grad-cam package ({INSTALL_HINT}).",
    )
    g = p.add_argument_group("class-activation map")
    g.add_argument("-h", "--help", action="store_true", help="show this help (and the model's options with --model) and exit")
    g.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (e.g. mymodel, from the working directory: registers your own model); "
                        "may be repeated")
    g.add_argument("--target_layer", default=None, metavar="NAME",
                   help="module whose activations are mapped, as named by model.named_modules() (e.g. decoder.3). "
                        "Default: the last module, in forward execution order, whose output is a 4-D feature map "
                        "with more than one channel and which the target depends on; cam.json records the choice")
    g.add_argument("--cam_method", default="gradcam", choices=list(CAM_METHODS),
                   help="CAM method of the grad-cam package (default gradcam)")
    g.add_argument("--cam_target", default="mask", choices=CAM_TARGETS,
                   help="mask (default): sum of pred_mask over the pixels predicted manipulated (> 0.5), or over "
                        "all pixels of the image when none is; label: pred_label (the model must return one)")
    g.add_argument("--reshape_tokens", default="auto", type=_reshape_tokens, metavar="{auto,off,K}",
                   help="for a layer that outputs ViT tokens (B, N, C): auto (default) reshapes to a √N×√N grid when N "
                        "is a square, or drops one class token when N-1 is; K drops the first K tokens (class and "
                        "register tokens) and reshapes the rest; off refuses token outputs")
    return p


def parse_cam_options(argv: Sequence[str], prog: str = "test_cam.py") -> tuple[argparse.Namespace, list[str]]:
    """``(cam options, the rest of argv for the test_save_images parser)``."""
    return build_cam_parser(prog).parse_known_args(list(argv))


def print_help(rest: Sequence[str], prog: str = "test_cam.py") -> None:
    """cam's own options, then the model/data/run options it shares with test_save_images.py; exits 0."""
    from .arguments import parse_script_args

    build_cam_parser(prog).print_help()
    print("\nThe options below are those of test_save_images.py (model, data, run); all apply here.\n")
    sys.stdout.flush()
    parse_script_args("test_save_images", [*rest, "--help"])  # prints and raises SystemExit(0)
    raise SystemExit(0)  # pragma: no cover - parse_script_args exits on --help


def require_grad_cam():
    """The ``pytorch_grad_cam`` module, or one UsageError saying how to install it."""
    try:
        import pytorch_grad_cam
    except ImportError as err:
        missing = getattr(err, "name", None) or "pytorch_grad_cam"
        raise UsageError(f"class-activation maps need the optional grad-cam package ({missing} cannot be imported): "
                         f"{INSTALL_HINT}  (or pip install 'imdlbenco[cam]')") from None
    return pytorch_grad_cam


# ---------------------------------------------------------------------- model and target
class CamModel(torch.nn.Module):
    """The IMDL model seen by grad-cam: ``forward(image)`` calls it with the current batch's other
    keys (``mask``, ``label``, ``shape_mask`` ...; set :attr:`batch` before each call) and returns
    ``pred_mask`` (B,1,H,W) or ``pred_label`` (B,). The image is made to require a gradient, so every
    layer's output does even where the parameters do not."""

    def __init__(self, model: torch.nn.Module, target: str, predict_label: bool) -> None:
        super().__init__()
        self.model = model
        self.target = target
        self.predict_label = predict_label
        self.batch: dict[str, Any] = {}
        self.last_output: dict[str, Any] | None = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not image.requires_grad:
            image = image.detach().requires_grad_(True) + 0  # not a leaf: in-place ops in the model stay legal
        batch = dict(self.batch)
        batch["image"] = image
        out = forward(self.model, batch, self.predict_label)
        self.last_output = out
        if not isinstance(out, dict):
            raise UsageError(f"the model's forward returned {type(out).__name__}, not the output dict; "
                             "see IMDLBenCo/outputs.py")
        if self.target == "label":
            value = out.get("pred_label")
            if value is None:
                raise UsageError("--cam_target label: the model returned no pred_label (add --if_predict_label if it "
                                 "has a label head, or use --cam_target mask)")
        else:
            value = out.get("pred_mask")
            if value is None:
                raise UsageError("--cam_target mask: the model returned no pred_mask (use --cam_target label)")
        return value


class MaskTarget:
    """Sum of a (1,S,S) ``pred_mask`` over the pixels predicted manipulated inside the image's own
    (h, w) region, or over the whole region when none is (grad-cam's SemanticSegmentationTarget with
    the mask taken from the prediction itself)."""

    def __init__(self, h: int, w: int, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.h, self.w, self.threshold = int(h), int(w), threshold

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        region = output[..., : self.h, : self.w]
        positive = is_positive(region.detach(), self.threshold)
        if bool(positive.any()):
            return (region * positive.to(region.dtype)).sum()
        return region.sum()


class LabelTarget:
    """``pred_label`` of one image (a 0-dim tensor)."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output.reshape(())


def make_targets(batch: dict[str, Any], target: str) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    n = batch["image"].shape[0]
    if target == "label":
        return [LabelTarget() for _ in range(n)]
    size = batch["image"].shape[-2:]
    shapes = batch.get("shape")
    return [MaskTarget(*(shapes[j].tolist() if shapes is not None else size)) for j in range(n)]


class TokenGrid:
    """grad-cam ``reshape_transform``: ViT tokens (B, N, C) → (B, C, side, side), the first
    ``prefix`` tokens (class / register tokens) dropped; ``channels_first``: a 1-D convolution's
    (B, C, N) sequence over the flattened positions."""

    def __init__(self, prefix: int, side: int, channels_first: bool = False) -> None:
        self.prefix, self.side, self.channels_first = int(prefix), int(side), bool(channels_first)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.channels_first:
            grid = tokens[:, :, self.prefix:]
            return grid.reshape(grid.shape[0], grid.shape[1], self.side, self.side)
        grid = tokens[:, self.prefix:, :]
        return grid.reshape(grid.shape[0], self.side, self.side, grid.shape[2]).permute(0, 3, 1, 2)

    def describe(self) -> dict[str, Any]:
        return {"prefix_tokens": self.prefix, "grid": [self.side, self.side],
                "layout": "B,C,N" if self.channels_first else "B,N,C"}

    def __repr__(self) -> str:
        return f"TokenGrid(prefix={self.prefix}, side={self.side}{', channels first' if self.channels_first else ''})"


class ChannelsLast:
    """grad-cam ``reshape_transform`` of a channels-last map (B, H, W, C) → (B, C, H, W)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)

    def describe(self) -> dict[str, Any]:
        return {"layout": "B,H,W,C"}

    def __repr__(self) -> str:
        return "ChannelsLast()"


_ONE_D = (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.BatchNorm1d, torch.nn.InstanceNorm1d,
          torch.nn.MaxPool1d, torch.nn.AvgPool1d, torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveMaxPool1d)


def _square_side(n: int) -> int | None:
    if n < 4:
        return None
    side = math.isqrt(n)
    return side if side * side == n else None


def token_grid(layer: str, shape: tuple[int, ...], option: Any, channels_first: bool = False) -> TokenGrid:
    """The reshape of a (B, N, C) output (``channels_first``: (B, C, N)) under ``--reshape_tokens
    option``, or a UsageError."""
    n = int(shape[2] if channels_first else shape[1])
    layout = "(B, C, N) sequence of a 1-D layer" if channels_first else "token sequence (B, N, C)"
    if option == "off":
        raise UsageError(f"--target_layer {layer}: its output has shape {tuple(shape)}, not a 4-D feature map "
                         f"(B, C, H, W), and --reshape_tokens off; choose a convolutional layer or allow the reshape")
    if option == "auto":
        for prefix in (0, 1):
            side = _square_side(n - prefix)
            if side is not None:
                return TokenGrid(prefix, side, channels_first)
        raise UsageError(f"--target_layer {layer}: its output {tuple(shape)} is a {layout} whose length {n} is "
                         f"neither a square nor a square plus a class token; give --reshape_tokens K (the number of "
                         f"leading class/register tokens) or choose another layer")
    side = _square_side(n - int(option))
    if side is None:
        raise UsageError(f"--target_layer {layer}: {n} tokens minus --reshape_tokens {option} leading tokens = "
                         f"{n - int(option)} is not a square grid; check the number of class/register tokens")
    return TokenGrid(int(option), side, channels_first)


# ------------------------------------------------------------------------ layer choice
def is_feature_map(shape: Sequence[int], batch_size: int, input_hw: Sequence[int], min_channels: int = 2) -> bool:
    """Whether an output of ``shape`` is a feature map (B, C, H, W) of the input: one per image, at
    least ``min_channels`` channels, more than one position, and the input's aspect ratio (to one
    position), which rules out 4-D tensors that are not images, such as attention heads (B, heads,
    tokens, dim)."""
    if len(shape) != 4 or shape[0] != batch_size or shape[1] < min_channels:
        return False
    h, w = int(shape[2]), int(shape[3])
    sh, sw = int(input_hw[0]), int(input_hw[1])
    return h * w > 1 and abs(h - w * sh / sw) <= 1


@contextlib.contextmanager
def _frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """No weight gradients while mapping (the input carries the gradient); flags restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def probe_layers(wrapper: CamModel, batch: dict[str, Any], target: str) -> dict[str, dict[str, Any]]:
    """Run one forward and backward of ``batch`` and describe every named module's output:
    ``{name: {"order": when it returned (last call), "calls", "shape" (a tensor output) or
    "kind" (anything else), "grad": whether the target's gradient reached it}}``."""
    info: dict[str, dict[str, Any]] = {}
    counter = [0]
    handles = []

    def hook(name: str):
        def record(module, inputs, output):
            entry = info.setdefault(name, {"calls": 0, "grad": False})
            entry["calls"] += 1
            entry["order"] = counter[0]
            counter[0] += 1
            if isinstance(output, torch.Tensor):
                entry["shape"] = tuple(output.shape)
                entry.pop("kind", None)
                if output.requires_grad:
                    def seen(grad, entry=entry):
                        entry["grad"] = True
                    output.register_hook(seen)
            else:
                entry["kind"] = type(output).__name__
                entry.pop("shape", None)
        return record

    for name, module in wrapper.model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.enable_grad():
            wrapper.batch = batch
            output = wrapper(batch["image"])
            targets = make_targets(batch, target)
            score = sum(t(o) for t, o in zip(targets, output))
            if isinstance(score, torch.Tensor) and score.requires_grad:
                score.backward()
    finally:
        for handle in handles:
            handle.remove()
        wrapper.batch = {}
    return info


def _valid_names(model: torch.nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def choose_target_layer(wrapper: CamModel, batch: dict[str, Any], target: str, method: str,
                        layer: str | None, reshape_option: Any) -> tuple[str, TokenGrid | None, dict[str, Any]]:
    """``(layer name, reshape transform or None, {"auto", "shape", ...})`` for ``--target_layer layer``
    (None: automatic), found with one forward and backward pass of ``batch``. Every problem is one
    UsageError line."""
    model = wrapper.model
    model_name = type(model).__name__
    info = probe_layers(wrapper, batch, target)
    needs_grad = method not in _GRADIENT_FREE
    size = (batch["image"].shape[0], tuple(batch["image"].shape[-2:]))

    def feature_maps(min_channels: int):
        found = [(e["order"], n) for n, e in info.items()
                 if "shape" in e and is_feature_map(e["shape"], *size, min_channels) and e["calls"] == 1]
        return found, [c for c in found if info[c[1]]["grad"]]

    maps, reached = feature_maps(2)
    if layer is None:
        candidates = reached if (reached or needs_grad) else maps
        if not candidates:  # a model without any multi-channel map (a single convolution): its 1-channel map
            maps, reached = feature_maps(1)
            candidates = reached if (reached or needs_grad) else maps
            if candidates:
                logger.warning("no layer of %s outputs a feature map with more than one channel; the CAM uses "
                               "the 1-channel map of %s", model_name, max(candidates)[1])
        if not candidates:
            any_grad = any(e["grad"] for e in info.values())
            why = ("no gradient of the target reaches any layer (does forward() run under torch.no_grad() or detach "
                   "its outputs?)" if needs_grad and not any_grad else
                   f"no module of {model_name} returns a 4-D feature map (B, C, H, W) with C > 1 that the "
                   f"{target} target depends on")
            raise UsageError(f"cannot choose a CAM layer automatically: {why}; name one with --target_layer "
                             f"(a ViT token output works too, see --reshape_tokens)")
        chosen = max(candidates)[1]
        return chosen, None, {"auto": True, "shape": list(info[chosen]["shape"])}
    names = _valid_names(model)
    if not layer.strip():
        layers = [n for _, n in sorted(reached or maps)[-5:]]
        raise UsageError(f"--target_layer {layer!r} is empty: give a module name from model.named_modules() (e.g. "
                         f"{', '.join(layers) or names[-1]}) or leave the option out to choose one automatically")
    if layer not in names:
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        layers = [n for _, n in sorted(reached or maps)[-5:]]
        shown, what = (close, "close names") if close else (layers, "feature-map layers") if layers else \
            (names[-5:], "some valid names")
        raise UsageError(f"--target_layer {layer}: {model_name} has no module of this name; {what}: {', '.join(shown)} "
                         f"({len(names)} modules in all, as listed by model.named_modules())")
    entry = info.get(layer)
    if entry is None:
        raise UsageError(f"--target_layer {layer}: this module does not run in the model's forward pass; choose one "
                         f"that does")
    if "shape" not in entry:
        raise UsageError(f"--target_layer {layer}: its output is a {entry.get('kind')}, not a tensor; choose a module "
                         f"that returns a feature map (B, C, H, W) (e.g. a convolution or a block inside this one)")
    shape = entry["shape"]
    module = dict(model.named_modules())[layer]
    if len(shape) == 4 and is_feature_map(shape, *size, 1):
        grid, found = None, {"auto": False, "shape": list(shape)}
    elif len(shape) == 4 and is_feature_map((shape[0], shape[3], shape[1], shape[2]), *size, 1):
        grid = ChannelsLast()  # (B, H, W, C), e.g. a ConvNeXt/Swin block or a permuted output
        found = {"auto": False, "shape": list(shape), "reshape_tokens": grid.describe()}
    elif len(shape) == 4:
        raise UsageError(f"--target_layer {layer}: its output {tuple(shape)} is not a feature map of the {size[1]} "
                         f"input, neither (B, C, H, W) nor channels-last (B, H, W, C) (e.g. attention weights); choose "
                         f"a layer whose output has the image's aspect ratio")
    elif len(shape) == 3:
        grid = token_grid(layer, shape, reshape_option, channels_first=isinstance(module, _ONE_D))
        found = {"auto": False, "shape": list(shape), "reshape_tokens": grid.describe()}
    else:
        raise UsageError(f"--target_layer {layer}: its output has shape {tuple(shape)}; expected a 4-D feature map "
                         f"(B, C, H, W) or ViT tokens (B, N, C)")
    if needs_grad and not entry["grad"]:
        raise UsageError(f"--target_layer {layer}: the {target} target does not depend on this layer (no gradient "
                         f"reaches it); choose a layer on the path to {'pred_label' if target == 'label' else 'pred_mask'}"
                         f" or leave --target_layer out to choose one automatically")
    if entry["calls"] > 1:
        logger.warning("--target_layer %s runs %d times per forward pass; the CAM uses its first call",
                       layer, entry["calls"])
    return layer, grid, found


# ------------------------------------------------------------------------------- output
def cam_paths(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{sample name: ("cam/<stem>.png", "cam/<stem>_overlay.jpg")}``, ``<stem>`` as the saved mask's
    (``pred/<stem>.png``, :func:`~IMDLBenCo.engine.save_images.prediction_paths`)."""
    out = {}
    prefix = runfolder.PRED_DIR + "/"
    for name, rel in prediction_paths(names).items():
        stem = rel[len(prefix):] if rel.startswith(prefix) else rel
        stem = stem[:-4] if stem.endswith(".png") else stem
        out[name] = (f"{runfolder.CAM_DIR}/{stem}.png", f"{runfolder.CAM_DIR}/{stem}_overlay.jpg")
    return out


def _original_image(batch: dict[str, Any], j: int, size_hw: tuple[int, int]):
    """The sample's image as float RGB in [0, 1] at ``size_hw``: read from its file, or else the
    network input with its padding dropped and its resize undone."""
    import numpy as np
    from PIL import Image

    oh, ow = size_hw
    path = batch["image_path"][j] if "image_path" in batch else None
    if path:
        try:
            from ..datasets.io import load_rgb

            img = load_rgb(str(path))
            if img.size != (ow, oh):
                img = img.resize((ow, oh), Image.BILINEAR)
            return np.asarray(img, dtype=np.float32) / 255.0
        except Exception as err:  # a file changed since it was listed: fall back to the network input
            logger.warning("cam overlay: %s could not be re-read (%s); using the network input", path, err)
    from ..datasets import denormalize

    pixels = denormalize(batch["image"][j].detach().float()).clamp(0, 1)
    pixels = restore_size(pixels, batch["shape"][j], batch["original_shape"][j])
    return pixels.permute(1, 2, 0).cpu().numpy().astype(np.float32)


#: where the CAM predict step puts the heat maps in the outputs it hands to the sinks
CAM_KEY = "cam_maps"


class CamWriter:
    """Sink of the CAM run: each heat map (grey PNG at the original size) and its overlay."""

    def __init__(self, paths: dict[str, tuple[str, str]], out_dir: Path, no_ground_truth: bool,
                 meta: dict[str, str], show_cam_on_image) -> None:
        self.paths, self.out_dir, self.no_ground_truth = paths, out_dir, no_ground_truth
        self.meta, self.show_cam_on_image = meta, show_cam_on_image
        self.records: list[dict[str, Any]] = []

    def update(self, out: dict[str, Any], batch: dict[str, Any]) -> None:
        self.records += _save_batch(batch, out[CAM_KEY], self.paths, self.out_dir, self.no_ground_truth, self.meta,
                                    self.show_cam_on_image)


def _save_batch(batch: dict[str, Any], grey, paths: dict[str, tuple[str, str]], out_dir: Path, no_ground_truth: bool,
                meta: dict[str, str], show_cam_on_image) -> list[dict[str, Any]]:
    from PIL import Image

    records = []
    for j, name in enumerate(names_of(batch)):
        heat = restore_size(torch.from_numpy(grey[j])[None], batch["shape"][j], batch["original_shape"][j])
        lo, hi = float(heat.min()), float(heat.max())
        # grad-cam scales each map over the whole network input: rescale over the image's own region
        heat = (heat - lo) / (hi - lo) if hi > lo else torch.zeros_like(heat)
        pixels = to_uint8(heat)
        cam_rel, overlay_rel = paths[name]
        atomic_write(out_dir / cam_rel, lambda tmp, px=pixels: Image.fromarray(px).save(tmp, format="PNG"),
                     needed=pixels.size)
        base = _original_image(batch, j, pixels.shape)
        overlay = show_cam_on_image(base, pixels.astype("float32") / 255.0, use_rgb=True, image_weight=IMAGE_WEIGHT)
        atomic_write(out_dir / overlay_rel,
                     lambda tmp, px=overlay: Image.fromarray(px).save(tmp, format="JPEG", quality=90),
                     needed=overlay.size)
        mask_path = batch["mask_path"][j] if "mask_path" in batch else None
        records.append({
            "name": name,
            "image_path": batch["image_path"][j] if "image_path" in batch else None,
            "mask_path": None if no_ground_truth else mask_path,
            "label": None if no_ground_truth or "label" not in batch else int(batch["label"][j]),
            "cam_path": cam_rel,
            "overlay_path": overlay_rel,
            **meta,
        })
    return records


# --------------------------------------------------------------------------------- main
def cam_main(argv: Sequence[str] | None = None, *, prog: str = "test_cam.py") -> dict[str, Any]:
    """Run ``test_cam.py`` / ``benco cam`` on ``argv`` (default ``sys.argv[1:]``); returns what
    ``cam.json`` holds: ``{"target_layer", "target_layer_auto", "layer_output_shape",
    "reshape_tokens", "method", "target", ..., "records": [{"name", "cam_path", "overlay_path", ...}]}``.
    ``prog`` names the command in the help text."""
    argv = list(sys.argv[1:] if argv is None else argv)
    opts, rest = parse_cam_options(argv, prog)
    import_modules(opts.imports)
    if opts.help:
        print_help(rest, prog)
    grad_cam = require_grad_cam()
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from .predict import _given, _values, config_from_checkpoint

    # the model, its options and the size come from the checkpoint's training run when not given
    checkpoint = _values(rest, "--checkpoint_path")[-1] if _given(rest, "--checkpoint_path") else None
    base = config_from_checkpoint(checkpoint, rest) if checkpoint and not _given(rest, "--config") else {}
    with eval_session("test_save_images", rest, tensorboard=False, write_config=False, name="test_cam",
                      shared_folder=True, base=base, base_source=f"the checkpoint's training run ({checkpoint})",
                      prog=prog) as s:
        args, runtime = s.args, s.runtime
        if getattr(s.data, "keep_size", False):
            raise UsageError("--sliding_window is not supported for class-activation maps; use --if_resizing or "
                             "--if_padding")
        out_dir = Path(args.output_dir)
        settings = {"target_layer": opts.target_layer, "cam_method": opts.cam_method, "cam_target": opts.cam_target,
                    "reshape_tokens": opts.reshape_tokens}
        if runtime.is_main and not (out_dir / runfolder.CONFIG).exists():
            # a folder of its own gets a config.json; one shared with test_save_images keeps that run's
            s.writer.write_config("test_cam", args, s.model_kwargs, runtime, extra={"cam": settings})
        dataset, no_ground_truth = prediction_dataset(s)
        paths = cam_paths(list(dataset.names))
        order = {n: i for i, n in enumerate(dataset.names)}
        load_checkpoint(args.checkpoint_path, s.model, map_location=runtime.device)
        model = unwrap_model(s.model)
        wrapper = CamModel(model, opts.cam_target, s.call.predict_label)
        # the layer is chosen on the dataset's first sample, on every rank alike (no rank may lack a batch)
        probe = batch_to_device(torch.utils.data.default_collate([dataset[0]]), runtime.device)
        cam_class = getattr(grad_cam, CAM_METHODS[opts.cam_method])
        with evaluation_mode(model, keep_train_mode=s.call.keep_train_mode), _frozen_parameters(model):
            layer_name, reshape, found = choose_target_layer(wrapper, probe, opts.cam_target, opts.cam_method,
                                                             opts.target_layer, opts.reshape_tokens)
        logger.info("CAM: %s of layer %s (%s; output %s%s), target %s", opts.cam_method, layer_name,
                    "chosen automatically: the last 4-D feature map the target depends on" if found["auto"]
                    else "--target_layer", tuple(found["shape"]),
                    f", tokens reshaped by {reshape!r}" if reshape is not None else "", opts.cam_target)
        meta = {"target_layer": layer_name, "method": opts.cam_method, "target": opts.cam_target}
        layer = dict(model.named_modules())[layer_name]
        cam = cam_class(model=wrapper, target_layers=[layer], reshape_transform=reshape)  # sets eval mode
        loader = eval_loader(dataset, args.test_batch_size, s.data, runtime)

        def predict(net: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
            wrapper.batch = batch
            grey = cam(input_tensor=batch["image"], targets=make_targets(batch, opts.cam_target))
            out = dict(wrapper.last_output or {})
            wrapper.batch, wrapper.last_output = {}, None
            out[CAM_KEY] = grey
            return out

        sink = CamWriter(paths, out_dir, no_ground_truth, meta, show_cam_on_image)
        try:
            with _frozen_parameters(model):
                run_inference(model, loader, runtime, s.call, [sink], desc="cam", predict=predict, grad=True)
        finally:
            cam.activations_and_grads.release()
        gathered = gather_records(runtime, sink.records, order)
        result = {
            "script": "test_cam",
            "model": args.model,
            "checkpoint_path": args.checkpoint_path,
            "target_layer": layer_name,
            "target_layer_auto": found["auto"],
            "layer_output_shape": found["shape"],
            "reshape_tokens": found.get("reshape_tokens"),
            "method": opts.cam_method,
            "target": opts.cam_target,
            "image_weight": IMAGE_WEIGHT,
            "args": plain(args),
            "records": gathered,
        }
        if runtime.is_main:
            write_json(out_dir / runfolder.CAM_JSON, result)
            logger.info("saved %d class-activation maps (%s, layer %s, target %s) under %s", len(gathered),
                        opts.cam_method, layer_name, opts.cam_target, out_dir / runfolder.CAM_DIR)
        return result
