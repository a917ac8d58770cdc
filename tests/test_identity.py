"""IMDLBenCo.datasets.identity: cached file sha256 and dataset content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from IMDLBenCo.datasets import identity
from IMDLBenCo.datasets.identity import dataset_content_hash, file_sha256, path_content_hash


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("IMDLBENCO_CACHE_DIR", str(tmp_path / "cache"))


def _count_reads(monkeypatch) -> list:
    calls = []
    real = identity._hash_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(identity, "_hash_file", counting)
    return calls


def make_mani(root: Path, n: int = 3, seed: int = 0, authentic: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    for i in range(n):
        h, w = 12 + i, 17 + 2 * i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "Tp" / f"im{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[2:6, 3 + i: 9 + i] = 255
        Image.fromarray(mask).save(root / "Gt" / f"im{i}.png")
    if authentic:
        (root / "Au").mkdir()
        for i in range(authentic):
            Image.fromarray(rng.integers(0, 256, (10, 11, 3), dtype=np.uint8)).save(root / "Au" / f"au{i}.png")
    return root


def test_file_sha256_equals_hashlib_and_sha256sum(tmp_path: Path):
    rng = np.random.default_rng(1)
    for size in (0, 1, (1 << 20) - 1, (1 << 20) + 7, 3 * (1 << 20)):  # around the chunk size
        p = tmp_path / f"f{size}.bin"
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        p.write_bytes(data)
        assert file_sha256(str(p)) == hashlib.sha256(data).hexdigest()
    if shutil.which("sha256sum"):
        out = subprocess.run(["sha256sum", str(p)], capture_output=True, text=True, check=True).stdout
        assert file_sha256(p) == out.split()[0]


def test_cache_is_used_on_second_call_and_across_processes(tmp_path: Path, monkeypatch):
    p = tmp_path / "a.bin"
    p.write_bytes(b"hello world")
    calls = _count_reads(monkeypatch)
    first = file_sha256(str(p))
    assert calls == [str(p.resolve())]
    assert file_sha256(str(p)) == first
    assert len(calls) == 1, "an unchanged file is not read again"
    # a link to it is the same real file
    link = tmp_path / "link.bin"
    link.symlink_to(p)
    assert file_sha256(str(link)) == first and len(calls) == 1
    # the cache is a file: a new process (here: the same calls, nothing kept in memory) uses it
    assert any((tmp_path / "cache" / "file_sha256").iterdir())


def test_changed_file_is_hashed_again(tmp_path: Path, monkeypatch):
    p = tmp_path / "a.bin"
    p.write_bytes(b"aaaa")
    calls = _count_reads(monkeypatch)
    h1 = file_sha256(p)
    p.write_bytes(b"aaab")  # same size: the mtime tells
    os.utime(p, ns=(os.stat(p).st_atime_ns, os.stat(p).st_mtime_ns + 1_000_000))
    h2 = file_sha256(p)
    assert h1 != h2 and h2 == hashlib.sha256(b"aaab").hexdigest() and len(calls) == 2
    p.write_bytes(b"aaabc")  # another size
    assert file_sha256(p) == hashlib.sha256(b"aaabc").hexdigest() and len(calls) == 3


@pytest.mark.parametrize("damage", ["garbage", "wrong_types", "unwritable"])
def test_corrupt_or_unwritable_cache_is_ignored(tmp_path: Path, monkeypatch, damage):
    p = tmp_path / "a.bin"
    p.write_bytes(b"x" * 100)
    want = hashlib.sha256(b"x" * 100).hexdigest()
    assert file_sha256(p) == want
    [cache_file] = list((tmp_path / "cache" / "file_sha256").iterdir())
    if damage == "garbage":
        cache_file.write_bytes(b"\x00{not json")
    elif damage == "wrong_types":
        data = json.loads(cache_file.read_text())
        for key in data["files"]:
            data["files"][key] = [100, "x", 5]
        cache_file.write_text(json.dumps(data))
    else:
        monkeypatch.setenv("IMDLBENCO_CACHE_DIR", str(p / "not_a_dir"))  # a file in the way
    calls = _count_reads(monkeypatch)
    assert file_sha256(p) == want and len(calls) == 1
    if damage != "unwritable":  # repaired
        assert file_sha256(p) == want and len(calls) == 1


def test_missing_file_is_an_oserror(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "nope.bin")


def test_dataset_hash_is_independent_of_location_and_sensitive_to_bytes(tmp_path: Path):
    from IMDLBenCo.datasets import ManiDataset

    src = make_mani(tmp_path / "a" / "ds", n=3)
    h = dataset_content_hash(ManiDataset(str(src), keep_size=True))
    assert h["content_hash"].startswith("sha256:") and len(h["content_hash"]) == 7 + 64
    assert (h["files"], h["samples"]) == (6, 3)
    assert path_content_hash(str(src)) == h
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(str(src), str(moved))
    assert path_content_hash(str(moved))["content_hash"] == h["content_hash"]
    # the documented definition, recomputed by hand
    lines = []
    for i in range(3):
        for role, sub in (("image", "Tp"), ("mask", "Gt")):
            data = (moved / sub / f"im{i}.png").read_bytes()
            lines.append(f"{role}\tim{i}.png\t{len(data)}\t{hashlib.sha256(data).hexdigest()}")
    want = "sha256:" + hashlib.sha256("".join(x + "\n" for x in sorted(lines)).encode()).hexdigest()
    assert h["content_hash"] == want
    # one byte changed (a mask), or a file renamed: another hash
    mask = moved / "Gt" / "im1.png"
    data = bytearray(mask.read_bytes())
    data[-5] ^= 1
    mask.write_bytes(bytes(data))
    assert path_content_hash(str(moved))["content_hash"] != h["content_hash"]
    mask.write_bytes(bytes(data[:-5]) + bytes([data[-5] ^ 1]) + bytes(data[-4:]))
    assert path_content_hash(str(moved))["content_hash"] == h["content_hash"]
    os.rename(moved / "Tp" / "im2.png", moved / "Tp" / "im9.png")
    os.rename(moved / "Gt" / "im2.png", moved / "Gt" / "im9.png")
    assert path_content_hash(str(moved))["content_hash"] != h["content_hash"]


def test_json_dataset_with_negative_and_same_files_as_mani(tmp_path: Path):
    from IMDLBenCo.datasets.utils import write_json_dataset

    src = make_mani(tmp_path / "ds", n=2, authentic=1)
    pairs = [(str(src / "Tp" / f"im{i}.png"), str(src / "Gt" / f"im{i}.png")) for i in range(2)]
    write_json_dataset(pairs, str(tmp_path / "pairs.json"))
    assert path_content_hash(str(tmp_path / "pairs.json"))["content_hash"] == path_content_hash(str(src))["content_hash"]
    au = str(src / "Au" / "au0.png")
    write_json_dataset(pairs + [(au, "Negative")], str(tmp_path / "with_au.json"))
    h = path_content_hash(str(tmp_path / "with_au.json"))
    assert (h["files"], h["samples"]) == (5, 3)
    data = (src / "Au" / "au0.png").read_bytes()
    lines = [f"image\tau0.png\t{len(data)}\t{hashlib.sha256(data).hexdigest()}", "mask\tau0.png\t0\tNegative"]
    for i in range(2):
        for role, sub in (("image", "Tp"), ("mask", "Gt")):
            d = (src / sub / f"im{i}.png").read_bytes()
            lines.append(f"{role}\tim{i}.png\t{len(d)}\t{hashlib.sha256(d).hexdigest()}")
    assert h["content_hash"] == "sha256:" + hashlib.sha256("".join(x + "\n" for x in sorted(lines)).encode()).hexdigest()
    # a Negative sample differs from the same image with an all-black mask file
    assert h["content_hash"] != path_content_hash(str(tmp_path / "pairs.json"))["content_hash"]


def test_balanced_dataset_hash_from_members(tmp_path: Path, monkeypatch):
    a = make_mani(tmp_path / "a", n=2, seed=1)
    b = make_mani(tmp_path / "b", n=3, seed=2)
    spec = tmp_path / "balanced.json"
    spec.write_text(json.dumps([["ManiDataset", "a"], ["ManiDataset", "b"]]))
    h = path_content_hash(str(spec))
    ha, hb = path_content_hash(str(a)), path_content_hash(str(b))
    assert h["members"] == [ha, hb]
    assert (h["files"], h["samples"]) == (10, 5)
    lines = sorted([f"dataset\t0\t2\t{ha['content_hash']}", f"dataset\t1\t3\t{hb['content_hash']}"])
    assert h["content_hash"] == "sha256:" + hashlib.sha256("".join(x + "\n" for x in lines).encode()).hexdigest()
    spec.write_text(json.dumps([["ManiDataset", "b"], ["ManiDataset", "a"]]))  # member order matters
    assert path_content_hash(str(spec))["content_hash"] != h["content_hash"]
    calls = _count_reads(monkeypatch)
    path_content_hash(str(spec))
    assert calls == [], "every file of the balanced dataset came from the cache"


def test_unreadable_file_is_one_dataset_error(tmp_path: Path):
    from IMDLBenCo.datasets import JsonDataset
    from IMDLBenCo.errors import DatasetError

    src = make_mani(tmp_path / "ds", n=2)
    spec = tmp_path / "pairs.json"
    spec.write_text(json.dumps([[str(src / "Tp" / "im0.png"), str(src / "Gt" / "im0.png")]]))
    ds = JsonDataset(str(spec), keep_size=True)
    os.remove(src / "Gt" / "im0.png")
    with pytest.raises(DatasetError, match="im0.png"):
        dataset_content_hash(ds)
