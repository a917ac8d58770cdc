"""Two gloo processes (torchrun) give the same evaluation as one; training runs under DDP."""

from __future__ import annotations

import csv
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from engine_support import EngineTinyNet, make_mani, read_jsonl, run_in_group

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from engine_support import MeanF1
    from IMDLBenCo.engine import save_images_main, test_main, train_main
    from IMDLBenCo.evaluation import ImageAUC, ImageF1, PixelF1
    evaluators = [MeanF1(), PixelF1(), ImageF1(), ImageAUC()]
    common = ["--model", "EngineTinyNet", "--image_size", "32", "--if_resizing", "--num_workers", "0",
              "--device", "cpu", "--test_batch_size", "2"]
    test_main(common + ["--test_data_json", {sets!r}, "--checkpoint_path", {ckpt!r},
                        "--output_dir", {out!r} + "/test"], evaluators=evaluators)
    save_images_main(common + ["--test_data_path", {data!r}, "--checkpoint_path", {ckpt!r} + "/checkpoint-2.pth",
                               "--output_dir", {out!r} + "/save"])
    train_main(common + ["--data_path", {data!r}, "--test_data_path", {sets!r}, "--epochs", "1",
                         "--batch_size", "2", "--accum_iter", "2", "--lr", "1e-3",
                         "--output_dir", {out!r} + "/train"], evaluators=evaluators, train_transform=False)
""")


def _run(script: Path, nproc: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script)]
    if nproc == 1:
        cmd = [sys.executable, str(script)]
    run_in_group(cmd, script.parent, env, timeout=240)



def _rows_close(a, b) -> bool:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=1e-12, abs=1e-15, nan_ok=True), key
            else:
                assert x[key] == y[key], key
    return True


@pytest.mark.dist
def test_one_and_two_processes_agree(tmp_path):
    data = make_mani(tmp_path / "data", 5, seed=4)  # 5 images, batch 2: shards of 3 and 2
    negatives = make_mani(tmp_path / "data2", 3, seed=5)
    sets = tmp_path / "sets.json"
    sets.write_text(json.dumps({"A": str(data), "B": str(negatives)}))
    ckpt = tmp_path / "ckpts"
    ckpt.mkdir()
    torch.manual_seed(0)
    torch.save({"model": EngineTinyNet().state_dict()}, ckpt / "checkpoint-2.pth")
    outputs = {}
    for nproc in (1, 2, 3):
        out = tmp_path / f"out{nproc}"
        script = tmp_path / f"run{nproc}.py"
        script.write_text(SCRIPT.format(tests=str(TESTS), sets=str(sets),
                                        ckpt=str(ckpt), data=str(data), out=str(out)))
        _run(script, nproc)
        outputs[nproc] = out
    one, two = (json.loads((outputs[n] / "test" / "summary.json").read_text()) for n in (1, 2))
    assert [r["count"] for r in one["rows"]] == [5, 3]
    # identical metrics (up to float summation order), every image counted once
    assert _rows_close(one["rows"], two["rows"])
    # results.json: identical values and bootstrap intervals under 1, 2 and 3 processes (images
    # gathered in dataset order, shards of 5 images: 5 / 3+2 / 2+2+1)
    r1 = json.loads((outputs[1] / "test" / "results.json").read_text())
    ours = [{k: v for k, v in r["metrics"].items() if k not in ("mean_f1", "count")} for r in r1["records"]]
    assert r1["records"][0]["metrics"]["pixel_f1"]["ci_low"] is not None
    for n in (2, 3):
        rn = json.loads((outputs[n] / "test" / "results.json").read_text())
        assert rn["processes"] == n
        assert json.dumps(ours) == json.dumps([{k: r["metrics"][k] for k in o} for o, r in zip(ours, rn["records"])])
        # calibration reads raw probabilities, which a model computes in the last bits differently for
        # another batch composition (oneDNN): equal to float noise, aggregated in dataset order
        for a, b in zip(r1["records"], rn["records"]):
            for kind in ("image", "pixel"):
                assert a["calibration"][kind]["ece"] == pytest.approx(b["calibration"][kind]["ece"], abs=1e-6)
                assert [x["count"] for x in a["calibration"][kind]["bins"]] == [
                    x["count"] for x in b["calibration"][kind]["bins"]]
        rows1, rows_n = (list(csv.DictReader(open(outputs[k] / "test" / "per_image.csv"))) for k in (1, n))
        assert [r["name"] for r in rows1] == [r["name"] for r in rows_n]
        for a, b in zip(rows1, rows_n):
            assert {k: a[k] for k in ("label", "tp", "fp", "fn", "tn", "pixel_f1")} == {
                k: b[k] for k in ("label", "tp", "fp", "fn", "tn", "pixel_f1")}
            assert float(a["pred_label"]) == pytest.approx(float(b["pred_label"]), abs=1e-6)
    # save-images: every image once, identical predictions
    p1, p2 = (json.loads((outputs[n] / "save" / "predictions.json").read_text()) for n in (1, 2))
    assert [p["name"] for p in p2] == [p["name"] for p in p1] and len(p1) == 5
    assert sorted(f.name for f in (outputs[2] / "save" / "pred").iterdir()) == sorted(
        Path(p["pred_path"]).name for p in p1)
    for a, b in zip(p1, p2):
        assert (outputs[1] / "save" / a["pred_path"]).read_bytes() == (outputs[2] / "save" / b["pred_path"]).read_bytes()
    # DDP training ran on both processes and tested every image once
    log = read_jsonl(outputs[2] / "train" / "log.txt")
    assert log[0]["epoch"] == 0 and log[0]["test_A/count"] == 5
    assert json.loads((outputs[2] / "train" / "config.json").read_text())["env"]["world_size"] == 2
    assert torch.load(outputs[2] / "train" / "checkpoint-0.pth", weights_only=True)["epoch"] == 0


FAILING = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import engine_support  # registers FailingTinyNet
    from IMDLBenCo.engine import {main}
    if __name__ == "__main__":
        {main}()  # the command line: errors end the run with one message
""")


