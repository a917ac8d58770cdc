"""The setup every script shares: options, process group, model, run folder, writer.

:func:`open_session` is the one way a script starts (training and every evaluation): it parses
the options, joins the process group, claims the output folder (:mod:`.runlock`), builds the
model on its device and opens the run writer, and on the way out (normally or on an error)
closes the writer, releases the folder and leaves the process group.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .arguments import parse_script_args
from .builders import attach_call_hooks, build_model, find_post_function, log_run_header, prepare_model
from .config import CallConfig, DataConfig
from .runtime import Runtime, configure_logging, run_scope, seed_everything, setup_runtime
from .writers import RunWriter

logger = logging.getLogger("IMDLBenCo.engine")

__all__ = ["Session", "open_session", "eval_session"]


@dataclass
class Session:
    """What a script works with: options, process group, model, output folder."""

    script: str
    args: argparse.Namespace
    model_kwargs: dict[str, Any]
    runtime: Runtime
    model: torch.nn.Module
    post_func: Callable | None
    writer: RunWriter
    data: DataConfig
    call: CallConfig
    from_base: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def open_session(script: str, argv: Sequence[str] | None, *, train: bool = False, tensorboard: bool = True,
                 write_config: bool = True, name: str | None = None, shared_folder: bool = False,
                 base: Mapping[str, Any] | None = None, base_source: str = "",
                 args: argparse.Namespace | None = None,
                 model_kwargs: dict[str, Any] | None = None, prog: str | None = None) -> Iterator[Session]:
    """Start ``script`` (see the module docstring) and yield its :class:`Session`.

    ``train``: the same initial weights on every rank and a DDP-wrapped model; ``write_config``
    False: the caller writes ``config.json`` (training, with its own extra keys);
    ``shared_folder``: the script adds files to another run's folder (``benco cam``); ``name``:
    what the log calls the run when it borrows another script's options; ``base``/``base_source``:
    option values below ``--config`` and the command line (e.g. a checkpoint's training run);
    ``args``/``model_kwargs``: already parsed options (then ``argv`` is not read); ``prog``: the
    command named in usage messages (``benco cam``).
    """
    if args is None:
        args, model_kwargs = parse_script_args(script, argv, base=base, base_source=base_source, prog=prog)
    model_kwargs = dict(model_kwargs or {})
    from_base = dict(getattr(args, "_from_base", {}) or {})
    runtime = setup_runtime(args.device)
    with run_scope(runtime), contextlib.ExitStack() as stack:
        configure_logging(runtime)
        log_run_header(runtime, name or script, args.model, model_kwargs)
        if from_base and runtime.is_main:
            logger.info("from %s: %s", base_source or "recorded options",
                        ", ".join(f"{k}={v!r}" for k, v in from_base.items()))
        if runtime.is_main:
            stack.enter_context(_claim(script, args, shared_folder))
        runtime.barrier()  # no rank writes before the folder is claimed (or the claim failed on rank 0)
        # training: the same initial weights on every rank; evaluation: per-rank streams
        seed_everything(args.seed if train else args.seed + runtime.rank)
        call = CallConfig.from_args(args)
        model = attach_call_hooks(build_model(args.model, model_kwargs), call)
        model = prepare_model(model, runtime, train=train,
                              find_unused_parameters=bool(getattr(args, "find_unused_parameters", False)))
        writer = stack.enter_context(RunWriter(runtime, args.output_dir, args.log_dir, tensorboard=tensorboard))
        if write_config:
            writer.write_config(name or script, args, model_kwargs, runtime,
                                extra={"from_checkpoint": from_base} if from_base else None)
        yield Session(script, args, model_kwargs, runtime, model, find_post_function(args.model, model_kwargs),
                      writer, DataConfig.from_args(args), call, from_base)


def _claim(script: str, args: argparse.Namespace, shared: bool):
    from .checkpoint import plain
    from .runlock import claim_run_folder

    return claim_run_folder(args.output_dir, script, plain(args), resume=bool(getattr(args, "resume", "")),
                            overwrite=bool(getattr(args, "overwrite", False)), shared=shared)


#: the name the evaluation scripts use (training calls open_session with train=True)
eval_session = open_session
