"""Two gloo processes (torchrun) give the same evaluation as one; training runs under DDP."""

from __future__ import annotations

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
    for nproc in (1, 2):
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
