"""``benco data prepare`` on hostile or broken input (issue 21), each case built small in tmp_path.

Paths that leave the source (absolute, ``..``, links pointing out), archive bombs and lying or
duplicated members, broken images, killed and interrupted runs, folders the user made, bad numbers.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_data_prepare import box, build_casia1, build_casia2_corrected, build_columbia, build_coverage, rgb, save

from IMDLBenCo.cli import main
from IMDLBenCo.datasets.check import check_dataset
from IMDLBenCo.datasets.prepare import PREPARERS, PrepareOptions, prepare_dataset
from IMDLBenCo.datasets.prepare import writer as prepare_writer
from IMDLBenCo.errors import DatasetError, UsageError

REPO = Path(__file__).resolve().parents[1]


def all_bytes_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def secret_image(root: Path, seed: int = 99) -> Path:
    """A readable image outside every source: it must never reach OUT."""
    return save(root / "elsewhere" / "secret.png", rgb(24, 32, seed))


_NIST_HEADER = "TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|DonorFileID|DonorFileName|IsTarget|BaseFileName"


def nist_with_rows(root: Path, rows: list[str]) -> Path:
    nc = root / "NC2016_Test0613"
    save(nc / "probe" / "NC2016_0002.jpg", rgb(40, 60, 3), quality=92)
    save(nc / "probe" / "NC2016_0005.jpg", rgb(40, 60, 4), quality=92)
    save(nc / "reference" / "manipulation" / "mask" / "NC2016_5000.png", box(40, 60, 8, 30, 8, 40, value=0, bg=255))
    good = "Manipulation|NC2016_0002|probe/NC2016_0002.jpg|reference/manipulation/mask/NC2016_5000.png|||Y|"
    csv_path = nc / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    csv_path.write_text("\n".join([_NIST_HEADER, good] + rows) + "\n")
    return nc


# --------------------------------------------------------------------------------------------- rule 1: containment


def test_nist16_csv_paths_leaving_the_source_are_refused(tmp_path: Path, capsys):
    secret = secret_image(tmp_path)
    secret_mask = save(tmp_path / "elsewhere" / "secret_mask.png", box(24, 32, 2, 9, 2, 9, value=0, bg=255))
    nc_dir = tmp_path / "NC2016_Test0613"
    (nc_dir / "probe").mkdir(parents=True)
    os.symlink(secret, nc_dir / "probe" / "NC2016_0009.png")  # a link inside the source pointing out
    rel_up = os.path.relpath(secret, nc_dir)  # ../elsewhere/secret.png
    rows = [
        f"Manipulation|NC2016_0003|{secret}||||N|",  # absolute path, authentic
        f"Manipulation|NC2016_0004|{rel_up}||||N|",  # climbs out with ..
        "Manipulation|NC2016_0009|probe/NC2016_0009.png||||N|",  # the link
        f"Manipulation|NC2016_0002|probe/NC2016_0002.jpg|{secret_mask}|||Y|",  # duplicate probe: ignored
        f"Manipulation|NC2016_0005|probe/NC2016_0005.jpg|../../{os.path.relpath(secret_mask, nc_dir)}|||Y|",
    ]
    nc = nist_with_rows(tmp_path, rows)
    out = tmp_path / "out"
    rc = main(["data", "prepare", "nist16", str(nc), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1, captured.out + captured.err
    assert "Traceback" not in captured.err and "could not be used" in captured.err
    # nothing of the secret files reached OUT: not as a file, not in the JSON lists, not in the manifest
    everything = all_bytes_under(out)
    assert secret.read_bytes() not in everything and secret_mask.read_bytes() not in everything
    assert not (out / "Au").exists() and not (out / "with_authentic.json").exists()
    assert sorted(p.name for p in (out / "Tp").iterdir()) == ["NC2016_0002.jpg"]
    summary = json.loads((out / "prepare_summary.json").read_text())
    reasons = [e["reason"] for e in summary["errors"]]
    assert len(reasons) == 4 and all("refused" in r for r in reasons), reasons
    assert any("absolute path" in r for r in reasons) and any("'..'" in r for r in reasons)
    assert any("outside the sources" in r for r in reasons)  # the link
    assert "errors (4)" in captured.out


def test_nist16_hostile_csv_inside_an_archive(tmp_path: Path):
    secret = secret_image(tmp_path)
    nc = nist_with_rows(tmp_path / "src", [f"Manipulation|NC2016_0003|{secret}||||N|",
                                           "Manipulation|NC2016_0004|../../../../../../../../etc/hostname||||N|"])
    archive = tmp_path / "NC2016_Test0613.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(nc.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(nc.parent).as_posix())
    result = prepare_dataset("nist16", [str(archive)], str(tmp_path / "out"))
    assert not result.ok and len(result.errors) == 2 and result.written["pairs"] == 1
    assert secret.read_bytes() not in all_bytes_under(tmp_path / "out")


def test_csv_at_the_source_root_cannot_reach_above_it(tmp_path: Path):
    """The dataset root NIST16 derives from the CSV's place lies above the source: nothing there is read."""
    secret = secret_image(tmp_path / "a")  # a/elsewhere/secret.png: where the CSV's dataset root would point
    src = tmp_path / "a" / "b" / "c"
    save(src / "probe" / "NC2016_0002.jpg", rgb(40, 60, 3), quality=92)
    (src / "NC2016-manipulation-ref.csv").write_text(
        _NIST_HEADER + "\nManipulation|NC2016_0003|elsewhere/secret.png||||N|\n")
    result = prepare_dataset("nist16", [str(src)], str(tmp_path / "out"))
    assert [e["reason"].split(":")[0] for e in result.errors] == ["ProbeFileName refused"]
    assert secret.read_bytes() not in all_bytes_under(tmp_path / "out")


