"""``benco data check`` / ``json`` / ``synth`` through ``IMDLBenCo.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from IMDLBenCo.cli import main
from IMDLBenCo.datasets import JsonDataset, ManiDataset


def save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def img(h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def mask(h=16, w=16):
    m = np.zeros((h, w), np.uint8)
    m[4:10, 4:10] = 255
    return m


@pytest.fixture
def bad_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    save(root / "Tp" / "good.png", img())
    save(root / "Gt" / "good_gt.png", mask())
    save(root / "Tp" / "nomask.png", img())
    save(root / "Gt" / "orphan.png", mask())
    save(root / "Tp" / "size.png", img())
    save(root / "Gt" / "size.png", mask(17, 16))
    save(root / "Tp" / "trunc.png", img(64, 64))
    data = (root / "Tp" / "trunc.png").read_bytes()
    (root / "Tp" / "trunc.png").write_bytes(data[: len(data) // 2])
    save(root / "Gt" / "trunc.png", mask(64, 64))
    grey = mask()
    grey[0, :8] = 100
    save(root / "Tp" / "grey.png", img())
    save(root / "Gt" / "grey.png", grey)
    save(root / "Tp" / "empty.png", img())
    save(root / "Gt" / "empty.png", np.zeros((16, 16), np.uint8))
    save(root / "Tp" / "dup.png", img())
    save(root / "Tp" / "dup.jpg", img())
    save(root / "Gt" / "dup.png", mask())
    (root / "Tp" / "README.txt").write_text("ignored")
    return root


def test_check_reports_every_problem_per_file(bad_dataset: Path, tmp_path: Path, capsys):
    clean = tmp_path / "clean.json"
    before = {p: p.read_bytes() for p in bad_dataset.rglob("*") if p.is_file()}
    rc = main(["data", "check", str(bad_dataset), "--write-clean", str(clean)])
    out = capsys.readouterr().out
    assert rc == 1
    expected = {
        "missing mask": "Tp/nomask.png",
        "mask without image": "Gt/orphan.png",
        "size mismatch": "Tp/size.png",
        "unreadable image": "Tp/trunc.png",
        "empty mask": "Gt/empty.png",
        "duplicate stem": "Tp/dup.jpg",
        "non-binary mask": "Gt/grey.png",
    }
    lines = out.splitlines()
    for kind, path in expected.items():
        assert any(kind in line and path in line for line in lines), (kind, out)
    grey_line = next(line for line in lines if "non-binary" in line)
    assert "WARNING" in grey_line and "3.12%" in grey_line and "127.5" in grey_line
    assert "README" not in out
    summary = lines[-2]
    assert "5 pairs read, 2 good; 7 error(s)" in summary and "duplicate stem: 2" in summary
    assert "1 warning(s)" in summary
    # the clean file lists the usable pairs only, and loads
    entries = json.loads(clean.read_text())
    assert sorted(Path(e[0]).name for e in entries) == ["good.png", "grey.png"]
    ds = JsonDataset(str(clean), is_resizing=True, output_size=8)
    assert len(ds) == 2 and all(ds[i]["label"].item() == 1 for i in range(2))
    assert {p: p.read_bytes() for p in bad_dataset.rglob("*") if p.is_file()} == before  # originals untouched


def test_check_json_dataset_and_bad_json(tmp_path: Path, capsys):
    save(tmp_path / "a.png", img())
    save(tmp_path / "a_m.png", mask())
    save(tmp_path / "au.png", img(seed=2))
    p = tmp_path / "list.json"
    p.write_text(json.dumps([["a.png", "a_m.png"], ["au.png", "Negative"], ["gone.png", "a_m.png"], ["a.png", "a_m.png"]]))
    rc = main(["data", "check", str(p)])
    out = capsys.readouterr().out
    assert rc == 1 and "missing image" in out and "gone.png" in out and "duplicate entry" in out
    assert "2 good" in out.splitlines()[-1]
    (tmp_path / "obj.json").write_text("{}")
    assert main(["data", "check", str(tmp_path / "obj.json")]) == 2
    assert "obj.json" in capsys.readouterr().err


def test_check_coverage(coverage_dir: Path, capsys):
    assert main(["data", "check", str(coverage_dir)]) == 0
    out = capsys.readouterr().out
    assert "91 pairs read, 91 good; 0 error(s)" in out and "Au/ holds 100 authentic images" in out
    assert "extra_masks" in out and "size_mismatch" in out
    assert main(["data", "check", str(coverage_dir / "size_mismatch")]) == 1
    out = capsys.readouterr().out
    mism = [line for line in out.splitlines() if "size mismatch" in line and line.startswith("ERROR")]
    assert len(mism) == 9
    for i in (41, 48, 55, 56, 57, 58, 59, 61, 95):
        assert any(f"Tp/{i}t.png" in line for line in mism)


def test_json_command(tmp_path: Path, capsys):
    save(tmp_path / "imgs" / "x.jpg", img())
    save(tmp_path / "imgs" / "y.png", img(seed=1))
    save(tmp_path / "masks" / "x_mask.png", mask())
    save(tmp_path / "masks" / "z.png", mask())
    save(tmp_path / "au" / "r.png", img(seed=3))
    out_json = tmp_path / "out" / "d.json"
    rc = main(["data", "json", str(tmp_path / "imgs"), str(tmp_path / "masks"), "-o", str(out_json),
               "--authentic", str(tmp_path / "au")])
    out = capsys.readouterr().out
    assert rc == 0 and "imgs/y.png" in out and "masks/z.png" in out
    entries = json.loads(out_json.read_text())
    # absolute folders give absolute paths (no ../../.. chains)
    assert entries == [[str(tmp_path / "imgs" / "x.jpg"), str(tmp_path / "masks" / "x_mask.png")],
                       [str(tmp_path / "au" / "r.png"), "Negative"]]
    ds = JsonDataset(str(out_json), is_resizing=True, output_size=8)
    assert [ds[i]["label"].item() for i in range(2)] == [1, 0]


def test_json_command_relative_folders(tmp_path: Path, monkeypatch):
    save(tmp_path / "imgs" / "x.jpg", img())
    save(tmp_path / "masks" / "x.png", mask())
    monkeypatch.chdir(tmp_path)
    assert main(["data", "json", "imgs", "masks", "-o", "out/d.json"]) == 0
    # relative folders: paths relative to the JSON file's folder, which JsonDataset resolves against
    assert json.loads((tmp_path / "out" / "d.json").read_text()) == [["../imgs/x.jpg", "../masks/x.png"]]
    assert len(JsonDataset(str(tmp_path / "out" / "d.json"), is_resizing=True, output_size=8)) == 1


def test_synth_command_and_determinism(tmp_path: Path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["data", "synth", str(a), "--n", "24", "--size", "64", "--seed", "3"]) == 0
    assert main(["data", "synth", str(b), "--n", "24", "--size", "64", "--seed", "3"]) == 0
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for split in ("train", "val", "test"):
        assert (a / split / "Tp").is_dir() and (a / f"{split}.json").is_file()
        assert main(["data", "check", str(a / split), "--quiet"]) == 0
        assert main(["data", "check", str(a / f"{split}.json"), "--quiet"]) == 0
    tests = json.loads((a / "test_datasets.json").read_text())
    assert tests and all((a / p).exists() for p in tests.values())
    entries = json.loads((a / "train.json").read_text())
    assert any(gt == "Negative" for _, gt in entries) and any(gt != "Negative" for _, gt in entries)
    total = sum(len(json.loads((a / f"{s}.json").read_text())) for s in ("train", "val", "test"))
    assert total == 24
    ds = ManiDataset(str(a / "train"), is_resizing=True, output_size=64)
    assert all(ds[i]["label"].item() == 1 for i in range(len(ds)))
    c = tmp_path / "c"
    assert main(["data", "synth", str(c), "--n", "24", "--size", "64", "--seed", "4"]) == 0
    first = sorted((a / "train" / "Tp").iterdir())[0]
    assert first.read_bytes() != (c / "train" / "Tp" / first.name).read_bytes()  # another seed, other images
