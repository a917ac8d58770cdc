"""A run folder has one owner (issue 21): a lock while a run writes, no silent mixing of runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from engine_support import MODEL, MeanF1, base_args, make_mani

from IMDLBenCo.errors import UsageError


def test_a_second_run_into_a_locked_folder_stops_at_once(tmp_path):
    from IMDLBenCo.engine.runlock import claim_run_folder

    with claim_run_folder(str(tmp_path / "out"), "train", {"model": "A"}):
        with pytest.raises(UsageError, match="another run is writing"):
            claim_run_folder(str(tmp_path / "out"), "test", {"model": "A"})
    claim_run_folder(str(tmp_path / "out"), "test", {"model": "A"}).release()  # free again


def test_the_lock_holds_across_processes_and_dies_with_its_holder(tmp_path):
    from IMDLBenCo.engine.runlock import claim_run_folder

    holder = textwrap.dedent(f"""
        import sys, time
        from IMDLBenCo.engine.runlock import claim_run_folder
        lock = claim_run_folder({str(tmp_path / 'out')!r}, "train", {{}})
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=r"another run is writing .*train\.py, pid"):
            claim_run_folder(str(tmp_path / "out"), "train", {})
    finally:
        proc.kill()
        proc.wait()
    claim_run_folder(str(tmp_path / "out"), "train", {}).release()  # a killed holder leaves no lock


def test_a_new_training_run_over_another_is_refused(tmp_path):
    from IMDLBenCo.engine import train_main

    data = make_mani(tmp_path / "data", 4, seed=1)
    train_main(base_args(tmp_path, data, epochs=1), evaluators=[MeanF1()], train_transform=False)
    with pytest.raises(UsageError, match="--resume auto.*--overwrite"):
        train_main(base_args(tmp_path, data, epochs=3, lr=0.5), evaluators=[MeanF1()], train_transform=False)
    # --overwrite: the old run's files go first
    (tmp_path / "out" / "checkpoint-7.pth").write_bytes(b"old")
    train_main(base_args(tmp_path, data, epochs=1, overwrite=True), evaluators=[MeanF1()], train_transform=False)
    assert not (tmp_path / "out" / "checkpoint-7.pth").exists()
    assert (tmp_path / "out" / "checkpoint-0.pth").exists()
    # --resume continues the same run
    train_main(base_args(tmp_path, data, epochs=2, resume="auto"), evaluators=[MeanF1()], train_transform=False)
    assert (tmp_path / "out" / "checkpoint-1.pth").exists()


def test_the_same_test_command_again_replaces_its_results_and_another_is_refused(tmp_path):
    from engine_support import read_jsonl

    from IMDLBenCo.engine import test_main, train_main

    data = make_mani(tmp_path / "data", 4, seed=1)
    train_main(base_args(tmp_path, data, epochs=1), evaluators=[MeanF1()], train_transform=False)
    common = ["--model", MODEL, "--checkpoint_path", str(tmp_path / "out"), "--test_data_path", str(data),
              "--image_size", "32", "--if_resizing", "--device", "cpu", "--num_workers", "0",
              "--output_dir", str(tmp_path / "eval"), "--bootstrap", "0"]
    test_main(common, evaluators=[MeanF1()])
    test_main(common, evaluators=[MeanF1()])
    assert len(read_jsonl(tmp_path / "eval" / "log.txt")) == 1  # replaced, not appended
    with pytest.raises(UsageError, match="other options.*image_size"):
        test_main([*common[:-6], "--image_size", "48", *common[-4:], "--if_resizing"], evaluators=[MeanF1()])
    with pytest.raises(UsageError, match="another run"):
        train_main(base_args(tmp_path, data, epochs=1, output_dir=tmp_path / "eval"), evaluators=[MeanF1()],
                   train_transform=False)


@pytest.mark.parametrize("kind", ["file", "read_only"])
def test_an_output_folder_that_cannot_be_made_is_one_message(tmp_path, kind):
    from IMDLBenCo.engine.runlock import claim_run_folder

    target = tmp_path / "out"
    if kind == "file":
        target.write_text("x")
        expected = "is a file"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        tmp_path.chmod(0o500)
        expected = "cannot write"
    try:
        with pytest.raises(UsageError, match=expected):
            claim_run_folder(str(target / "sub" if kind == "read_only" else target), "test", {})
    finally:
        tmp_path.chmod(0o700)


def test_a_read_only_folder_from_the_command_line(tmp_path):
    """As root (CI), a folder under a file stands for one that cannot be created."""
    (tmp_path / "afile").write_text("x")
    data = make_mani(tmp_path / "data", 2, seed=1)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import engine_support
        from IMDLBenCo.engine import train_main
        sys.argv = ["train.py"] + {base_args(tmp_path, data, epochs=1, output_dir=tmp_path / 'afile' / 'out')!r}
        train_main(train_transform=False)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert done.returncode == 2, done.stderr
    assert "--output_dir" in done.stderr and "Traceback" not in done.stderr