@pytest.mark.parametrize("dataset", ["casia1", "casia2", "columbia", "coverage", "korus", "imd2020"])
def test_links_pointing_out_are_refused_by_every_preparer(tmp_path: Path, dataset: str):
    """A symbolic link inside the source, named like a file the preparer reads, pointing outside."""
    secret = secret_image(tmp_path)
    if dataset == "casia1":
        ds, clone = build_casia1(tmp_path)
        sources = [ds, clone]
        (ds / "Au.zip").unlink()
        (ds / "Au").mkdir()
        save(ds / "Au" / "Au_ani_0001.jpg", rgb(20, 30, 1), quality=95)
        link = ds / "Au" / "Au_ani_0009.jpg"
    elif dataset == "casia2":
        base = tmp_path / "CASIA2.0"
        save(base / "Au" / "Au_ani_00001.jpg", rgb(40, 60, 1), quality=95)
        save(base / "Tp" / "Tp_D_CRN_S_N_cha00063_art00014_11818.jpg", rgb(40, 60, 2), quality=95)
        save(base / "Gt" / "Tp_D_CRN_S_N_cha00063_art00014_11818_gt.png", box(40, 60, 5, 20, 5, 30))
        save(base / "Gt" / "Tp_D_CRN_S_N_cha00063_art00014_11819_gt.png", box(24, 32, 5, 20, 5, 30))
        link = base / "Tp" / "Tp_D_CRN_S_N_cha00063_art00014_11819.png"
        sources = [base]
    elif dataset == "columbia":
        for a in build_columbia(tmp_path):
            with tarfile.open(a) as tf:
                tf.extractall(tmp_path / "col", filter="data")
        sources = [tmp_path / "col"]
        link = tmp_path / "col" / "4cam_auth" / "canong3_02_sub_09.tif"
    elif dataset == "coverage":
        cov = build_coverage(tmp_path)
        sources = [cov]
        link = cov / "image" / "7t.tif"
        save(cov / "mask" / "7forged.tif", box(24, 32, 5, 20, 5, 30))
    elif dataset == "korus":
        data = tmp_path / "data-images"
        save(data / "Sony_A57" / "tampered-realistic" / "DSC06083.TIF", rgb(40, 60, 1))
        save(data / "Sony_A57" / "ground-truth" / "DSC06083.PNG", box(40, 60, 10, 30, 10, 30))
        (data / "Sony_A57" / "pristine").mkdir()
        link = data / "Sony_A57" / "pristine" / "DSC00001.TIF"
        sources = [data]
    else:
        imd = tmp_path / "IMD2020"
        save(imd / "1a1ogs" / "c8tf5mq_0.png", rgb(40, 60, 2))
        save(imd / "1a1ogs" / "c8tf5mq_0_mask.png", box(40, 60, 10, 30, 10, 40))
        link = imd / "1a1ogs" / "1a1ogs_orig.png"
        sources = [imd]
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, link)
    out = tmp_path / "out"
    result = prepare_dataset(dataset, [str(s) for s in sources], str(out))
    assert result.written["pairs"] >= 1
    assert [e["file"].rsplit("/", 1)[-1] for e in result.errors] == [link.name], result.errors
    assert "outside the sources" in str(result.errors[0]["reason"]) and not result.ok
    assert secret.read_bytes() not in all_bytes_under(out)


