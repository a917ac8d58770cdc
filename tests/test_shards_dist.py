"""Training from shards under torch.distributed (gloo): 2 processes on one node, and 2 nodes of
one process on this machine; every rank records the samples it trained on: the parts are
disjoint and cover the dataset every epoch, and the test pass counts every image once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from engine_support import make_mani, read_jsonl, run_in_group

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
N, EPOCHS = 8, 2

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    from engine_support import EngineTinyNet, MeanF1
    from IMDLBenCo.registry import MODELS
    from IMDLBenCo.engine import train_main

    @MODELS.register_module(name="RecordingTinyNet", force=True)
    class RecordingTinyNet(EngineTinyNet):
        def forward(self, image, mask, label, *args, **kwargs):
            if self.training:  # the samples this rank trains on, batch by batch
                with open(os.path.join({out!r}, "seen-rank%s.jsonl" % os.environ.get("RANK", "0")), "a") as f:
                    f.write(json.dumps(list(kwargs["name"])) + "\\n")
            return super().forward(image, mask, label, *args, **kwargs)

    train_main(["--model", "RecordingTinyNet", "--data_path", {shards!r}, "--test_data_path", {shards!r},
                "--image_size", "32", "--if_resizing", "--num_workers", {workers!r}, "--device", "cpu",
                "--batch_size", "2", "--test_batch_size", "3", "--epochs", "{epochs}", "--accum_iter", "1",
                "--lr", "1e-3", "--warmup_epochs", "0", "--output_dir", {out!r} + "/run"],
               evaluators=[MeanF1()], train_transform=False)
""")


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    from IMDLBenCo.datasets.shards.pack import PackOptions, pack_dataset

    src = make_mani(tmp_path / "src", N, seed=3)
    out = tmp_path / "shards"
    pack_dataset(str(src), str(out), PackOptions(samples_per_shard=3, workers=0))  # shards of 3, 3, 2
    return out


def _env(tmp_path: Path) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), IMDLBENCO_CACHE_DIR=str(tmp_path / "cache"))


def _script(tmp_path: Path, shards: Path, out: Path, workers: int = 0) -> Path:
    out.mkdir()
    script = tmp_path / f"train_{out.name}.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), shards=str(shards), out=str(out), workers=str(workers),
                                    epochs=EPOCHS))
    return script


def _check_parts(out: Path, world: int) -> None:
    seen = {r: [n for batch in read_jsonl(out / f"seen-rank{r}.jsonl") for n in batch] for r in range(world)}
    per_rank = N // world
    for epoch in range(EPOCHS):
        parts = [seen[r][epoch * per_rank:(epoch + 1) * per_rank] for r in range(world)]
        assert all(len(p) == per_rank for p in parts), parts
        flat = [n for p in parts for n in p]
        assert sorted(flat) == sorted(f"img{i:02d}.png" for i in range(N)), f"epoch {epoch}: {parts}"
    assert all(len(s) == per_rank * EPOCHS for s in seen.values())
    log = read_jsonl(out / "run" / "log.txt")
    counts = [row[k] for row in log for k in row if k.endswith("count")]
    assert counts and all(c == N for c in counts), f"every test image counted once: {log}"


@pytest.mark.dist
@pytest.mark.parametrize("workers", [0, 2])
def test_two_processes_train_on_disjoint_parts(tmp_path: Path, shards: Path, workers: int):
    out = tmp_path / f"out{workers}"
    script = _script(tmp_path, shards, out, workers)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    run_in_group(cmd, tmp_path, _env(tmp_path), timeout=300)
    _check_parts(out, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dist
def test_two_nodes_on_one_machine_train_on_disjoint_parts(tmp_path: Path, shards: Path):
    """Two torchrun "nodes" (one process each) meet on the loopback; nothing is shared but the
    shard folder, read by each node for its own part."""
    out = tmp_path / "nodes"
    script = _script(tmp_path, shards, out)
    port = _free_port()
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
               "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", str(script)]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the two-node run timed out")
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]
    _check_parts(out, 2)
    assert json.loads((out / "run" / "config.json").read_text())["args"]["data_path"] == str(shards)
