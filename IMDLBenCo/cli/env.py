"""``benco env``: versions, platform and compute devices, for bug reports."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("env", help="print versions, platform and devices (paste this into bug reports)")
    p.set_defaults(run=run)


def _version_of(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # not installed, or installed but broken: say which, rather than fail
        if isinstance(err, ModuleNotFoundError) and err.name == module:
            return "not installed"
        return f"import failed ({type(err).__name__}: {err})"
    return str(getattr(mod, "__version__", "unknown"))


def collect() -> list[tuple[str, str]]:
    from ..version import __version__

    rows: list[tuple[str, str]] = [
        ("IMDLBenCo version", __version__),
        ("Platform", platform.platform()),
        ("Python version", sys.version.split()[0]),
        ("PyTorch version", _version_of("torch")),
        ("Torchvision version", _version_of("torchvision")),
        ("timm version", _version_of("timm")),
        ("NumPy version", _version_of("numpy")),
        ("Pillow version", _version_of("PIL")),
    ]
    try:
        import torch

        rows.append(("CPU threads", str(torch.get_num_threads())))
        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            rows.append(("CUDA devices", str(n)))
            for i in range(n):
                total = torch.cuda.get_device_properties(i).total_memory / 2**30
                rows.append((f"GPU {i}", f"{torch.cuda.get_device_name(i)}, {total:.1f} GiB"))
            rows.append(("CUDA version", str(torch.version.cuda)))
        else:
            rows.append(("CUDA devices", "none (training and testing run on the CPU with the gloo backend)"))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            rows.append(("MPS", "available"))
        rows.append(("Distributed backends", ", ".join(
            b for b, ok in (("gloo", torch.distributed.is_gloo_available()), ("nccl", torch.distributed.is_nccl_available())) if ok
        ) or "none"))
    except ImportError:
        pass
    return rows


def run(args: argparse.Namespace) -> int:
    print()
    for key, value in collect():
        print(f"- {key}: {value}")
    print()
    return 0