# --------------------------------------------------------------------------------------------- the output folder


def test_failed_prepare_keeps_a_folder_the_user_made(tmp_path: Path, monkeypatch, capsys):
    empty_src = tmp_path / "empty_source"
    empty_src.mkdir()
    made = tmp_path / "made_by_user"
    made.mkdir()
    assert main(["data", "prepare", "casia2", str(empty_src), "--out", str(made)]) == 2
    assert made.is_dir() and not list(made.iterdir())  # kept, and nothing left in it
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["data", "prepare", "casia2", str(empty_src), "--out", "."]) == 2
    assert here.is_dir() and not list(here.iterdir())
    # folders the run created are removed again, up to the first one that existed
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / "keep.txt").write_text("user file")
    assert main(["data", "prepare", "casia2", str(empty_src), "--out", str(tmp_path / "parent" / "a" / "b")]) == 2
    assert sorted(p.name for p in (tmp_path / "parent").iterdir()) == ["keep.txt"]
    assert "Traceback" not in capsys.readouterr().err


def test_stale_temporary_folders_and_incomplete_outputs(tmp_path: Path, capsys):
    archive = build_casia2_corrected(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "prepare_summary.json").write_text('{"status": "incomplete"}')  # what a killed run leaves
    (out / ".prepare-x1y2z3" / "CASIA2.0").mkdir(parents=True)
    (out / ".prepare-x1y2z3" / "CASIA2.0" / "big.bin").write_bytes(b"\0" * 1000)
    (out / "notes.txt").write_text("the user's")
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out)]) == 2
    assert "incomplete `benco data prepare` output" in capsys.readouterr().err
    assert main(["data", "check", str(out)]) == 1
    assert "incomplete prepare output" in capsys.readouterr().out
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out), "--force"]) == 0
    assert not list(out.glob(".prepare-*")) and (out / "notes.txt").read_text() == "the user's"
    assert json.loads((out / "prepare_summary.json").read_text())["status"] == "complete"


def test_killed_prepare_is_reported_incomplete_by_check(tmp_path: Path, capsys):
    """A real SIGKILL in the middle of writing; then `benco data check` and a --force rerun."""
    archive = build_casia2_corrected(tmp_path)
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal
        from IMDLBenCo.datasets.prepare import writer, prepare_dataset
        real = writer._write_pair
        def write_then_die(*a, **k):
            result = real(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
            return result
        writer._write_pair = write_then_die
        prepare_dataset("casia2", [{str(archive)!r}], {str(out)!r}, writer.PrepareOptions(workers=1))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert list(out.glob(".prepare-*")) and list((out / "Tp").iterdir())  # a partial output was left
    assert main(["data", "check", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "incomplete prepare output" in printed and "did not finish" in printed
    assert main(["data", "check", str(out / "with_authentic.json")]) == 1  # not written yet: the folder says why
    capsys.readouterr()
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out), "--force"]) == 0
    assert not list(out.glob(".prepare-*"))
    assert main(["data", "check", str(out)]) == 0
    assert main(["data", "check", str(out / "with_authentic.json")]) == 0
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["status"] == "complete" and len(summary["manifest_sha256"]) == 64


