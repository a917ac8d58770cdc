"""Running cells: one process per stage (python, or torchrun for several processes / nodes).

:func:`run_cell` is what one cell does wherever it runs (this machine, or a Slurm job through
submitit): take the model's training lock, train when the model's training is not finished
(resuming an interrupted one, ``--resume auto``), then test the cell. Each stage is a child
process (``python -m IMDLBenCo.bench.cell``) whose output goes to a log file; a failure is
reported as the log's error line. The cells of one model share its training: the first cell
trains it under a file lock, the others then find it finished.

:class:`LocalExecutor` runs cells one after the other here; :class:`SubmititExecutor` submits
each cell as one job of the cluster's scheduler (``slurm``), or to submitit's local executor
(``submitit-local``: the same code path on one machine, used by the tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["run_cell", "launch_command", "failure_line", "LocalExecutor", "SubmititExecutor", "SlurmOptions"]

from .plan import BEST_CHECKPOINT, RESULTS, TRAIN_PLAN
from .plan import read_json as _read_json


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (fcntl; a no-op where the file system or OS has none)."""
    try:
        import fcntl
    except ImportError:  # Windows: cells run one at a time there anyway
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network mounts): Slurm dependencies order them
            pass
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)


def launch_command(spec_path: Path, stage: str, nproc: int, nnodes: int = 1, node_rank: int = 0,
                   master: str | None = None, port: int = 29500, fresh: bool = False) -> list[str]:
    """The command of one stage: plain python for one process, torchrun otherwise."""
    module = ["-m", "IMDLBenCo.bench.cell", str(spec_path), "--stage", stage] + (["--fresh"] if fresh else [])
    if nproc <= 1 and nnodes <= 1:
        return [sys.executable, *module]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes <= 1:
        cmd += ["--standalone"]
    else:  # the way train.py runs on several nodes: one torchrun per node, rendezvous at the first
        cmd += [f"--nnodes={nnodes}", f"--node_rank={node_rank}", f"--master_addr={master}", f"--master_port={port}"]
    return cmd + module


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the stage gets SIGTERM when benco bench dies (a kill must not leave it running)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_ERROR = re.compile(r"^(error|\w*Error|Exception|RuntimeError|usage:|\S+\.py: error:)", re.IGNORECASE)


def failure_line(log: Path, limit: int = 300) -> str:
    """The line of a failed stage's log that says what went wrong (the script's own message, not
    torchrun's trailer)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {log})"
    text = text.split("torch.distributed.elastic.multiprocessing.errors.ChildFailedError", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    chosen = ""
    for line in reversed(lines):
        if _ERROR.match(line) and "IMDLBENCO_DEBUG" not in line:
            chosen = line
            break
    if not chosen and lines:
        chosen = lines[-1]
    return chosen if len(chosen) <= limit else chosen[: limit - 3] + "..."


def _run_stage(cmd: list[str], log: Path, env: dict[str, str], timeout_s: float | None) -> str | None:
    """Run one stage, output to ``log``; None on success, else the failure line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                                   preexec_fn=preexec)  # noqa: PLW1509 - only prctl, no locks
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            return f"stopped after the time limit of {timeout_s:.0f} s (log: {log})"
        except BaseException:
            process.terminate()
            raise
    if code == 0:
        return None
    return f"{failure_line(log)} (exit status {code}; log: {log})"


def _train_done(train: dict[str, Any]) -> bool:
    marker = _read_json(Path(train["marker"]))
    return (isinstance(marker, dict) and marker.get("provenance") == train["provenance"]
            and Path(train["folder"], BEST_CHECKPOINT).is_file())


