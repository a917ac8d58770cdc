"""`benco init`: the files it writes, the overwrite questions, the zoo run scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from IMDLBenCo.cli import init as init_cmd
from IMDLBenCo.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_init_base_writes_the_project(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    for name in init_cmd.BASE_FILES:
        assert (tmp_path / name).is_file(), name
    assert "Successfully initialized" in capsys.readouterr().out
    for name in init_cmd.SCRIPTS:
        text = (tmp_path / name).read_text()
        compile(text, name, "exec")
        # editable import line: the class in the three scripts the tutorial edits, the module in
        # the two it does not mention (so renaming the class keeps them working)
        if name in ("train.py", "test.py", "test_robust.py"):
            assert "from mymodel import MyModel" in text and "TODO" in text
        else:
            assert "\nimport mymodel  # noqa: F401  TODO" in text and "MyModel" not in text.split("import mymodel")[1]
        assert text.count("_main(") == 1  # one library call: the script stays thin
    train = (tmp_path / "train.py").read_text()
    assert "evaluators = [" in train and "train_transform = Compose([" in train
    # the class-activation-map script and its launcher (same output folder as save-images)
    assert "cam_main()" in (tmp_path / "test_cam.py").read_text()
    cam_launcher = (tmp_path / "test_cam_mymodel.sh").read_text()
    assert "./test_cam.py" in cam_launcher and 'base_dir="./save_img_dir"' in cam_launcher
    assert "test_cam.py" in (tmp_path / "README-IMDLBenCo.md").read_text()
    assert "robustness_list = [" in (tmp_path / "test_robust.py").read_text()
    assert json.loads((tmp_path / "test_datasets.json").read_text())
    assert all(len(e) == 2 for e in json.loads((tmp_path / "balanced_dataset.json").read_text()))


def test_generated_model_obeys_the_contract_and_exposes_its_options(tmp_path, monkeypatch):
    import torch

    from IMDLBenCo.engine import check_model_output

    monkeypatch.chdir(tmp_path)
    main(["init", "--yes"])
    namespace = {"__name__": "generated_mymodel"}
    source = (tmp_path / "mymodel.py").read_text().replace("@MODELS.register_module()", "")
    exec(compile(source, "mymodel.py", "exec"), namespace)
    model = namespace["MyModel"](MyModel_Customized_param=3, pre_trained_weights="")
    batch = {"image": torch.randn(2, 3, 16, 16), "mask": (torch.rand(2, 1, 16, 16) > 0.5).float(),
             "label": torch.ones(2, dtype=torch.long)}
    out = model(**batch)
    check_model_output(out, batch, training=True)
    assert out["pred_label"].shape == (2,)
    proc = subprocess.run([sys.executable, "train.py", "--model", "MyModel", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "--MyModel_Customized_param" in proc.stdout and "--pre_trained_weights" in proc.stdout


def test_init_twice_keeps_edited_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["init"])
    (tmp_path / "train.py").write_text("# my edits\n")
    (tmp_path / "mymodel.py").unlink()
    main(["init", "--skip-existing"])
    assert (tmp_path / "train.py").read_text() == "# my edits\n"
    assert (tmp_path / "mymodel.py").is_file()  # missing files are written
    main(["init", "--yes"])
    assert (tmp_path / "train.py").read_text() != "# my edits\n"


def test_init_asks_before_overwriting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["init"])
    for name in init_cmd.BASE_FILES:
        (tmp_path / name).write_text("edited")
    answers = iter(["n", "maybe", "y", "none"])  # mymodel.py: n; train.py: (re-asked) y; test.py: none
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    main(["init"])
    contents = {name: (tmp_path / name).read_text() for name in init_cmd.BASE_FILES}
    assert contents["mymodel.py"] == "edited"
    assert contents["train.py"] != "edited"
    assert all(contents[n] == "edited" for n in init_cmd.BASE_FILES[2:])
    answers = iter(["all"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    main(["init"])
    assert all((tmp_path / n).read_text() != "edited" for n in init_cmd.BASE_FILES)


def test_init_without_a_terminal_keeps_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["init"])
    (tmp_path / "test.py").write_text("edited")

    def no_stdin(prompt=""):
        raise EOFError

    monkeypatch.setattr("builtins.input", no_stdin)
    main(["init"])
    assert (tmp_path / "test.py").read_text() == "edited"


def test_init_model_zoo_writes_run_scripts_per_recipe(tmp_path, monkeypatch):
    zoo = tmp_path / "pkg" / "model_zoo" / "foo"
    zoo.mkdir(parents=True)
    (zoo / "recipe.json").write_text(json.dumps({
        "model": "Foo_Net", "nproc_per_node": 2,
        "train": {"if_resizing": True, "if_not_amp": False, "image_size": 256, "lr": 1e-4, "use_x": False,
                  "scales": [1, 2]},
        "weights": {"option": "--w", "file": "w.pth", "source": "https://example.org/w.pth"},
    }))
    backbones = tmp_path / "pkg" / "modules" / "backbones"
    backbones.mkdir(parents=True)
    (backbones / "recipe.json").write_text(json.dumps([{"model": "bar"}, {"model": "srm_bar"}]))
    monkeypatch.setattr(init_cmd, "PACKAGE", tmp_path / "pkg")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    main(["init", "model_zoo", "--yes"])
    train = (work / "runs" / "train_Foo_Net.sh").read_text()
    assert "min(2, torch.cuda.device_count())" in train and "--nproc_per_node=${nproc}" in train
    assert "--model Foo_Net" in train and "--if_resizing" in train
    assert "--if_not_amp" not in train and "--use_x false" in train and "--scales 1 2" in train
    test = (work / "runs" / "test_Foo_Net.sh").read_text()
    assert "--lr" not in test and "--image_size 256" in test and "./test.py" in test
    assert {p.name for p in (work / "runs").iterdir()} == {
        "train_Foo_Net.sh", "test_Foo_Net.sh", "test_robust_Foo_Net.sh", "save_images_Foo_Net.sh"}
    for name in init_cmd.SCRIPTS:
        assert "# from mymodel import MyModel" in (work / name).read_text() and "\nimport mymodel" not in (work / name).read_text()
    assert not (work / "mymodel.py").exists()
    readme = (work / "README-IMDLBenCo.md").read_text()
    assert "runs/train_<Model>.sh" in readme and "mymodel.py" not in readme
    main(["init", "backbone", "--yes"])
    assert (work / "runs" / "train_srm_bar.sh").is_file() and (work / "runs" / "save_images_bar.sh").is_file()


def test_init_model_zoo_without_recipes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(init_cmd, "PACKAGE", tmp_path / "empty")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "backbone", "--skip-existing"]) == 0
    assert "no recipe found" in capsys.readouterr().out
    assert (tmp_path / "train.py").is_file()


def test_real_zoo_recipes_give_scripts(tmp_path, monkeypatch):
    recipes = init_cmd.find_recipes("model_zoo")
    # The zoo ships a recipe for each of the eleven published models (IMDL-BenCo's model zoo) and the DINOv3
    # LoRA baseline
    assert {recipe["model"] for _, recipe in recipes} == {
        "IML_ViT", "MVSSNet", "Cat_Net", "PSCC_Net", "ObjectFormer", "Trufor", "SPAN", "MantraNet", "Mesorch",
        "SparseViT", "MSCDI_Net", "DINOv3_IML"}
    monkeypatch.chdir(tmp_path)
    main(["init", "model_zoo", "--yes"])
    for _, recipe in recipes:
        assert (tmp_path / "runs" / f"train_{recipe['model']}.sh").is_file()


def test_zoo_recipe_paths_replace_the_placeholders(tmp_path, monkeypatch):
    """A recipe that names its own --data_path gets it once (not the placeholder as well)."""
    zoo = tmp_path / "pkg" / "model_zoo" / "foo"
    zoo.mkdir(parents=True)
    (zoo / "recipe.json").write_text(json.dumps({
        "model": "Foo_Net", "nproc_per_node": 1,
        "train": {"if_resizing": True, "data_path": "/data/balanced.json", "image_size": 64},
        "weights": {"option": "--w", "file": "w.pth", "source": "x"}}))
    monkeypatch.setattr(init_cmd, "PACKAGE", tmp_path / "pkg")
    monkeypatch.chdir(tmp_path)
    main(["init", "model_zoo", "--yes"])
    train = (tmp_path / "runs" / "train_Foo_Net.sh").read_text()
    assert train.count("--data_path") == 1 and '--data_path "/data/balanced.json"' in train
    assert train.count("--test_data_path") == 1


def test_failed_launcher_prints_the_end_of_error_log(tmp_path):
    """The launchers send all output to log files; a failed run must still say so on the console."""
    subprocess.run([sys.executable, "-m", "IMDLBenCo.cli", "init"], cwd=tmp_path, check=True, capture_output=True)
    launcher = tmp_path / "train_mymodel.sh"
    text = launcher.read_text().replace("torchrun \\\n    --standalone \\\n    --nnodes=1 \\\n    --nproc_per_node=1 \\\n",
                                        f"{sys.executable} \\\n")
    assert sys.executable in text
    launcher.write_text(text)
    proc = subprocess.run(["sh", str(launcher)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "train_mymodel.sh: training failed (exit status" in proc.stderr
    assert "The last lines of ./output_dir/error.log" in proc.stderr
    assert "/mnt/data0/public_datasets/IML/CASIA2.0" in proc.stderr  # the actual error, from error.log


def test_init_model_zoo_writes_only_the_named_models(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "model_zoo", "trufor", "Cat_Net", "--yes"]) == 0  # any case
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
        f"{stage}_{model}.sh" for stage in ("train", "test", "test_robust", "save_images") for model in ("Trufor", "Cat_Net"))
    assert (tmp_path / "train.py").is_file()
    assert main(["init", "model_zoo", "Trufr"]) == 2
    err = capsys.readouterr().err
    assert "no recipe for 'Trufr' (did you mean Trufor?)" in err and "IML_ViT" in err
    assert main(["init", "base", "Trufor"]) == 2
    assert "benco init model_zoo Trufor" in capsys.readouterr().err


def _run_lines(text: str, command: str) -> str:
    """The launcher with its torchrun/python command replaced by ``command`` (the same redirections)."""
    start = text.index("\ntorchrun \\\n") if "\ntorchrun \\\n" in text else text.index("\npython ")
    end = text.index("2> ${base_dir}/")
    return text[:start] + "\n" + command + " \\\n" + text[end:]


def test_launchers_say_where_the_results_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["init", "--yes"])
    main(["init", "model_zoo", "PSCC_Net", "--yes"])
    launchers = [n for n in init_cmd.BASE_FILES if n.endswith(".sh")] + [f"runs/{s}_PSCC_Net.sh" for s in (
        "train", "test", "test_robust", "save_images")]
    for name in launchers:
        path = tmp_path / name
        path.write_text(_run_lines(path.read_text(), "true"))
        proc = subprocess.run(["sh", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        line = proc.stdout.strip().splitlines()[-1]
        assert line.startswith(f"{Path(name).name}: ") and "finished. Results in ./" in line, line
        assert "console output in ./" in line


def test_zoo_launcher_starts_one_process_per_gpu_at_most_the_recipes(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    main(["init", "model_zoo", "Cat_Net", "--yes"])  # recipe: 4 processes (4 GPUs in the published setting)
    text = (tmp_path / "runs" / "train_Cat_Net.sh").read_text()
    assert "--nproc_per_node=${nproc}" in text and "--nproc_per_node=4" not in text
    probe = tmp_path / "probe.sh"
    probe.write_text(_run_lines(text, 'echo "NPROC_IS=${nproc}"'))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    out = subprocess.run(["sh", str(probe)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    got = (tmp_path / "output_dir_Cat_Net" / "logs.log").read_text()
    assert f"NPROC_IS={max(1, min(4, torch.cuda.device_count()))}" in got, (got, out.stderr)
    subprocess.run(["sh", str(probe)], cwd=tmp_path, capture_output=True, text=True, env={**env, "NPROC": "3"},
                   timeout=120)
    assert "NPROC_IS=3" in (tmp_path / "output_dir_Cat_Net" / "logs.log").read_text()