def test_check_ignores_folders_prepare_did_not_write(tmp_path: Path, capsys):
    save(tmp_path / "ds" / "Tp" / "a.png", rgb(16, 16, 1))
    save(tmp_path / "ds" / "Gt" / "a.png", box(16, 16, 2, 8, 2, 8))
    (tmp_path / "ds" / "manifest.csv").write_text("file,label\na.png,1\n")  # the user's own manifest
    assert main(["data", "check", str(tmp_path / "ds")]) == 0
    assert "incomplete" not in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_is_one_line_exit_130_and_cleans_up(tmp_path: Path, monkeypatch, capsys):
    archive = build_casia2_corrected(tmp_path)
    real = prepare_writer._write_pair
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(prepare_writer, "_write_pair", interrupted)
    new = tmp_path / "new"
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(new), "--workers", "1"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == f"benco data prepare: interrupted; nothing was left in {new}"
    assert not new.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    calls.clear()
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(mine), "--workers", "1"]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "partial output was removed" in err
    assert mine.is_dir() and not list(mine.iterdir())


def test_interrupt_cancels_queued_work():
    import threading
    import time

    done = []

    def work(i: int) -> int:
        if i == 0:
            raise KeyboardInterrupt
        time.sleep(0.05)
        done.append(i)
        return i

    with pytest.raises(KeyboardInterrupt):
        prepare_writer._map(work, list(range(60)), 1)
    assert len(done) < 10 and threading.active_count() < 5  # queued items cancelled, the worker gone


def test_real_sigint_during_prepare(tmp_path: Path):
    archive = build_casia2_corrected(tmp_path)
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from IMDLBenCo.cli import main
        from IMDLBenCo.datasets.prepare import writer
        real = writer._write_pair
        def slow(*a, **k):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
            return real(*a, **k)
        writer._write_pair = slow
        sys.exit(main(["data", "prepare", "casia2", {str(archive)!r}, "--out", {str(out)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == f"benco data prepare: interrupted; nothing was left in {out}"
    assert not out.exists()


# --------------------------------------------------------------------------------------------- archives


def test_zip_bomb_member_is_refused_before_extraction(tmp_path: Path, capsys):
    archive = tmp_path / "CASIA2.0.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("CASIA2.0/Tp/Tp_D_CRN_S_N_cha00063_art00014_11818.jpg", b"\0" * (24 << 20))
    assert archive.stat().st_size < 100_000
    out = tmp_path / "out"
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "more than 200 times" in err and "archive bomb" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_total_extract_limit_is_an_option(tmp_path: Path, capsys):
    archive = build_casia2_corrected(tmp_path)
    declared = sum(i.file_size for i in zipfile.ZipFile(archive).infolist())
    out = tmp_path / "out"
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out), "--max-extract-bytes", "10K"]) == 2
    err = capsys.readouterr().err
    assert "more than the 10.0 KiB one run may extract" in err and "--max-extract-bytes" in err and not out.exists()
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out),
                 "--max_extract_bytes", str(declared)]) == 0
    # a compressed tar is limited by its declared member sizes and by its overall ratio
    tgz = tmp_path / "bomb.tar.gz"
    blob = tmp_path / "zeros.bin"
    blob.write_bytes(b"\0" * (8 << 20))
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(blob, arcname="x/Tp/zeros.png")
    with pytest.raises(DatasetError, match="more than 200 times"):
        prepare_dataset("casia2", [str(tgz)], str(tmp_path / "o2"))
    with pytest.raises(DatasetError, match="one run may extract"):
        prepare_dataset("casia2", [str(tgz)], str(tmp_path / "o3"), PrepareOptions(max_extract_bytes=1 << 20))


def _shrink_declared_size(archive: Path, member: str, declared: int) -> None:
    """Rewrite the central directory so that ``member`` declares ``declared`` bytes (a lying header)."""
    data = bytearray(archive.read_bytes())
    info = zipfile.ZipFile(archive).getinfo(member)
    name = member.encode()
    cd = data.find(b"PK\x01\x02")
    while data[cd + 46:cd + 46 + len(name)] != name:
        cd = data.find(b"PK\x01\x02", cd + 4)
    assert struct.unpack("<I", data[cd + 24:cd + 28])[0] == info.file_size
    data[cd + 24:cd + 28] = struct.pack("<I", declared)
    local = info.header_offset
    data[local + 22:local + 26] = struct.pack("<I", declared)
    archive.write_bytes(bytes(data))


