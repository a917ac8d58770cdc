"""The parsers of the five scripts, built from the option table (:mod:`IMDLBenCo.runoptions`).

Each script's parser holds the options the table gives it, in the table's groups; the model's
own constructor options are added on top by :func:`IMDLBenCo.options.parse_args_with_model`.
Names follow IMDL-BenCo 0.1.45's scripts. Nothing here defines an option: add one to
``runoptions.OPTIONS``.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import runoptions
from ..runoptions import SCRIPTS, Option

__all__ = ["SCRIPTS", "SLIDING_SCRIPTS", "build_script_parser", "parse_script_args", "validate_args"]

#: scripts that offer --sliding_window (inference on images of any size)
SLIDING_SCRIPTS = tuple(sorted(runoptions.SLIDING))

_DESCRIPTIONS = {
    "train": "Train a model, test it every --test_period epochs, write checkpoints and logs.",
    "test": "Test every checkpoint-<epoch>.pth of a folder on every set of a test_datasets.json.",
    "test_robust": "Test one checkpoint under a grid of attacks (blur, noise, JPEG, ...).",
    "test_save_images": "Save every predicted mask (PNG, original size) and label (JSON).",
    "test_complexity": "Count parameters, FLOPs and MACs of a model.",
}

logger = logging.getLogger("IMDLBenCo.engine")


def _add(group: argparse._ArgumentGroup, opt: Option, script: str) -> None:
    help_text = opt.help_for(script).replace("%", "%%")
    default = opt.default_for(script)
    if opt.switch:
        group.add_argument(f"--{opt.name}", dest=opt.name, action="store_true", default=default, help=help_text)
        if opt.negative:
            group.add_argument(f"--{opt.negative}", dest=opt.name, action="store_false",
                               help=f"turn --{opt.name} off")
        return
    kwargs: dict[str, Any] = {"default": default, "help": help_text, "type": opt.type}
    if opt.choices is not None:
        kwargs["choices"] = opt.choices
    if opt.metavar:
        kwargs["metavar"] = opt.metavar
    group.add_argument(f"--{opt.name}", **kwargs)


def build_script_parser(script: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``script`` (one of ``SCRIPTS``), without ``-h`` (added by the model stage);
    ``prog``: the command's name in messages when another command borrows the options."""
    if script not in SCRIPTS:
        raise ValueError(f"unknown script {script!r}; expected one of {SCRIPTS}")
    p = argparse.ArgumentParser(prog=prog or f"{script}.py", description=_DESCRIPTIONS[script], add_help=False)
    options = runoptions.options_for(script)
    for name in runoptions.GROUPS:
        members = [o for o in options if o.group == name]
        if members:
            group = p.add_argument_group(name)
            for opt in members:
                _add(group, opt, script)
    return p


def parse_script_args(script: str, argv: Sequence[str] | None = None,
                      base: Mapping[str, Any] | None = None, base_source: str = "",
                      prog: str | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse ``argv`` (default ``sys.argv[1:]``) for ``script``: (args, model kwargs).

    ``base``: option values (the script's and the model's) that a ``--config`` file and the
    command line override, e.g. those a checkpoint's training run recorded; ``base_source``
    names where they come from, for the log."""
    from ..options import parse_args_with_model

    parser = build_script_parser(script, prog)
    # required options are checked here, after parsing, so that `--help` works without them
    args, model_kwargs = parse_args_with_model(parser, argv, base=base, base_source=base_source,
                                               script_options={o.name: o for o in runoptions.options_for(script)})
    for opt in runoptions.options_for(script):
        if script in opt.required and not getattr(args, opt.name):
            parser.error(f"the option --{opt.name} is required")
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


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def validate_args(script: str, args: argparse.Namespace, error: Callable[[str], Any]) -> None:
    """Check every option of ``script`` before any work; ``error(message)`` is called (argparse's
    ``parser.error``: usage, message, exit status 2) for the first bad one, naming the option, the
    value and what it accepts. Combinations that work but rarely mean what was meant are logged."""
    for opt in runoptions.options_for(script):
        message = runoptions.check_value(opt, getattr(args, opt.name, None))
        if message:
            error(message)
    message = runoptions.cross_check(script, vars(args))
    if message:
        error(message)
    for warning in runoptions.cross_warnings(script, vars(args)):
        logger.warning("%s", warning)
    device = str(args.device).lower()
    if not _DEVICE.match(device):
        error(f"--device {args.device}: unknown device; use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") or device == "mps":
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            error(f"--device {args.device}: PyTorch sees no CUDA device here; use --device cpu (or auto)")
        if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
            error(f"--device {args.device}: there are only {torch.cuda.device_count()} CUDA device(s) here")
        if (device.startswith("cuda") and args.amp_dtype == "bfloat16"
                and not args.if_not_amp and not torch.cuda.is_bf16_supported()):
            error(f"--amp_dtype bfloat16: {torch.cuda.get_device_name()} has no bfloat16 support; use --amp_dtype "
                  f"float16 (the default) or --if_not_amp")
        if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            error(f"--device {args.device}: the Apple MPS device is not available here; use --device cpu (or auto)")
