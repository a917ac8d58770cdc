"""``benco bench PROTOCOL``: run a benchmark protocol, cell by cell, resumably (docs/bench.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark protocol (models x test sets x attacks), resumably",
        description="Run every cell (model x test set) of a protocol file through the engine: train with the "
        "checkpoint chosen on validation, test, robustness grid; one run folder per cell under --out, "
        "results.json with the protocol's provenance in each. A cell whose results.json matches the plan "
        "is skipped, so a rerun finishes what an interrupted run left. Shipped protocols: --list. "
        "The protocol schema: docs/bench.md.",
    )
    p.add_argument("protocol", nargs="?", help="protocol file (YAML) or the name of a shipped protocol (--list)")
    p.add_argument("--list", action="store_true", help="list the protocols shipped with the package")
    p.add_argument("--out", metavar="DIR", help="folder of the run folders and bench.json (default ./bench_<name>)")
    p.add_argument("--only", action="append", default=[], metavar="MODEL[/SET]",
                   help="run only this model id (or one of its test sets); may be repeated")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, what is missing (datasets, checkpoints, weights) and a disk and time "
                        "estimate; run nothing (exit status 1 when something is missing)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="processes per cell (torchrun --nproc_per_node; per node with --nodes); default 1")
    p.add_argument("--data-root", metavar="DIR",
                   help="folder the protocol's relative dataset paths start from (overrides its data_root; for "
                        "the shipped protocols: the --root of `benco data protocol`, default ./data)")
    p.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local",
                   help="local: cells one after another here (default); slurm: each cell one job of the Slurm "
                        "scheduler (through submitit); submitit-local: submitit's local executor (the Slurm "
                        "code path on this machine)")
    p.add_argument("--cell-timeout", type=float, metavar="MIN",
                   help="stop a cell's stage after this many minutes (reported as failed; the others go on)")
    g = p.add_argument_group("slurm (--executor slurm)")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--gpus-per-node", type=int, default=0, metavar="G", help="GPUs per node of each job")
    g.add_argument("--nodes", type=int, default=1, metavar="K",
                   help="nodes per job (torchrun across them, --nproc processes on each)")
    g.add_argument("--time", type=int, default=24 * 60, metavar="MIN", help="time limit of each job in minutes")
    g.add_argument("--cpus-per-task", type=int, metavar="C", help="CPUs per job and node")
    g.add_argument("--mem-gb", type=int, metavar="GB", help="memory per node")
    g.add_argument("--account", help="Slurm account")
    p.set_defaults(run=run)


def _error(message: str, status: int = 2) -> int:
    print(f"benco bench: {message}", file=sys.stderr)
    return status


def _list() -> int:
    from ..bench.protocol import protocol_names, shipped_protocols

    print("Protocols shipped with IMDLBenCo (benco bench NAME; the files: benco bench NAME --dry-run):")
    for stem, path in shipped_protocols().items():
        name, description = protocol_names(path)
        print(f"  {stem:16s} {name}: {description}")
    return 0


def _metric_summary(folder: str) -> str:
    """``pixel_f1 0.512 [0.471, 0.556]`` from the first clean record of a cell's results.json."""
    try:
        with open(os.path.join(folder, "results.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return ""
    for record in data.get("records") or []:
        if record.get("attack"):
            continue
        for key, value in (record.get("metrics") or {}).items():
            if isinstance(value, dict) and isinstance(value.get("value"), (int, float)):
                text = f"{key} {value['value']:.4f}"
                if isinstance(value.get("ci_low"), (int, float)) and isinstance(value.get("ci_high"), (int, float)):
                    text += f" [{value['ci_low']:.4f}, {value['ci_high']:.4f}]"
                return text
    return ""


def _print_plan(plan: Any, estimate: dict[str, Any]) -> None:
    from ..bench.estimate import format_bytes, format_seconds

    protocol = plan.protocol
    print(f"protocol {protocol.name} ({protocol.file}){' - ' + protocol.description if protocol.description else ''}")
    print(f"  data root {protocol.data_root}" + ("  (generated by `benco data synth` when the protocol runs)"
                                                  if plan.synth_pending else ""))
    print(f"  out {plan.out}; {plan.nproc} process(es) per cell" + (f" on {plan.nnodes} nodes" if plan.nnodes > 1
                                                                      else ""))
    validation = (f"val_split {protocol.val_split}" if protocol.val_split is not None else
                  f"val {protocol.val}" if protocol.val else "none")
    print(f"  training data {protocol.train_data or '-'}; checkpoint chosen on validation ({validation})")
    print(f"  metrics {', '.join(m.name for m in protocol.metrics)}; robustness: " + (
        "none" if protocol.robustness is None else
        f"{'every set' if protocol.robustness.sets is None else ', '.join(protocol.robustness.sets)}"))
    if plan.trainings:
        print("trainings:")
        for t in plan.trainings.values():
            cost = estimate["per_training"].get(t.model_id)
            extra = (f"  ~{format_seconds(cost['seconds'])}, {format_bytes(cost['bytes'])}, {cost['epochs']} epochs "
                     f"x {cost['images']} images") if cost else ""
            print(f"  {t.model_id:24s} {t.status:8s}{extra}")
    print(f"cells ({len(plan.cells)}):")
    for c in plan.cells:
        cost = estimate["per_cell"].get(c.id)
        extra = f"  ~{format_seconds(cost['seconds'])}, {cost['images']} images x {cost['passes']} pass(es)" if cost \
            else ""
        print(f"  {c.id:40s} {c.status:8s}{extra}")
    missing = plan.missing
    if missing:
        print(f"missing ({len(missing)}):")
        for item in missing:
            print(f"  {item}")
    unknown = f" (cost of {', '.join(estimate['unknown'])} unknown)" if estimate["unknown"] else ""
    if estimate["unsized"]:
        unknown += f" (without {len(estimate['unsized'])} training(s)/cell(s) whose data is missing)"
    print(f"estimate for what is left: ~{format_seconds(estimate['seconds'])} on this machine's "
          f"{estimate['device']} ({estimate['flops_per_s'] / 1e9:.0f} GFLOP/s effective), "
          f"~{format_bytes(estimate['bytes'])} of disk{unknown}")


class _Book:
    """bench.json: the plan and each cell's status, rewritten (atomically) after every change."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.path = plan.out / "bench.json"
        self.extra: dict[str, dict[str, Any]] = {}
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def update(self, cell: Any = None, **info: Any) -> None:
        if cell is not None:
            self.extra.setdefault(cell.id, {}).update(info)
        data = self.plan.to_json()
        data["started"] = self.started
        data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for entry in data["cells"]:
            entry.update(self.extra.get(entry["id"], {}))
        self.plan.out.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".bench.json.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


@contextlib.contextmanager
def _run_lock(out: Any):
    """One benco bench per --out folder at a time."""
    try:
        import fcntl
    except ImportError:
        yield True
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".bench.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:
            pass
        yield True


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    if not args.protocol:
        return _error("give a protocol file or a shipped protocol's name (benco bench --list shows them)")
    if args.nproc < 1 or args.nodes < 1:
        return _error(f"--nproc {args.nproc} / --nodes {args.nodes}: at least 1")
    if args.nodes > 1 and args.executor != "slurm":
        return _error("--nodes K > 1 needs --executor slurm (each job then spans K nodes)")
    from ..bench.protocol import ProtocolError, default_out, load_protocol
    from ..errors import IMDLBenCoError

    try:
        protocol = load_protocol(args.protocol, data_root=args.data_root, out=args.out)
    except ProtocolError as err:
        return _error(str(err))
    out = os.path.abspath(args.out or default_out(protocol.file))
    try:
        return _run(args, protocol, out)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the running cell was stopped; `benco bench {args.protocol}` again finishes the rest "
              f"(done cells are kept)", file=sys.stderr)
        return 130
    except ProtocolError as err:
        return _error(str(err))
    except IMDLBenCoError as err:
        return _error(str(err), 1)


def _run(args: argparse.Namespace, protocol: Any, out_text: str) -> int:
    from pathlib import Path

    from ..bench.estimate import estimate_plan
    from ..bench.executors import SlurmOptions, SubmititExecutor
    from ..bench.plan import ensure_synth_data, make_plan

    out = Path(out_text)
    if not args.dry_run and ensure_synth_data(protocol):
        print(f"generated the protocol's synthetic data in {protocol.data_root} (benco data synth, "
              f"{protocol.synth})", flush=True)
    plan = make_plan(protocol, out, only=args.only, nproc=args.nproc, nnodes=args.nodes)
    if args.dry_run:
        _print_plan(plan, estimate_plan(plan))
        if args.executor != "local":
            executor = SubmititExecutor(args.executor, out / "submitit", args.nproc, slurm=_slurm(args, SlurmOptions))
            if args.executor == "slurm":
                print("each cell one Slurm job with this batch script:\n" + executor.sbatch_text())
        return 1 if plan.missing else 0

    with _run_lock(out) as free:
        if not free:
            return _error(f"another benco bench is running in {out} (its lock: {out / '.bench.lock'}); wait for it "
                          f"or give another --out", 1)
        return _execute(args, plan, out)


def _slurm(args: argparse.Namespace, options_cls: Any) -> Any:
    return options_cls(partition=args.partition, gpus_per_node=args.gpus_per_node, nodes=args.nodes,
                       time_min=args.time, cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
                       account=args.account)


def _execute(args: argparse.Namespace, plan: Any, out: Any) -> int:
    from ..bench.cell import write_configs
    from ..bench.executors import LocalExecutor, SlurmOptions, SubmititExecutor
    from ..bench.plan import CELL_SPEC, cell_spec

    book = _Book(plan)
    total = len(plan.cells)
    number = {c.id: i + 1 for i, c in enumerate(plan.cells)}
    failed: list[str] = []
    print(f"benco bench {plan.protocol.name}: {total} cell(s) in {out}", flush=True)

    def settled(cell: Any) -> bool:
        """Print the line of a cell that does not run (done before, or blocked); False for one to run."""
        tag = f"[{number[cell.id]}/{total}] {cell.id}"
        if cell.status == "done":
            summary = _metric_summary(str(cell.folder))
            print(f"{tag}: done before, skipped{': ' + summary if summary else ''}", flush=True)
        elif cell.status == "blocked":
            failed.append(cell.id)
            print(f"{tag}: blocked: missing {'; '.join(cell.missing)}", flush=True)
        else:
            return False
        return True

    local = args.executor == "local"
    to_run = [c for c in plan.cells if c.status not in ("done", "blocked")]
    if not local:
        for cell in plan.cells:
            settled(cell)
    book.update()
    timeout_s = args.cell_timeout * 60 if args.cell_timeout else None
    spec_paths: dict[str, str] = {}
    for cell in to_run:
        cell.folder.mkdir(parents=True, exist_ok=True)
        path = cell.folder / CELL_SPEC
        spec = cell_spec(plan, cell)
        path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        write_configs(spec)  # before any job starts: every node of a job reads them
        spec_paths[cell.id] = str(path)

    def start(cell: Any) -> None:
        cell.status = "running"
        book.update(cell)
        what = "train + test" if cell.training is not None and cell.training.status != "trained" else "test"
        if local:
            print(f"[{number[cell.id]}/{total}] {cell.id}: {what} ...", end=" ", flush=True)
        else:
            print(f"[{number[cell.id]}/{total}] {cell.id}: submitted ({what})", flush=True)

    def report(cell: Any, result: dict[str, Any]) -> None:
        cell.status = result.get("status", "failed")
        if cell.training is not None and result.get("status") == "done":
            cell.training.status = "trained"
        book.update(cell, **{k: v for k, v in result.items() if k != "status"})
        head = "" if local else f"[{number[cell.id]}/{total}] {cell.id}: "
        took = f"{result.get('wall_time_s', 0):.1f} s"
        if cell.status == "done":
            summary = _metric_summary(str(cell.folder))
            trained = "trained and tested" if result.get("trained") else "tested"
            print(f"{head}{trained} in {took}{': ' + summary if summary else ''}", flush=True)
        else:
            failed.append(cell.id)
            print(f"{head}FAILED after {took}: {result.get('error')}", flush=True)

    if to_run or local:
        if local:  # in the plan's order, the lines of cells that do not run among the others
            executor = LocalExecutor(args.nproc, timeout_s)
            for cell in plan.cells:
                if not settled(cell):
                    executor.run([cell], spec_paths, report, start)
        else:
            executor = SubmititExecutor(args.executor, out / "submitit", args.nproc, timeout_s,
                                        slurm=_slurm(args, SlurmOptions))
            jobs = executor.run(to_run, spec_paths, report, start)
            for cell in to_run:
                book.extra.setdefault(cell.id, {})["job_id"] = jobs.get(cell.id)
            book.update()
    done = sum(1 for c in plan.cells if c.status == "done")
    print(f"{done}/{total} cell(s) done" + (f", {len(failed)} failed or blocked: {', '.join(failed)}" if failed else "")
          + f"; {book.path}", flush=True)
    return 1 if failed else 0