def test_lying_zip_header_stops_at_the_declared_size(tmp_path: Path, capsys):
    archive = tmp_path / "CASIA2.0.zip"
    payload = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("CASIA2.0/Tp/big.jpg", payload)
    _shrink_declared_size(archive, "CASIA2.0/Tp/big.jpg", 1000)
    assert zipfile.ZipFile(archive).getinfo("CASIA2.0/Tp/big.jpg").file_size == 1000
    out = tmp_path / "out"
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'CASIA2.0/Tp/big.jpg'" in err and "does not match its header" in err, err
    assert "incomplete" not in err and not out.exists()


def test_duplicate_members_are_refused(tmp_path: Path, capsys):
    archive = tmp_path / "CASIA2.0.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("CASIA2.0/Tp/Tp_S_a_1.jpg", b"first")
            zf.writestr("CASIA2.0/Tp/Tp_S_a_1.jpg", b"second")
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "appears twice" in err and "Tp_S_a_1.jpg" in err
    tar = tmp_path / "CASIA2.0.tar"
    first, second = tmp_path / "1.jpg", tmp_path / "2.jpg"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    with tarfile.open(tar, "w") as tf:
        tf.add(first, arcname="CASIA2.0/Tp/Tp_S_a_1.jpg")
        tf.add(second, arcname="./CASIA2.0/Tp/Tp_S_a_1.jpg")
    with pytest.raises(DatasetError, match="appears twice"):
        prepare_dataset("casia2", [str(tar)], str(tmp_path / "o2"))


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "abslink", "outlink", "device"])
def test_tar_refusals_say_what_was_refused(tmp_path: Path, kind: str):
    tar = tmp_path / "CASIA2.0.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        ok = tarfile.TarInfo("CASIA2.0/Tp/readme.txt")
        ok.size = 2
        tf.addfile(ok, __import__("io").BytesIO(b"hi"))
        bad = tarfile.TarInfo({"absolute": "/tmp/evil.png", "dotdot": "CASIA2.0/../../evil.png"}.get(kind, "CASIA2.0/x"))
        if kind in ("abslink", "outlink"):
            bad.type = tarfile.SYMTYPE
            bad.linkname = "/etc/passwd" if kind == "abslink" else "../../../etc/passwd"
        elif kind == "device":
            bad.type = tarfile.CHRTYPE
        tf.addfile(bad, __import__("io").BytesIO(b""))
    with pytest.raises(DatasetError) as info:
        prepare_dataset("casia2", [str(tar)], str(tmp_path / "out"))
    message = str(info.value)
    assert "refused" in message and "incomplete" not in message
    expected = {"absolute": "absolute path", "dotdot": "'..'", "abslink": "link to an absolute path",
                "outlink": "link pointing outside", "device": "special file"}[kind]
    assert expected in message, message
    assert not (tmp_path / "out").exists()


def test_damaged_tar_says_the_download_may_be_incomplete(tmp_path: Path):
    archives = build_columbia(tmp_path)
    cut = tmp_path / "4cam_splc.tar.bz2"
    data = archives[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="download may be incomplete"):
        prepare_dataset("columbia", [str(cut)], str(tmp_path / "out"))


# --------------------------------------------------------------------------------------------- broken images


def _cut_png(path: Path, keep: float | int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:-keep])


