"""Helpers shared by the zoo tests: build on the meta device, forward contract checks, --help text."""

from __future__ import annotations

import argparse
import contextlib
import io

import torch


def build_meta(factory, **kwargs):
    """Build a model on the meta device (no memory, no init cost) for key/shape/param checks."""
    with torch.device("meta"):
        return factory(**kwargs)


def shapes_of(model) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def check_output_contract(out: dict, batch_size: int, size, want_label: bool = False) -> None:
    """The model output dict of ARCHITECTURE.md, for a training forward."""
    assert set(out) >= {"backward_loss", "pred_mask", "pred_label", "visual_loss", "visual_image"}
    loss = out["backward_loss"]
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and torch.isfinite(loss)
    pm = out["pred_mask"]
    assert pm.shape == (batch_size, 1, *size), pm.shape
    assert torch.isfinite(pm).all() and pm.min() >= 0 and pm.max() <= 1
    for v in out["visual_loss"].values():
        assert v.ndim == 0 and torch.isfinite(v)
    for v in out["visual_image"].values():
        assert v.ndim == 4 and v.shape[0] == batch_size
    if want_label:
        pl = out["pred_label"]
        assert pl is not None and pl.shape == (batch_size,) and pl.min() >= 0 and pl.max() <= 1
    else:
        assert out["pred_label"] is None


def train_help(model_name: str) -> str:
    """``--help`` of the training entry (``IMDLBenCo.engine.train_main``; a minimal script parser
    through ``parse_args_with_model`` where the engine is not available), as text."""
    try:
        from IMDLBenCo.engine import train_main
    except ImportError:
        train_main = None
    if train_main is not None:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                train_main(["--model", model_name, "--help"])
            except SystemExit as err:
                assert err.code == 0
        return buf.getvalue()
    from IMDLBenCo.options import parse_args_with_model

    parser = argparse.ArgumentParser(prog="train.py", add_help=False)
    parser.add_argument("--model", type=str, default=None)
    parser.add_argument("--image_size", type=int, default=512)
    parser.add_argument("--if_predict_label", action="store_true")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            parse_args_with_model(parser, ["--model", model_name, "--help"])
        except SystemExit as err:
            assert err.code == 0
    return buf.getvalue()


def parse_model_kwargs(model_name: str, argv: list[str]) -> dict | None:
    """The model kwargs the minimal training entry gets for ``argv``."""
    from IMDLBenCo.options import parse_args_with_model

    parser = argparse.ArgumentParser(prog="train.py", add_help=False)
    parser.add_argument("--model", type=str, default=None)
    parser.add_argument("--image_size", type=int, default=512)
    _, kwargs = parse_args_with_model(parser, ["--model", model_name, *argv])
    return kwargs
