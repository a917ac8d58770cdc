"""Setup notes on resources (runtime.resource_notes) and one message per launch (engine.errors)."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from IMDLBenCo.engine import errors as engine_errors
from IMDLBenCo.engine.runtime import Runtime, configure_logging, resource_notes

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
CPU = torch.device("cpu")


# ------------------------------------------------------------------------------ resource notes
def test_more_processes_than_cores_is_noted(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    notes = resource_notes(CPU, local_processes=4, cores=2, threads=1, load=0.0)
    assert len(notes) == 1 and "4 processes" in notes[0] and "2 CPU core(s)" in notes[0]
    assert "--nproc_per_node 2" in notes[0]
    assert resource_notes(CPU, local_processes=2, cores=2, threads=1, load=0.0) == []


def test_threads_times_processes_above_cores_is_noted(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    (note,) = resource_notes(CPU, local_processes=2, cores=4, threads=4, load=0.0)
    assert "4 PyTorch threads in each of 2 processes" in note and "OMP_NUM_THREADS=2" in note
    assert resource_notes(CPU, local_processes=2, cores=4, threads=2, load=0.0) == []


@pytest.mark.parametrize("load, policy, threads, noted", [
    (5.3, "", 2, True),          # busy machine, spinning threads
    (1.2, "", 2, False),         # quiet machine
    (5.3, "PASSIVE", 2, False),  # threads sleep while they wait: nothing to say
    (5.3, "", 1, False),         # one thread does not wait for another
])
def test_a_busy_machine_is_noted_when_threads_spin(monkeypatch, load, policy, threads, noted):
    monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    notes = resource_notes(CPU, local_processes=1, cores=2, threads=threads, load=load)
    assert bool(notes) == noted
    if noted:
        assert f"load average {load:.1f} on 2 CPU core(s)" in notes[0] and "OMP_WAIT_POLICY=PASSIVE" in notes[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_more_processes_than_gpus_is_noted():
    gpus = torch.cuda.device_count()
    (note,) = resource_notes(torch.device("cuda", 0), local_processes=gpus + 1)
    assert f"share {gpus} GPU(s)" in note


def test_notes_are_logged_once_by_rank_0(caplog):
    note = "test note: 9 processes on 1 CPU core"
    with caplog.at_level(logging.WARNING, logger="IMDLBenCo"):
        configure_logging(Runtime(device=CPU, rank=1, world_size=2, distributed=True, notes=[note]))
        assert note not in caplog.text  # other ranks stay quiet
        configure_logging(Runtime(device=CPU, notes=[note]))
        configure_logging(Runtime(device=CPU, notes=[note]))  # a second run in the same process
    assert caplog.text.count(note) == 1


# ------------------------------------------------------------------------------ one message per launch
def test_the_same_message_is_reported_by_the_first_rank_only(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run-a")
    firsts = [engine_errors.first_to_report("weights file missing", tmp_path) for _ in range(4)]
    assert firsts == [True, False, False, False]
    assert engine_errors.first_to_report("another message", tmp_path)  # a different error is shown too
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run-b")  # the next launch shows it again
    assert engine_errors.first_to_report("weights file missing", tmp_path)


def test_outside_torchrun_every_message_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert engine_errors.first_to_report("x", tmp_path) and engine_errors.first_to_report("x", tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    blocked = tmp_path / "file"
    blocked.write_text("")  # the marker folder cannot be made: shown rather than lost
    assert engine_errors.first_to_report("x", blocked / "sub") and engine_errors.first_to_report("x", blocked / "sub")


SAME_ERROR = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import engine_support  # registers EngineTinyNet
    from IMDLBenCo.engine import test_main
    if __name__ == "__main__":
        test_main()
""")


@pytest.mark.dist
def test_an_error_every_rank_meets_is_printed_once(tmp_path):
    """Four processes (on any number of cores) all miss the same checkpoint: one message."""
    from engine_support import make_mani, run_in_group

    data = make_mani(tmp_path / "data", 4, seed=1)
    script = tmp_path / "test.py"
    script.write_text(SAME_ERROR.format(tests=str(TESTS)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("IMDLBENCO_DEBUG", None)
    missing = tmp_path / "no_such_checkpoint.pth"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", str(script),
           "--model", "EngineTinyNet", "--test_data_path", str(data), "--checkpoint_path", str(missing),
           "--image_size", "32", "--if_resizing", "--num_workers", "0", "--device", "cpu",
           "--output_dir", str(tmp_path / "out")]
    proc = run_in_group(cmd, tmp_path, env, timeout=120, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert text.count("no_such_checkpoint.pth") >= 1
    assert text.count("(set IMDLBENCO_DEBUG=1 to see the traceback)") == 1, text[-3000:]
