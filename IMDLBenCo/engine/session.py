"""Setup shared by the evaluation scripts (test, robustness, save-images, complexity)."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch

from .arguments import parse_script_args
from .builders import attach_call_hooks, build_model, find_post_function, log_run_header, prepare_model
from .config import CallConfig, DataConfig
from .runtime import Runtime, configure_logging, run_scope, seed_everything, setup_runtime
from .writers import RunWriter


@dataclass
class Session:
    """What an evaluation script works with: options, process group, model, output folder."""

    script: str
    args: argparse.Namespace
    model_kwargs: Dict[str, Any]
    runtime: Runtime
    model: torch.nn.Module
    post_func: Optional[Callable]
    writer: RunWriter
    data: DataConfig
    call: CallConfig


@contextlib.contextmanager
def eval_session(script: str, argv: Optional[Sequence[str]], tensorboard: bool = True,
                 device: Optional[str] = None, write_config: bool = True,
                 name: Optional[str] = None) -> Iterator[Session]:
    """Parse ``argv`` for ``script``, join the process group, build the model on its device,
    open the run folder and write ``config.json`` (unless ``write_config`` is False: a caller that
    shares another script's folder, such as ``benco cam``, writes its own); leave the process
    group on exit. ``name``: what the log calls the run when it borrows ``script``'s options
    (``benco cam`` parses test_save_images.py's)."""
    args, model_kwargs = parse_script_args(script, argv)
    runtime = setup_runtime(device or args.device)
    with run_scope(runtime):
        configure_logging(runtime)
        log_run_header(runtime, name or script, args.model, model_kwargs)
        seed_everything(args.seed + runtime.rank)
        call = CallConfig.from_args(args)
        model = prepare_model(attach_call_hooks(build_model(args.model, model_kwargs), call), runtime, train=False)
        writer = RunWriter(runtime, args.output_dir, args.log_dir, tensorboard=tensorboard)
        if write_config:
            writer.write_config(script, args, model_kwargs, runtime)
        yield Session(script, args, model_kwargs, runtime, model, find_post_function(args.model, model_kwargs), writer,
                      DataConfig.from_args(args), call)
        writer.close()
