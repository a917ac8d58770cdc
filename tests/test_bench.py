"""``benco bench``: protocol files checked key by key, plans with provenance, cells run through the
engine in their own processes, resumed after a kill, failures isolated, the submitit path, the
shipped protocols on the miniature layouts of ``benco data prepare``'s tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from IMDLBenCo.bench.plan import make_plan
from IMDLBenCo.bench.protocol import ProtocolError, load_protocol, shipped_protocols
from IMDLBenCo.cli import main

REPO = Path(__file__).resolve().parents[1]


def benco(args, cwd: Path, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "IMDLBenCo.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def write_protocol(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def tiny_protocol(models: list, **extra) -> dict:
    """A protocol on 24 generated 32-pixel images: one epoch of DemoNet, two test sets, one attack."""
    data = {
        "name": "tiny",
        "synth": {"n": 24, "size": 32, "seed": 3},
        "threads": 1,
        "train": {"data": "train.json", "val_split": 0.25, "augmentation": "none",
                  "options": {"epochs": 1, "batch_size": 4, "accum_iter": 1, "warmup_epochs": 0, "lr": 0.003,
                              "test_period": 1, "log_per_epoch_count": 1}},
        "test": {"setA": "test.json", "setB": "val.json"},
        "robustness": {"sets": ["setA"], "attacks": {"GaussianBlur": [0, 3]}},
        "metrics": ["PixelF1", {"ImageAUC": {}}],
        "input": {"image_size": 32, "rule": "resizing"},
        "bootstrap": 20,
        "options": {"device": "cpu", "num_workers": 0, "test_batch_size": 8, "if_predict_label": True},
        "models": models,
    }
    data.update(extra)
    return data


DEMO = {"model": "DemoNet", "import": "IMDLBenCo.demo.model", "options": {"width": 4}}


# --------------------------------------------------------------------------------------------- protocol files


def test_every_mistake_is_one_line_naming_the_key(tmp_path, capsys):
    bad = {
        "name": "bad",
        "trian": {},
        "train": {"data": "x.json", "val_split": 1.5, "val": "v.json", "options": {"data_path": "y", "lr": -1}},
        "test": {"set one": "a", "ok": "b"},
        "robustness": {"sets": ["nope"], "attacks": {"Blur": [3], "GaussianNoise": "strong"}},
        "metrics": ["PixelF2", {"ImageAUC": {}}],
        "input": {"image_size": 0, "rule": "cropping"},
        "bootstrap": 5,
        "models": [{"model": "DemoNet", "id": "a", "options": {"output_dir": "z"}}, {"model": "DemoNet", "id": "a"},
                   {"model": "X", "colour": 1}],
    }
    path = write_protocol(tmp_path / "bad.yaml", bad)
    with pytest.raises(ProtocolError) as info:
        load_protocol(str(path))
    lines = str(info.value).splitlines()[1:]
    expected = ["trian: unknown key (did you mean 'train'?)", "train.val_split: expected a fraction",
                "train: give one of val_split", "train.options.data_path: set by benco bench from `train.data`",
                "train.options.lr: ", "test.set one: 'set one': test set names become folder names",
                "robustness.sets: 'nope' is not a test set", "robustness.attacks.Blur: unknown attack",
                "robustness.attacks.GaussianNoise: expected a list of strengths", "metrics[0]: unknown evaluator "
                "'PixelF2' (did you mean 'PixelF1'?)", "input.image_size: expected an integer",
                "input.rule: expected padding", "bootstrap: expected 0 (no intervals) or 10",
                "models[0].options.output_dir: set by benco bench", "models[1].id: 'a' is also models[0]'s id",
                "models[2].colour: unknown key"]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, lines)
    assert len(lines) == len(expected), lines
    assert all(line.strip().startswith(str(path)) for line in lines)
    # the command: the same lines, exit status 2, no traceback
    assert main(["bench", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "16 mistakes in the protocol" in err and "Traceback" not in err


@pytest.mark.parametrize("text, message", [
    ("models: [\n  - {model: DemoNet\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping with keys"),
    ("name: x\ntest: {a: a}\nmodels: []\n", "models: expected a list of model entries"),
    ("name: x\nmodels: [DemoNet]\n", "test: is required"),
    ("name: x\ntest: {a: a}\nmodels: [DemoNet]\n", "train.data: is required"),
    ("name: x\ntrain: {data: t.json}\ntest: {a: a}\nmodels: [DemoNet]\n", "give val_split"),
])
def test_broken_files_are_one_message(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError, match="p.yaml") as info:
        load_protocol(str(path))
    assert message in str(info.value)


def test_unknown_protocol_name_lists_the_shipped_ones(tmp_path, capsys):
    assert main(["bench", "no_such_protocol"]) == 2
    err = capsys.readouterr().err
    assert "no such protocol file" in err and "smoke" in err and "protocol-cat" in err


def test_list_names_the_shipped_protocols(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for stem in ("smoke", "protocol-cat", "protocol-mvss", "casia"):
        assert f"  {stem} " in out
    assert set(shipped_protocols()) == {"smoke", "protocol-cat", "protocol-mvss", "casia"}
    # names as the leaderboard writes them find the files too
    assert load_protocol("Protocol-CAT").name == "Protocol-CAT"
    assert load_protocol("mvss").name == "Protocol-MVSS"


def test_model_options_are_checked_with_the_model(tmp_path):
    data = tiny_protocol([{**DEMO, "options": {"width": 4, "widht": 3}},
                          {"model": "DemoNett", "id": "typo", "import": "IMDLBenCo.demo.model"},
                          {"model": "MyNet", "id": "mine", "import": "no_such_module_here"}])
    path = write_protocol(tmp_path / "p.yaml", data)
    with pytest.raises(ProtocolError) as info:
        make_plan(load_protocol(str(path), out=str(tmp_path / "out")), tmp_path / "out")
    text = str(info.value)
    assert "models[1] (typo).model" in text and "DemoNet" in text  # the closest registered name
    assert "models[2] (mine).import" in text and "no_such_module_here" in text
    data["models"] = [{**DEMO, "options": {"width": 4, "widht": 3}}]
    write_protocol(path, data)
    with pytest.raises(ProtocolError, match=r"models\[0\] \(DemoNet\) \(train.py\).*widht"):
        make_plan(load_protocol(str(path), out=str(tmp_path / "out")), tmp_path / "out")


def test_provenance_follows_what_the_numbers_depend_on(tmp_path):
    """Editing a protocol changes the provenance of exactly the cells and trainings it touches."""
    from IMDLBenCo.bench.plan import ensure_synth_data

    models = [{**DEMO, "id": "a"}, {**DEMO, "id": "b", "options": {"width": 6}}]
    path = write_protocol(tmp_path / "p.yaml", tiny_protocol(models))
    protocol = load_protocol(str(path), out=str(tmp_path / "out"))
    assert ensure_synth_data(protocol) and not ensure_synth_data(protocol)
    base = make_plan(protocol, tmp_path / "out")
    assert [c.id for c in base.cells] == ["a/setA", "a/setB", "b/setA", "b/setB"]
    assert [c.status for c in base.cells] == ["pending"] * 4
    assert base.cells[0].attacks and not base.cells[1].attacks

    def changed(**edits):
        data = tiny_protocol(models)
        for key, value in edits.items():
            data[key] = value
        write_protocol(path, data)
        plan = make_plan(load_protocol(str(path), out=str(tmp_path / "out")), tmp_path / "out")
        return ([c.id for c, c0 in zip(plan.cells, base.cells) if c.provenance != c0.provenance],
                [k for k in plan.trainings if plan.trainings[k].provenance != base.trainings[k].provenance])

    assert changed(bootstrap=30) == (["a/setA", "a/setB", "b/setA", "b/setB"], [])  # not the trainings
    assert changed(robustness={"sets": ["setA"], "attacks": {"GaussianBlur": [0, 5]}}) == (["a/setA", "b/setA"], [])
    assert changed(models=[{**DEMO, "id": "a"}, {**DEMO, "id": "b", "options": {"width": 8}}]) == (
        ["b/setA", "b/setB"], ["b"])
    # the test set's content: one changed image file
    image = next((tmp_path / "out" / "data" / "val" / "Tp").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert changed() == (["a/setB", "b/setB"], [])
    # a training folder of another provenance starts over; one of the same resumes
    from IMDLBenCo.bench.plan import TRAIN_PLAN, cell_spec

    folder = tmp_path / "out" / "a"
    folder.mkdir(parents=True)
    (folder / TRAIN_PLAN).write_text(json.dumps({"provenance": "an earlier protocol"}))
    assert cell_spec(base, base.cells[0])["train"]["fresh"] is True
    (folder / TRAIN_PLAN).write_text(json.dumps({"provenance": base.trainings["a"].provenance}))
    assert cell_spec(base, base.cells[0])["train"]["fresh"] is False
    # --only keeps the named cells
    plan = make_plan(load_protocol(str(path), out=str(tmp_path / "out")), tmp_path / "out", only=["b/setA", "a"])
    assert [c.id for c in plan.cells] == ["a/setA", "a/setB", "b/setA"]
    with pytest.raises(ProtocolError, match="--only c"):
        make_plan(protocol, tmp_path / "out", only=["c"])


def test_dry_run_prints_the_plan_missing_inputs_and_an_estimate(tmp_path):
    proc = benco(["bench", "smoke", "--dry-run", "--out", str(tmp_path / "s")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "generated by `benco data synth` when the protocol runs" in out
    assert "DemoNet-w12/synth_test" in out and "estimate for what is left: ~" in out and "of disk" in out
    assert not (tmp_path / "s" / "data").exists()  # a dry run writes nothing
    # a checkpoint entry whose file is missing: listed, exit status 1
    data = tiny_protocol([{**DEMO, "id": "given", "checkpoint": "nowhere/ckpt.pth"}])
    path = write_protocol(tmp_path / "p.yaml", data)
    proc = benco(["bench", str(path), "--dry-run", "--out", str(tmp_path / "o")], tmp_path)
    assert proc.returncode == 1
    assert f"{tmp_path / 'nowhere' / 'ckpt.pth'} (checkpoint of models[0] (given))" in proc.stdout
    assert "blocked" in proc.stdout


def test_slurm_jobs_and_multi_node_launch(tmp_path):
    pytest.importorskip("submitit")
    from IMDLBenCo.bench.executors import SlurmOptions, SubmititExecutor, launch_command

    executor = SubmititExecutor("slurm", tmp_path / "jobs", nproc=4, slurm=SlurmOptions(
        partition="gpu", gpus_per_node=4, nodes=2, time_min=90, cpus_per_task=16, account="lab"))
    text = executor.sbatch_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=4", "#SBATCH --nodes=2", "#SBATCH --time=90",
                 "#SBATCH --cpus-per-task=16", "#SBATCH --account=lab", "#SBATCH --ntasks-per-node=1"):
        assert line in text, text
    cmd = launch_command(Path("cell.json"), "train", nproc=4, nnodes=2, node_rank=1, master="node7", port=29511)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=4"]
    assert "--nnodes=2" in cmd and "--node_rank=1" in cmd and "--master_addr=node7" in cmd
    assert cmd[-5:] == ["-m", "IMDLBenCo.bench.cell", "cell.json", "--stage", "train"]
    assert launch_command(Path("c.json"), "test", nproc=1)[1:] == ["-m", "IMDLBenCo.bench.cell", "c.json",
                                                                  "--stage", "test"]
    assert "--standalone" in launch_command(Path("c.json"), "test", nproc=2)


# --------------------------------------------------------------------------------------------- running cells


def test_a_stage_past_its_time_limit_is_stopped_and_its_error_line_found(tmp_path):
    from IMDLBenCo.bench.executors import _run_stage, failure_line

    started = time.time()
    error = _run_stage([sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"],
                       tmp_path / "slow.log", dict(os.environ), timeout_s=1.0)
    assert time.time() - started < 30
    assert error.startswith("stopped after the time limit of 1 s") and "slow.log" in error
    assert "working" in (tmp_path / "slow.log").read_text()
    # the script's own message, not torchrun's trailer
    log = tmp_path / "torchrun.log"
    log.write_text("[08:00] epoch 0\n\nerror: --data_path x: no such file\n(set IMDLBENCO_DEBUG=1 to see the "
                   "traceback)\nE0101 failed (exitcode: 1) local_rank: 0\ntorch.distributed.elastic.multiprocessing"
                   ".errors.ChildFailedError:\n====\nRuntimeError: noise after\n")
    assert failure_line(log) == "error: --data_path x: no such file"
    error = _run_stage([sys.executable, "-c", "raise SystemExit('error: bad input')"], tmp_path / "f.log",
                       dict(os.environ), timeout_s=None)
    assert error.startswith("error: bad input (exit status 1; log: ")


def _mtimes(out: Path) -> dict:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.glob("*/*/results.json")}


def test_run_kill_resume_and_a_failing_cell(tmp_path):
    """Two trained models and a given checkpoint that cannot be read: a kill during the second model
    and a rerun finish the rest without redoing finished cells; the broken cell fails in one line,
    the others go on, and the exit status says so."""
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    models = [{**DEMO, "id": "first"}, {**DEMO, "id": "second", "options": {"width": 6}},
              {**DEMO, "id": "broken", "checkpoint": "broken.pth"}]
    path = write_protocol(tmp_path / "p.yaml", tiny_protocol(models))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "IMDLBenCo.cli", "bench", str(path), "--out", str(out)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    try:
        # kill once the first model is done and the second one's training has started
        while not (out / "second" / "train.log").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    first_run = proc.stdout.read()
    assert "[1/6] first/setA: train + test ... trained and tested" in first_run, first_run
    done_before = _mtimes(out)
    assert set(done_before) == {"first/setA/results.json", "first/setB/results.json"}, first_run
    time.sleep(1.0)  # the killed training's process is gone (it dies with its parent)

    rerun = benco(["bench", str(path), "--out", str(out)], tmp_path)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    lines = rerun.stdout.splitlines()
    assert lines[1].startswith("[1/6] first/setA: done before, skipped: pixel_f1 ")
    assert lines[2].startswith("[2/6] first/setB: done before, skipped")
    assert "[3/6] second/setA: train + test ... trained and tested in" in lines[3]
    assert "[4/6] second/setB: test ... tested in" in lines[4]
    assert "[5/6] broken/setA: test ... FAILED after" in lines[5] and "broken.pth" in lines[5]
    assert lines[-1].startswith("4/6 cell(s) done, 2 failed or blocked: broken/setA, broken/setB")
    after = _mtimes(out)
    assert {k: after[k] for k in done_before} == done_before  # finished cells were not redone
    assert len(after) == 4

    # each cell's results.json: records of its set, the protocol key with the cell's provenance
    book = json.loads((out / "bench.json").read_text())
    status = {c["id"]: c["status"] for c in book["cells"]}
    assert status == {"first/setA": "done", "first/setB": "done", "second/setA": "done", "second/setB": "done",
                      "broken/setA": "failed", "broken/setB": "failed"}
    results = json.loads((out / "second" / "setA" / "results.json").read_text())
    assert results["schema"] == "imdlbenco.results/1" and results["script"] == "bench"
    proto = results["protocol"]
    assert proto["name"] == "tiny" and proto["cell"] == "second/setA" and proto["file"] == str(path)
    cell = next(c for c in book["cells"] if c["id"] == "second/setA")
    assert proto["provenance"] == cell["provenance"]
    records = results["records"]
    assert {r["dataset"]["name"] for r in records} == {"setA"}
    assert [(r["attack"] or {}).get("param") for r in records] == [None, 0, 3]
    assert {r["checkpoint"]["rule"] for r in records} == {"validation"}
    marker = json.loads((out / "second" / "train.json").read_text())
    assert {r["checkpoint"]["sha256"] for r in records} == {marker["checkpoint_sha256"]}
    rows = (out / "second" / "setA" / "per_image.csv").read_text().splitlines()
    assert rows[0].startswith("set,epoch,attack,param,name") and len(rows) == 1 + 3 * records[0]["dataset"]["images"]
    assert set(results["stages"]) == {"test", "robust"}

    # a third run: nothing left but the broken cells, which fail again
    third = benco(["bench", str(path), "--out", str(out), "--only", "first", "--only", "second/setB"], tmp_path)
    assert third.returncode == 0 and third.stdout.count("done before, skipped") == 3, third.stdout
    assert _mtimes(out) == after


def test_submitit_local_executor_runs_each_cell_as_a_job(tmp_path):
    """The Slurm code path on submitit's local executor: both cells of one model run as concurrent
    jobs; the training lock makes one of them train and the other use its checkpoint."""
    pytest.importorskip("submitit")
    path = write_protocol(tmp_path / "p.yaml", tiny_protocol([{**DEMO, "id": "m"}], robustness="none"))
    out = tmp_path / "out"
    proc = benco(["bench", str(path), "--out", str(out), "--executor", "submitit-local", "--time", "5"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("tested in") == 2 and proc.stdout.count("trained and tested") == 1, proc.stdout
    book = json.loads((out / "bench.json").read_text())
    assert all(c["status"] == "done" and c["job_id"] for c in book["cells"])
    assert (out / "m" / "train.log").read_text().count("--stage train") == 1
    again = benco(["bench", str(path), "--out", str(out), "--executor", "submitit-local"], tmp_path)
    assert again.returncode == 0 and again.stdout.count("done before, skipped") == 2

    # published weights (a bare state dict) tested as they are: `checkpoint:`, no training
    import torch

    state = torch.load(out / "m" / "train" / "checkpoint-best.pth", weights_only=True)["model"]
    torch.save({"model": state}, tmp_path / "published.pth")
    given = write_protocol(tmp_path / "given.yaml", tiny_protocol(
        [{**DEMO, "id": "pub", "checkpoint": "published.pth"}], robustness="none"))
    proc = benco(["bench", str(given), "--out", str(out), "--only", "pub/setA"], tmp_path)
    assert proc.returncode == 0 and "[1/1] pub/setA: test ... tested in" in proc.stdout, proc.stdout + proc.stderr
    record = json.loads((out / "pub" / "setA" / "results.json").read_text())["records"][0]
    assert record["checkpoint"]["rule"] == "given" and record["dataset"]["name"] == "setA"
    assert not (out / "pub" / "train").exists()


@pytest.mark.slow
def test_smoke_protocol_end_to_end_under_three_minutes(tmp_path):
    started = time.time()
    proc = benco(["bench", "smoke"], tmp_path, timeout=600)
    took = time.time() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("trained and tested") == 2 and proc.stdout.count("tested in") == 4
    assert took < 180, took
    results = json.loads((tmp_path / "bench_smoke" / "DemoNet-w12" / "synth_test" / "results.json").read_text())
    clean = next(r for r in results["records"] if r["attack"] is None)
    assert clean["metrics"]["pixel_f1"]["value"] > 0.2  # it learned something
    again = benco(["bench", "smoke"], tmp_path)
    assert again.returncode == 0 and again.stdout.count("done before, skipped") == 4


# --------------------------------------------------------------------------------------------- shipped protocols


def _miniature_data(tmp_path: Path) -> Path:
    """The datasets of Protocol-CAT and Protocol-MVSS prepared from miniature archives (the layouts of
    test_data_prepare), the lists of `benco data protocol`, and the files a user brings."""
    import test_data_prepare as tdp

    from IMDLBenCo.datasets.prepare import prepare_dataset

    root = tmp_path / "data"
    src = tmp_path / "src"
    src.mkdir()
    ds, clone = tdp.build_casia1(src)
    prepare_dataset("casia1", [str(ds), str(clone)], str(root / "CASIA1.0"))
    prepare_dataset("casia2", [str(tdp.build_casia2_corrected(src))], str(root / "CASIA2.0"))
    prepare_dataset("coverage", [str(tdp.build_coverage(src))], str(root / "COVERAGE"))
    prepare_dataset("columbia", [str(a) for a in tdp.build_columbia(src)], str(root / "Columbia"))
    prepare_dataset("nist16", [str(tdp.build_nist16(src))], str(root / "NIST16"))
    imd = src / "IMD2020"
    tdp.save(imd / "1a1ogs" / "1a1ogs_orig.jpg", tdp.rgb(50, 70, 1), quality=95)
    tdp.save(imd / "1a1ogs" / "c8tf5mq_0.png", tdp.rgb(50, 70, 2))
    tdp.save(imd / "1a1ogs" / "c8tf5mq_0_mask.png", tdp.box(50, 70, 10, 30, 10, 40))
    prepare_dataset("imd2020", [str(imd)], str(root / "IMD2020"))
    # Protocol-CAT's lists that `benco data prepare` cannot make: small JsonDataset files
    pair = [str(root / "CASIA2.0" / "Tp" / p.name) for p in sorted((root / "CASIA2.0" / "Tp").iterdir())][:1]
    mask = str(next((root / "CASIA2.0" / "Gt").iterdir()))
    for rel in ("FantasticReality_v1/FantasticReality.json", "tampCOCO/sp_COCO_list.json",
                "tampCOCO/cm_COCO_list.json", "tampCOCO/bcm_COCO_list.json", "tampCOCO/bcmc_COCO_list.json",
                "compRAISE/compRAISE_list_1024.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps([[pair[0], mask]]))
    for protocol in ("cat", "mvss", "casia"):
        assert main(["data", "protocol", protocol, "--root", str(root)]) == 0
    return root


def test_shipped_protocols_pass_the_dry_run_on_the_miniature_layouts(tmp_path, capsys):
    root = _miniature_data(tmp_path)
    capsys.readouterr()
    for stem in ("protocol-cat", "protocol-mvss", "casia"):
        # the pretrained weights each recipe names are what is missing first
        assert main(["bench", stem, "--dry-run", "--data-root", str(root), "--out", str(tmp_path / stem)]) == 1
        out = capsys.readouterr().out
        assert "missing (" in out and str(root / "weights") in out
        assert "no such file or folder" not in out, out  # every dataset of the protocol is there
    (root / "weights").mkdir()
    from IMDLBenCo.cli.init import find_recipes

    for _, recipe in find_recipes("model_zoo"):
        (root / "weights" / recipe["weights"]["file"]).write_bytes(b"weights")
    expected = {"protocol-cat": (6, 4), "protocol-mvss": (8, 5), "casia": (8, 1)}
    for stem, (models, sets) in expected.items():
        assert main(["bench", stem, "--dry-run", "--data-root", str(root), "--out", str(tmp_path / stem)]) == 0
        out = capsys.readouterr().out
        assert f"cells ({models * sets}):" in out and "missing" not in out, out
        assert out.count(" pending ") == models * sets + models