@pytest.mark.dist
@pytest.mark.parametrize("script, phase, rank", [("train", "train", 1), ("train", "test", 0), ("test", "test", 1)])
def test_a_failing_rank_ends_the_run_at_once_with_one_message(tmp_path, script, phase, rank):
    """One rank raises (in a training step or a test pass); the other is waiting in a collective.
    The run must end within seconds, print the error once (by the rank that had it) and exit
    non-zero, instead of hanging until the process group's 30-minute timeout."""
    import time

    data = make_mani(tmp_path / "data", 8, seed=1)
    common = ["--model", "FailingTinyNet", "--phase", phase,
              "--fail_rank", str(rank), "--image_size", "32", "--if_resizing", "--num_workers", "0",
              "--device", "cpu", "--test_batch_size", "2"]
    main = {"train": "train_main", "test": "test_main"}[script]
    if script == "train":
        argv = common + ["--data_path", str(data), "--test_data_path", str(data), "--epochs", "2",
                         "--batch_size", "2", "--accum_iter", "1", "--output_dir", str(tmp_path / "out")]
    else:
        ckpt = tmp_path / "ckpts"
        ckpt.mkdir()
        torch.manual_seed(0)
        torch.save({"model": EngineTinyNet().state_dict()}, ckpt / "checkpoint-0.pth")
        argv = common + ["--test_data_path", str(data), "--checkpoint_path", str(ckpt),
                         "--output_dir", str(tmp_path / "out")]
    path = tmp_path / f"{script}.py"
    path.write_text(FAILING.format(tests=str(TESTS), main=main))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("IMDLBENCO_DEBUG", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(path), *argv]
    start = time.monotonic()
    proc = run_in_group(cmd, tmp_path, env, timeout=120, check=False)
    elapsed = time.monotonic() - start
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert elapsed < 90, f"the run took {elapsed:.0f} s to end"
    assert text.count("cannot be read (raised on rank") == 1, text[-3000:]
    assert f"error{' (rank 1)' if rank else ''}: /data/Tp/broken.png" in text
    assert "[rank0]: Traceback" not in text and "[rank1]: Traceback" not in text