def test_broken_images_are_left_out_and_reported_as_errors(tmp_path: Path, capsys):
    base = tmp_path / "CASIA2.0"
    save(base / "Au" / "Au_ani_00001.jpg", rgb(40, 60, 1), quality=95)
    (base / "Au" / "Au_ani_00002.jpg").write_text("this is a text file, not a JPEG")
    save(base / "Au" / "Au_ani_00003.png", rgb(40, 60, 3))
    _cut_png(base / "Au" / "Au_ani_00003.png", 12)  # IEND gone: decodes, but is not a whole PNG
    good = "Tp_D_CRN_S_N_cha00063_art00014_11818"
    save(base / "Tp" / f"{good}.jpg", rgb(40, 60, 4), quality=95)
    save(base / "Gt" / f"{good}_gt.png", box(40, 60, 5, 20, 5, 30))
    half = "Tp_D_CRN_S_N_cha00063_art00014_11819"
    save(base / "Tp" / f"{half}.png", rgb(40, 60, 5))
    _cut_png(base / "Tp" / f"{half}.png", 0.5)
    save(base / "Gt" / f"{half}_gt.png", box(40, 60, 5, 20, 5, 30))
    badmask = "Tp_D_CRN_S_N_cha00063_art00014_11820"
    save(base / "Tp" / f"{badmask}.jpg", rgb(40, 60, 6), quality=95)
    (base / "Gt" / f"{badmask}_gt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tmp_path / "out"
    rc = main(["data", "prepare", "casia2", str(base), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert "errors (4)" in captured.out and "4 source file(s) could not be used" in captured.err
    assert sorted(p.name for p in (out / "Au").iterdir()) == ["Au_ani_00001.jpg"]
    assert sorted(p.name for p in (out / "Tp").iterdir()) == [f"{good}.jpg"]
    assert not (out / "set_aside").exists()  # broken files are not copied anywhere
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["written"]["errors"] == 4 and summary["status"] == "complete"
    files = sorted(e["file"].rsplit("/", 1)[-1] for e in summary["errors"])
    assert files == sorted(["Au_ani_00002.jpg", "Au_ani_00003.png", f"{badmask}_gt.png", f"{half}.png"])
    assert json.loads((out / "with_authentic.json").read_text())[-1] == ["Au/Au_ani_00001.jpg", "Negative"]
    assert main(["data", "check", str(out / "with_authentic.json")]) == 0
    rows = (out / "manifest.csv").read_text()
    assert "left out (error): authentic image cannot be decoded" in rows


def test_final_check_reads_the_authentic_images(tmp_path: Path, monkeypatch):
    """If a broken authentic image got past the writer, the final check still reports it."""
    archive = build_casia2_corrected(tmp_path)

    def careless(src: str, dst: str, display):  # copies without decoding, and the copy is junk
        Path(dst).write_text("junk")
        return (f"Au/{Path(dst).name}", display(src), "", "", ""), ""

    monkeypatch.setattr(prepare_writer, "_write_authentic", careless)
    result = prepare_dataset("casia2", [str(archive)], str(tmp_path / "out"))
    assert not result.ok and result.written["pairs"] == 2
    assert [(p.kind, Path(p.path).parent.name) for p in result.check.errors] == [("unreadable image", "Au")] * 2


# --------------------------------------------------------------------------------------------- numbers, wording


@pytest.mark.parametrize("argv, flag", [
    (["data", "prepare", "casia2", "SRC", "--out", "OUT", "--workers", "-3"], "--workers"),
    (["data", "prepare", "casia2", "SRC", "--out", "OUT", "--workers", "0"], "--workers"),
    (["data", "prepare", "casia2", "SRC", "--out", "OUT", "--long-side", "-5"], "--long-side"),
    (["data", "prepare", "casia2", "SRC", "--out", "OUT", "--max-extract-bytes", "0"], "--max-extract-bytes"),
    (["data", "prepare", "casia2", "SRC", "--out", "OUT", "--max-extract-bytes", "lots"], "--max-extract-bytes"),
    (["data", "check", "SRC", "--workers", "-1"], "--workers"),
    (["data", "synth", "OUT", "--n", "-4"], "--n"),
    (["data", "synth", "OUT", "--size", "0"], "--size"),
    (["data", "synth", "OUT", "--seed", "-1"], "--seed"),
])
def test_numeric_options_are_one_usage_message(tmp_path: Path, capsys, argv, flag):
    argv = [str(tmp_path / a) if a in ("SRC", "OUT") else a for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and flag in errors[0], err
    assert not (tmp_path / "OUT").exists()


def test_numbers_checked_from_python_too(tmp_path: Path):
    archive = build_casia2_corrected(tmp_path)
    for opts, flag in ((PrepareOptions(workers=-3), "--workers"), (PrepareOptions(max_extract_bytes=0),
                                                                    "--max-extract-bytes")):
        with pytest.raises(UsageError, match=flag):
            prepare_dataset("casia2", [str(archive)], str(tmp_path / "o"), opts)
    with pytest.raises(UsageError, match="workers"):
        check_dataset(str(tmp_path), workers=-1)
    assert not (tmp_path / "o").exists()


def test_no_developer_paths_in_user_facing_text(capsys):
    assert main(["data", "prepare"]) == 0
    listing = capsys.readouterr().out
    texts = [listing] + [" ".join(s.unverified + s.errata + (s.layout,)) for s in PREPARERS.values()]
    for text in texts:
        assert "shared/datasets" not in text and "../" not in text
