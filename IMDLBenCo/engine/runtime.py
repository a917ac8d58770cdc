"""Where a script runs: device, process group, rank, seeds and console logging.

One ``Runtime`` is made per script call by :func:`setup_runtime`. It works the same way under
``python script.py`` (one process) and ``torchrun --nproc_per_node=N script.py`` (``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK`` in the environment): CUDA when present (backend nccl, one GPU
per local rank), otherwise CPU (backend gloo). ``--device`` overrides the automatic choice.

Setup also notes what would make the run slow for reasons outside it (:func:`resource_notes`:
more processes than GPUs or CPU cores, OpenMP threads spinning on a CPU that other processes
keep busy); rank 0 logs each note once (:func:`configure_logging`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from ..errors import UsageError

logger = logging.getLogger("IMDLBenCo.engine")


@dataclass
class Runtime:
    """The device and the process group of this run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    backend: str | None = None
    #: warnings about this machine's resources, logged once by rank 0 (see :func:`resource_notes`)
    notes: list[str] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def barrier(self) -> None:
        if self.distributed:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce_(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """In-place reduction over ranks (no-op in a single process)."""
        if self.distributed:
            ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
            dist.all_reduce(tensor, op=ops[op])
        return tensor

    def close(self) -> None:
        """Wait for the other ranks, so that no rank starts the next script call early.

        The process group itself stays up for later calls in the same process (a script that
        runs test_main then save_images_main): re-creating it on torchrun's store can hang.
        It is destroyed when the interpreter exits.
        """
        self.barrier()

    def fail(self) -> None:
        """This rank is leaving the run on an error: it must not wait for the others (they may
        be waiting in a collective for it). Its process exits without tearing the group down;
        the other ranks' collectives then fail at once (gloo) or torchrun stops them."""
        global _failed
        _failed = True


@contextlib.contextmanager
def run_scope(runtime: Runtime) -> Iterator[Runtime]:
    """The lifetime of one script call on ``runtime``: on success all ranks meet at the end
    (:meth:`Runtime.close`); on an error this rank leaves at once (:meth:`Runtime.fail`), so a
    failing rank never hangs the run."""
    try:
        yield runtime
    except BaseException:
        runtime.fail()
        raise
    runtime.close()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; torchrun sets it, "
                         f"so unset it (or launch with torchrun) and run again") from None


def setup_runtime(device: str = "auto") -> Runtime:
    """Choose the device and join the process group started by ``torchrun`` (if any).

    ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ``"mps"``. Under torchrun each process takes the GPU of its local rank.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    wanted = (device or "auto").lower()
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device} was asked for, but PyTorch sees no CUDA device here; "
                "use --device cpu (or --device auto)"
            )
        if ":" in wanted and world_size == 1:
            dev = torch.device(wanted)
        else:
            dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(wanted)

    runtime = Runtime(device=dev, rank=rank, world_size=world_size, local_rank=local_rank)
    runtime.notes = resource_notes(dev, _env_int("LOCAL_WORLD_SIZE", world_size))
    if world_size > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dist.is_initialized():  # an outer program (a test, a notebook) set it up already
            runtime.backend = dist.get_backend()
        else:
            kwargs = {"device_id": dev} if backend == "nccl" else {}
            dist.init_process_group(backend=backend, init_method="env://", **kwargs)
            atexit.register(_destroy_group)
            runtime.backend = backend
        runtime.distributed = True
        runtime.rank = dist.get_rank()
        runtime.world_size = dist.get_world_size()
    return runtime


_failed = False  # set when a rank leaves a run on an error (see Runtime.fail)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def resource_notes(device: torch.device, local_processes: int, cores: int | None = None,
                   threads: int | None = None, load: float | None = None) -> list[str]:
    """Warnings, one sentence each, when this machine's resources will slow the run down:

    * more processes on this machine (``--nproc_per_node``) than GPUs, or, on the CPU, than cores;
    * on the CPU, more of PyTorch's OpenMP threads (per process × processes) than cores, or a
      machine already busier than its cores (the 1-minute load average) while PyTorch's threads
      wait actively. OpenMP threads then spin against other processes, and small operations
      (sliding-window tiles, small batches) became 5 to 40 times slower in our measurements
      (``benchmarks/bench_predict.py``).

    ``cores``, ``threads`` and ``load`` default to this machine's values (tests pass their own).
    """
    notes: list[str] = []
    local_processes = max(1, int(local_processes))
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if gpus and local_processes > gpus:
            notes.append(f"{local_processes} processes on this machine share {gpus} GPU(s): each holds a copy of "
                         f"the model and they take turns on the same card; use --nproc_per_node {gpus} "
                         f"(one process per GPU)")
        return notes
    if device.type != "cpu":
        return notes
    cores = usable_cores() if cores is None else max(1, int(cores))
    threads = torch.get_num_threads() if threads is None else max(1, int(threads))
    if local_processes > cores:
        notes.append(f"{local_processes} processes on this machine's {cores} CPU core(s): they compete for the "
                     f"cores and each holds a copy of the model; use --nproc_per_node {cores} or fewer (on a CPU "
                     f"one process with {cores} threads is usually fastest)")
    passive = os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive"
    if threads > 1 and not passive:
        if load is None:
            try:
                load = os.getloadavg()[0]
            except (AttributeError, OSError):
                load = 0.0
        if threads * local_processes > cores and local_processes <= cores:
            notes.append(f"{threads} PyTorch threads in each of {local_processes} processes on {cores} CPU core(s): "
                         f"the threads spin while they wait for each other; start the run with "
                         f"OMP_NUM_THREADS={max(1, cores // local_processes)}")
        elif load > cores:
            notes.append(f"this machine is busy (load average {load:.1f} on {cores} CPU core(s)): PyTorch's "
                         f"{threads} threads spin while they wait for each other and can make this run several "
                         f"times slower; start it with OMP_WAIT_POLICY=PASSIVE (or OMP_NUM_THREADS=1)")
    return notes


_logged_notes: set = set()  # notes logged by this process already (benco demo sets up several runs)


def _destroy_group() -> None:
    # after a failure the peers may be gone or stuck: tearing the group down could block
    if dist.is_initialized() and not _failed:
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices). cuDNN stays enabled (speed)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # numpy is a dependency, but seeding must not fail without it
        pass
    torch.manual_seed(seed)


def configure_logging(runtime: Runtime) -> None:
    """Console logging for script runs: INFO on rank 0, warnings only elsewhere.

    Leaves an already configured root logger alone (a host program decides then).
    """
    root = logging.getLogger()
    if not root.handlers:  # otherwise a host program (benco demo, a notebook, pytest) chose handlers and levels
        _add_console_handler(runtime, root)
    _log_notes(runtime)


def _log_notes(runtime: Runtime) -> None:
    if not runtime.is_main:
        return
    for note in runtime.notes:
        if note not in _logged_notes:
            _logged_notes.add(note)
            logger.warning("warning: %s", note)


def _add_console_handler(runtime: Runtime, root: logging.Logger) -> None:
    level = logging.INFO if runtime.is_main else logging.WARNING
    handler = logging.StreamHandler(sys.stdout)
    prefix = f"[rank {runtime.rank}] " if runtime.distributed and not runtime.is_main else ""
    handler.setFormatter(logging.Formatter(f"[%(asctime)s] {prefix}%(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("IMDLBenCo").setLevel(level)
