"""The command-line options of the five scripts, built from shared groups.

Each script's parser is made of the groups it needs (model, data, runtime, ...), so an option
has one definition everywhere. The model's own constructor options are added on top by
:func:`IMDLBenCo.options.parse_args_with_model`. Names follow IMDL-BenCo (inventory §5).
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

SCRIPTS = ("train", "test", "test_robust", "test_save_images", "test_complexity")
#: scripts that offer --sliding_window (inference on images of any size)
SLIDING_SCRIPTS = ("test", "test_save_images")

_DESCRIPTIONS = {
    "train": "Train a model, test it every --test_period epochs, write checkpoints and logs.",
    "test": "Test every checkpoint-<epoch>.pth of a folder on every set of a test_datasets.json.",
    "test_robust": "Test one checkpoint under a grid of attacks (blur, noise, JPEG, ...).",
    "test_save_images": "Save every predicted mask (PNG, original size) and label (JSON).",
    "test_complexity": "Count parameters, FLOPs and MACs of a model.",
}


def _add_model_group(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, type=str, help="registered model name (MODELS), e.g. MyModel")
    g.add_argument("--if_predict_label", action="store_true",
                   help="ask the model for an image-level label (passed to its __init__ if it has that "
                        "parameter, and to forward() as if_predict_label)")
    g.add_argument("--no_model_eval", action="store_true",
                   help="keep the model in train mode while testing (batch statistics; MVSS-Net does this)")
    g.add_argument("--label_from_mask", choices=("max", "topk"), default=None,
                   help="give every image a pred_label read from pred_mask: its highest pixel (max) or the mean "
                        "of its --label_topk highest pixels (topk), so image-level metrics exist for a "
                        "localisation-only model (replaces a label the model gives)")
    g.add_argument("--label_topk", type=int, default=100, help="pixels averaged by --label_from_mask topk (default 100)")


def _add_input_group(p: argparse.ArgumentParser, sliding: bool = False) -> None:
    g = p.add_argument_group("input size")
    g.add_argument("--image_size", type=int, default=512, help="side S of the S×S network input (default 512)")
    g.add_argument("--if_padding", action="store_true", help="zero-pad images to S×S at the top-left")
    g.add_argument("--if_resizing", action="store_true", help="resize images to S×S")
    g.add_argument("--edge_mask_width", type=int, default=None,
                   help="also give the model an edge_mask: the band around the mask's boundary, found with "
                        "a cross kernel of this odd size at the image's resolution (IML-ViT and MVSS-Net use 7)")
    if sliding:
        g.add_argument("--sliding_window", action="store_true",
                       help="keep each image at its own size and predict it with overlapping S×S tiles, blended "
                            "(a smaller image is one zero-padded tile, as --if_padding); instead of "
                            "--if_padding/--if_resizing")
        g.add_argument("--window_overlap", type=float, default=0.25,
                       help="fraction of a tile shared with its neighbour in --sliding_window (default 0.25)")


def _add_runtime_group(p: argparse.ArgumentParser, output_default: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--config", default=None, metavar="FILE.yaml",
                   help="read options (the script's and the model's, e.g. 'lr: 1e-4', 'model: IML_ViT') from a "
                        "YAML or JSON file; flags on the command line override it; config.json records the result")
    g.add_argument("--output_dir", default=output_default, help=f"folder for results (default {output_default})")
    g.add_argument("--log_dir", default=None, help="TensorBoard folder (default: --output_dir)")
    g.add_argument("--device", default="auto",
                   help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N, mps")
    g.add_argument("--num_workers", type=int, default=1, help="data loader worker processes per rank")
    g.add_argument("--skip_data_check", action="store_true",
                   help="do not check the datasets' files (existence, format, image/mask sizes) before the run")
    g.add_argument("--seed", type=int, default=42, help="random seed (each rank adds its rank)")
    g.add_argument("--pin_mem", dest="pin_mem", action="store_true", default=True,
                   help="pin loader memory (CUDA only; default on)")
    g.add_argument("--no_pin_mem", dest="pin_mem", action="store_false")
    g.add_argument("--if_not_amp", action="store_true",
                   help="turn automatic mixed precision off (AMP is used on CUDA only)")
    g.add_argument("--amp_dtype", choices=("float16", "bfloat16"), default="float16",
                   help="precision of AMP on CUDA: float16 (IMDL-BenCo's; with a gradient scaler) or bfloat16 "
                        "(Ampere and later; no scaler needed)")
    # accepted for compatibility with IMDL-BenCo launchers; torchrun's environment decides
    ignored = "accepted for IMDL-BenCo launchers and ignored: torchrun's environment decides"
    g.add_argument("--world_size", type=int, default=1, help=ignored)
    g.add_argument("--local_rank", type=int, default=-1, help=ignored)
    g.add_argument("--dist_url", default="env://", help=ignored)
    g.add_argument("--dist_on_itp", action="store_true", help=ignored)


def _add_train_group(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--data_path", default=None,
                   help="training set: ManiDataset folder, JsonDataset file or BalancedDataset JSON")
    g.add_argument("--test_data_path", default=None,
                   help="test set(s): a ManiDataset folder, a JsonDataset file or a test_datasets.json")
    g.add_argument("--test_data_json", default=None, help="same as --test_data_path (a test_datasets.json)")
    g.add_argument("--batch_size", type=int, default=1, help="samples per rank per step (default 1)")
    g.add_argument("--test_batch_size", type=int, default=2, help="samples per rank per test step (default 2)")
    g.add_argument("--epochs", type=int, default=200)
    g.add_argument("--start_epoch", type=int, default=0, help="first epoch (set by --resume)")
    g.add_argument("--lr", type=float, default=None, help="learning rate; default --blr × effective batch / 256")
    g.add_argument("--blr", type=float, default=1e-3, help="base learning rate for an effective batch of 256")
    g.add_argument("--min_lr", type=float, default=0.0, help="floor of the cosine schedule")
    g.add_argument("--weight_decay", type=float, default=0.05, help="AdamW weight decay (not on norms/biases)")
    g.add_argument("--warmup_epochs", type=float, default=4, help="linear warm-up length in epochs")
    g.add_argument("--accum_iter", type=int, default=16, help="steps of gradient accumulation per update")
    g.add_argument("--clip_grad", type=float, default=None, help="clip the gradient norm to this value")
    g.add_argument("--test_period", type=int, default=4, help="test every N epochs (and after the last)")
    g.add_argument("--save_period", type=int, default=0,
                   help="write checkpoint-<epoch>.pth every N epochs; 0 (default): on test epochs. "
                        "The last epoch is always written")
    g.add_argument("--best_metric", default=None,
                   help="metric (mean over test sets) that picks checkpoint-best.pth; "
                        "default: the first metric of the first evaluator")
    g.add_argument("--best_metric_mode", choices=("max", "min"), default="max")
    g.add_argument("--log_per_epoch_count", type=int, default=20, help="logged steps per epoch")
    g.add_argument("--resume", default="", help="checkpoint to continue from ('auto': newest in --output_dir)")
    g.add_argument("--find_unused_parameters", action="store_true", help="DDP find_unused_parameters")
    g.add_argument("--skip_nonfinite_loss", action="store_true",
                   help="skip a step whose loss is NaN/inf instead of stopping the run")


def build_script_parser(script: str) -> argparse.ArgumentParser:
    """The parser of ``script`` (one of ``SCRIPTS``), without ``-h`` (added by the model stage)."""
    if script not in SCRIPTS:
        raise ValueError(f"unknown script {script!r}; expected one of {SCRIPTS}")
    p = argparse.ArgumentParser(prog=f"{script}.py", description=_DESCRIPTIONS[script], add_help=False)
    _add_model_group(p)
    _add_input_group(p, sliding=script in SLIDING_SCRIPTS)
    if script == "train":
        _add_train_group(p)
        _add_runtime_group(p, "./output_dir")
        return p
    g = p.add_argument_group("data")
    if script == "test":
        g.add_argument("--test_data_json", default=None,
                       help="test_datasets.json ({name: path}) or a single dataset path")
        g.add_argument("--test_data_path", default=None, help="same as --test_data_json")
        g.add_argument("--checkpoint_path", default=None,
                       help="folder of checkpoint-<epoch>.pth files (or one checkpoint file)")
    elif script in ("test_robust", "test_save_images"):
        g.add_argument("--test_data_path", default=None, help="dataset (ManiDataset folder, JsonDataset file; for saving "
                                          "also a plain folder of images)")
        g.add_argument("--test_data_json", default=None, help="same as --test_data_path")
        g.add_argument("--checkpoint_path", default=None, help="one checkpoint file (.pth)")
    else:  # complexity
        g.add_argument("--test_data_path", default=None,
                       help="optional dataset whose first sample is measured (default: a synthetic one)")
    g.add_argument("--test_batch_size", type=int, default=1 if script == "test_complexity" else 2)
    _add_runtime_group(p, {"test": "./eval_dir", "test_robust": "./eval_robust_dir",
                           "test_save_images": "./save_img_dir",
                           "test_complexity": "./complexity_dir"}[script])
    return p


_REQUIRED = {
    "train": ("model", "data_path"),
    "test": ("model", "checkpoint_path"),
    "test_robust": ("model", "checkpoint_path"),
    "test_save_images": ("model", "checkpoint_path"),
    "test_complexity": ("model",),
}


def parse_script_args(script: str, argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, Dict[str, Any]]:
    """Parse ``argv`` (default ``sys.argv[1:]``) for ``script``: (args, model kwargs)."""
    from ..options import parse_args_with_model

    parser = build_script_parser(script)
    # required options are checked here, after parsing, so that `--help` works without them
    args, model_kwargs = parse_args_with_model(parser, argv)
    for name in _REQUIRED[script]:
        if not getattr(args, name):
            parser.error(f"the option --{name} is required")
    sliding = bool(getattr(args, "sliding_window", False))
    if int(args.if_padding) + int(args.if_resizing) + int(sliding) != 1:
        if script in SLIDING_SCRIPTS:
            parser.error("give exactly one of --if_padding (zero-pad to S×S), --if_resizing (resize to S×S) or "
                         "--sliding_window (S×S tiles over the image at its own size)")
        parser.error("give exactly one of --if_padding (zero-pad to S×S) or --if_resizing (resize to S×S)")
    if args.log_dir is None:
        args.log_dir = args.output_dir
    if script in ("test", "test_robust", "test_save_images"):
        path = args.test_data_json or args.test_data_path
        if not path:
            parser.error("give the test data with --test_data_path (or --test_data_json)")
        args.test_data_json = args.test_data_path = path
    if script == "train":
        args.test_data_path = args.test_data_path or args.test_data_json
    validate_args(script, args, parser.error)
    return args, model_kwargs


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: (option, rule, text of the accepted range) checked by validate_args; the rule gets the value
_RULES = {
    "image_size": (lambda v: v >= 1, "a positive number of pixels"),
    "num_workers": (lambda v: v >= 0, "0 (load in the main process) or more"),
    "test_batch_size": (lambda v: v >= 1, "1 or more"),
    "batch_size": (lambda v: v >= 1, "1 or more"),
    "epochs": (lambda v: v >= 1, "1 or more"),
    "accum_iter": (lambda v: v >= 1, "1 or more"),
    "test_period": (lambda v: v >= 1, "1 or more"),
    "start_epoch": (lambda v: v >= 0, "0 or more"),
    "save_period": (lambda v: v >= 0, "0 (on test epochs) or a positive number of epochs"),
    "log_per_epoch_count": (lambda v: v >= 1, "1 or more"),
    "lr": (lambda v: v is None or (_finite(v) and v > 0), "a positive finite number (or leave it out to use --blr)"),
    "blr": (lambda v: _finite(v) and v > 0, "a positive finite number"),
    "min_lr": (lambda v: _finite(v) and v >= 0, "0 or a positive finite number"),
    "weight_decay": (lambda v: _finite(v) and v >= 0, "0 or a positive finite number"),
    "warmup_epochs": (lambda v: _finite(v) and v >= 0, "0 or a positive finite number of epochs"),
    "clip_grad": (lambda v: v is None or (_finite(v) and v > 0), "a positive finite gradient norm (leave it out for no clipping)"),
    "edge_mask_width": (lambda v: v is None or (v >= 3 and v % 2 == 1), "an odd number of pixels >= 3 (7 is usual)"),
    "label_topk": (lambda v: v >= 1, "1 or more pixels"),
    "window_overlap": (lambda v: _finite(v) and 0 <= v < 1, "at least 0 and below 1 (0.25: a quarter of a tile)"),
}

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def validate_args(script: str, args: argparse.Namespace, error: Callable[[str], Any]) -> None:
    """Check every numeric and device option of ``script`` before any work; ``error(message)``
    is called (argparse's ``parser.error``: usage, message, exit status 2) for the first bad one,
    naming the option, the value and what it accepts."""
    for name, (ok, accepted) in _RULES.items():
        if not hasattr(args, name):
            continue
        value = getattr(args, name)
        if value is not None and isinstance(value, float) and not math.isfinite(value):
            error(f"--{name} {value}: must be {accepted}")
        if not ok(value):
            error(f"--{name} {value}: must be {accepted}")
    if script == "train" and args.lr is not None and args.min_lr > args.lr:
        error(f"--min_lr {args.min_lr} is above --lr {args.lr}: the schedule would raise the learning rate "
              f"while it should decay; give --min_lr at most --lr")
    device = str(args.device).lower()
    if not _DEVICE.match(device):
        error(f"--device {args.device}: unknown device; use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") or device == "mps":
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            error(f"--device {args.device}: PyTorch sees no CUDA device here; use --device cpu (or auto)")
        if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
            error(f"--device {args.device}: there are only {torch.cuda.device_count()} CUDA device(s) here")
        if (device.startswith("cuda") and getattr(args, "amp_dtype", "float16") == "bfloat16"
                and not getattr(args, "if_not_amp", False) and not torch.cuda.is_bf16_supported()):
            error(f"--amp_dtype bfloat16: {torch.cuda.get_device_name()} has no bfloat16 support; use --amp_dtype "
                  f"float16 (the default) or --if_not_amp")
        if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            error(f"--device {args.device}: the Apple MPS device is not available here; use --device cpu (or auto)")