def run_cell(spec_path: str, nproc: int = 1, timeout_s: float | None = None,
             cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the cell of ``spec_path`` (its cell.json): train its model if needed, then test it.

    ``cluster``: ``{"nnodes", "node_rank", "master", "port"}`` when the cell spans several nodes
    (one call per node; only node 0 writes the training's bookkeeping). Returns
    ``{"status": "done"|"failed", "error", "trained", "wall_time_s", "log"}``.
    """
    started = time.time()
    spec_file = Path(spec_path)
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    folder = Path(spec["folder"])
    cluster = cluster or {}
    nnodes, node_rank = int(cluster.get("nnodes", 1)), int(cluster.get("node_rank", 0))
    launch = {"nproc": nproc, "nnodes": nnodes, "node_rank": node_rank, "master": cluster.get("master"),
              "port": int(cluster.get("port", 29500))}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*spec.get("sys_path", []), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("PYTHONUNBUFFERED", "1")
    trained = False
    train = spec.get("train")
    if train:
        model_folder = Path(train["folder"]).parent
        lock = file_lock(model_folder / ".train.lock") if nnodes == 1 else contextlib.nullcontext()
        with lock:
            if not _train_done(train):
                plan_file = model_folder / TRAIN_PLAN
                fresh = bool(train.get("fresh"))  # decided with the plan: the same on every node
                if node_rank == 0:
                    plan_file.parent.mkdir(parents=True, exist_ok=True)
                    plan_file.write_text(json.dumps({"provenance": train["provenance"]}) + "\n", encoding="utf-8")
                error = _run_stage(launch_command(spec_file, "train", fresh=fresh, **launch),
                                   model_folder / ("train.log" if node_rank == 0 else f"train.node{node_rank}.log"),
                                   env, timeout_s)
                if error:
                    return {"status": "failed", "error": f"training failed: {error}", "trained": False,
                            "wall_time_s": round(time.time() - started, 3)}
                trained = True
    if node_rank == 0:
        with contextlib.suppress(OSError):
            (folder / RESULTS).unlink()  # written again at the end: a stale one must not look done
    log = folder / ("bench.log" if node_rank == 0 else f"bench.node{node_rank}.log")
    left = None if timeout_s is None else max(1.0, timeout_s - (time.time() - started))
    error = _run_stage(launch_command(spec_file, "test", **launch), log, env, left)
    status = "failed" if error else "done"
    return {"status": status, "error": error, "trained": trained, "wall_time_s": round(time.time() - started, 3),
            "log": str(log)}


# --------------------------------------------------------------------------------------------- executors


class LocalExecutor:
    """Cells one after another on this machine (each cell's stages under torchrun when ``nproc`` > 1)."""

    name = "local"

    def __init__(self, nproc: int = 1, timeout_s: float | None = None) -> None:
        self.nproc, self.timeout_s = nproc, timeout_s
        self.failed_training: dict[str, str] = {}  # model id → its log, for this run

    def run(self, cells: list[Any], spec_paths: dict[str, str], report: Callable[[Any, dict[str, Any]], None],
            start: Callable[[Any], None]) -> None:
        failed_training = self.failed_training
        for cell in cells:
            start(cell)
            if cell.model_id in failed_training:  # not tried twice in one run
                report(cell, {"status": "failed", "error": f"its model's training failed ({failed_training[cell.model_id]})",
                              "wall_time_s": 0.0})
                continue
            result = run_cell(spec_paths[cell.id], self.nproc, self.timeout_s)
            if str(result.get("error") or "").startswith("training failed"):
                failed_training[cell.model_id] = str(Path(spec_paths[cell.id]).parent.parent / "train.log")
            report(cell, result)


class SlurmOptions:
    """The scheduler options of ``--executor slurm``."""

    def __init__(self, partition: str | None = None, gpus_per_node: int = 0, nodes: int = 1,
                 time_min: int = 24 * 60, cpus_per_task: int | None = None, mem_gb: int | None = None,
                 account: str | None = None, extra: dict[str, Any] | None = None) -> None:
        self.partition, self.gpus_per_node, self.nodes, self.time_min = partition, gpus_per_node, nodes, time_min
        self.cpus_per_task, self.mem_gb, self.account, self.extra = cpus_per_task, mem_gb, account, extra or {}


def _cluster_run_cell(spec_path: str, nproc: int, timeout_s: float | None, port: int) -> dict[str, Any]:
    """The job function: one call per node of the job (submitit's task), torchrun across the nodes."""
    import submitit

    env = submitit.JobEnvironment()
    cluster = {"nnodes": env.num_nodes, "node_rank": env.node, "master": env.hostnames[0] if env.hostnames else
               "127.0.0.1", "port": port}
    return run_cell(spec_path, nproc, timeout_s, cluster=cluster)


class SubmititExecutor:
    """Each cell one job of the scheduler (``slurm``), or of submitit's local executor (``submitit-local``).

    The cells of one model are chained (``--dependency afterany``) so that its first job trains and
    the others start once the training is there; the training lock covers the local executor,
    which ignores dependencies.
    """

    def __init__(self, kind: str, folder: Path, nproc: int = 1, timeout_s: float | None = None,
                 slurm: SlurmOptions | None = None) -> None:
        try:
            import submitit  # noqa: F401  (checked here, used when the jobs are made)
        except ImportError:
            from ..errors import UsageError

            raise UsageError(f"--executor {kind} needs the submitit package: pip install submitit (or the "
                             f"'slurm' extra: pip install \"imdlbenco[slurm]\")") from None
        self.kind, self.nproc, self.timeout_s = kind, nproc, timeout_s
        self.slurm = slurm or SlurmOptions()
        self.folder = Path(folder)
        minutes = max(1, int(self.slurm.time_min))
        if kind == "submitit-local":
            self.params: dict[str, Any] = {"timeout_min": minutes, "tasks_per_node": 1, "nodes": 1,
                                           "gpus_per_node": self.slurm.gpus_per_node}
        else:
            self.params = {"time": minutes, "nodes": self.slurm.nodes, "ntasks_per_node": 1, "job_name": "benco_bench"}
            if self.slurm.partition:
                self.params["partition"] = self.slurm.partition
            if self.slurm.gpus_per_node:
                self.params["gpus_per_node"] = self.slurm.gpus_per_node
            if self.slurm.cpus_per_task:
                self.params["cpus_per_task"] = self.slurm.cpus_per_task
            if self.slurm.mem_gb:
                self.params["mem"] = f"{self.slurm.mem_gb}GB"
            if self.slurm.account:
                self.params["account"] = self.slurm.account
            self.params.update(self.slurm.extra)
        self.executor: Any = None

    def sbatch_text(self) -> str:
        """The batch script each job gets (``--dry-run``; needs no cluster)."""
        from submitit.slurm.slurm import _make_sbatch_string

        return _make_sbatch_string(command="<python -m submitit.core._submit ...>", folder=str(self.folder),
                                   **self.params)

    def _make(self) -> Any:
        import submitit

        from ..errors import UsageError

        if self.kind == "submitit-local":
            executor = submitit.LocalExecutor(folder=str(self.folder))
        else:
            try:
                executor = submitit.SlurmExecutor(folder=str(self.folder))
            except RuntimeError as err:  # no srun: not a Slurm machine
                raise UsageError(f"--executor slurm: {err} (run benco bench on a node that can submit Slurm jobs, "
                                 f"or use --executor local)") from None
        executor.update_parameters(**self.params)
        return executor

    def run(self, cells: list[Any], spec_paths: dict[str, str], report: Callable[[Any, dict[str, Any]], None],
            start: Callable[[Any], None]) -> dict[str, str]:
        """Submit every cell, then report each as it finishes; returns ``{cell id: job id}``."""
        import submitit

        self.executor = self.executor or self._make()
        jobs: dict[Any, Any] = {}
        first_of_model: dict[str, str] = {}
        for index, cell in enumerate(cells):
            depends = first_of_model.get(cell.model_id) if cell.training is not None else None
            if self.kind == "slurm":
                self.executor.update_parameters(dependency=f"afterany:{depends}" if depends else None)
            port = 29500 + (index % 1000)
            job = self.executor.submit(_cluster_run_cell, spec_paths[cell.id], self.nproc, None, port)
            first_of_model.setdefault(cell.model_id, str(job.job_id))
            jobs[job] = cell
            start(cell)
        for job in submitit.helpers.as_completed(list(jobs)):
            cell = jobs[job]
            try:
                results = job.results()
                result = results[0] if isinstance(results, list) else results
            except Exception as err:  # the job itself failed (killed, time limit, node failure)
                text = " ".join(str(err).split())
                result = {"status": "failed", "error": f"job {job.job_id}: {text[-300:]}"}
            report(cell, dict(result, job_id=str(job.job_id)))
        return {cell.id: str(job.job_id) for job, cell in jobs.items()}
