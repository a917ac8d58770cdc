"""``benco data prepare | protocol | index`` on miniature copies of each archive's real layout.

Each builder writes a few generated images under the file names, folder layout and mask encoding of
the real download (and its known errors); the tests check the output folder passes
``check_dataset``, that every correction is applied and reported, and that ``manifest.csv`` holds
the sha256 of every written file. The real samples in ``../shared/datasets`` are prepared too,
from a source tree rebuilt with their original names.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from IMDLBenCo.cli import main
from IMDLBenCo.datasets import dataset_from_path, load_test_datasets
from IMDLBenCo.datasets.check import check_dataset
from IMDLBenCo.datasets.prepare import PrepareOptions, find_prepared, prepare_dataset, write_protocol
from IMDLBenCo.errors import DatasetError, UsageError


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int, value: int = 255, bg: int = 0) -> np.ndarray:
    m = np.full((h, w), bg, np.uint8)
    m[y0:y1, x0:x1] = value
    return m


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return archive


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(out: Path) -> dict:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return {r["output"] or r["source"]: r for r in csv.DictReader(f)}


def assert_ready(out: Path, pairs: int) -> None:
    """OUT passes the check, has ``pairs`` 0/255 L masks, and the manifest hashes every written file."""
    report = check_dataset(str(out))
    assert not report.errors and not report.warnings, [p.line() for p in report.problems]
    assert len(report.pairs) == pairs
    rows = manifest(out)
    for sub in ("Tp", "Gt", "Au", "set_aside"):
        for p in (out / sub).rglob("*") if (out / sub).is_dir() else []:
            if p.is_file():
                key = p.relative_to(out).as_posix()
                assert rows[key]["sha256"] == sha(p), key
    for m in (out / "Gt").iterdir():
        with Image.open(m) as img:
            assert img.mode == "L" and set(np.unique(np.asarray(img)).tolist()) <= {0, 255}
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["status"] == "complete" and summary["written"]["pairs"] == pairs


def kinds(result) -> dict:
    return {c.kind: c for c in result.corrections}


# --------------------------------------------------------------------------------------------- CASIA v1


def build_casia1(root: Path) -> tuple[Path, Path]:
    """'CASIA 1.0 dataset' as the tutorial lists it (Modified Tp.zip holding Tp/CM and Tp/Sp, Au.zip) and a
    casia1groundtruth clone (its 'CASIA 1.0 groundtruth.zip')."""
    ds = root / "CASIA 1.0 dataset"
    tp = root / "tp_src" / "Tp"
    save(tp / "CM" / "Sp_S_CND_A_pla0016_pla0016_0196.jpg", rgb(256, 384, 1), quality=95)
    save(tp / "Sp" / "Sp_D_CND_A_pla0005_pla0023_0281.jpg", rgb(256, 384, 2), quality=95)
    save(tp / "Sp" / "Sp_D_NRN_A_cha0011_sec0011_0542.jpg", rgb(256, 384, 3), quality=95)  # the documented extra
    save(tp / "Sp" / "Sp_D_CNN_A_art0024_ani0032_0268.jpg", rgb(256, 384, 4), quality=95)  # name differs from its mask
    ds.mkdir()
    zip_folder(tp, ds / "Modified Tp.zip")
    (ds / "Modified_Splicing_list.txt").write_text("list")
    au = root / "au_src" / "Au"
    for i in (1, 2):
        save(au / f"Au_ani_000{i}.jpg", rgb(256, 384, 10 + i), quality=95)
    zip_folder(au, ds / "Au.zip")
    gt = root / "gt_src" / "CASIA 1.0 groundtruth"
    for cat, stem in (("CM", "Sp_S_CND_A_pla0016_pla0016_0196"), ("Sp", "Sp_D_CND_A_pla0005_pla0023_0281"),
                      ("CM", "Sp_S_CNN_A_art0024_ani0032_0268")):
        m = box(256, 384, 40, 120, 60, 200)
        save(gt / cat / f"{stem}_gt.png", np.stack([m] * 3, axis=2))  # the real masks are RGB 0/255
    clone = root / "casia1groundtruth"
    clone.mkdir()
    zip_folder(gt, clone / "CASIA 1.0 groundtruth.zip")
    (clone / "README.md").write_text("masks")
    return ds, clone


def test_casia1_one_command_from_the_tutorial_archives(tmp_path: Path, capsys):
    ds, clone = build_casia1(tmp_path)
    out = tmp_path / "data" / "CASIA1.0"
    rc = main(["data", "prepare", "casia1", str(ds), str(clone), "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert_ready(out, pairs=3)
    assert sorted(p.name for p in (out / "Tp").iterdir()) == [
        "Sp_D_CND_A_pla0005_pla0023_0281.jpg", "Sp_S_CND_A_pla0016_pla0016_0196.jpg", "Sp_S_CNN_A_art0024_ani0032_0268.jpg"]
    assert (out / "Tp" / "Sp_S_CND_A_pla0016_pla0016_0196.jpg").read_bytes() == \
        (tmp_path / "tp_src" / "Tp" / "CM" / "Sp_S_CND_A_pla0016_pla0016_0196.jpg").read_bytes()
    assert sorted(p.name for p in (out / "Au").iterdir()) == ["Au_ani_0001.jpg", "Au_ani_0002.jpg"]
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["found"] == {"tampered images": 4, "masks": 3, "authentic images": 2}
    (extra,) = summary["left_out"]
    assert extra["documented"] and extra["file"].endswith("Sp/Sp_D_NRN_A_cha0011_sec0011_0542.jpg")
    renamed = next(c for c in summary["corrections"] if c["kind"].startswith("renamed"))
    assert renamed["files"] == ["Sp_D_CNN_A_art0024_ani0032_0268 -> Sp_S_CNN_A_art0024_ani0032_0268"]
    # the printed summary names the removed file, the rename and the check result
    assert "Sp_D_NRN_A_cha0011_sec0011_0542.jpg" in printed and "-> Sp_S_CNN_A_art0024_ani0032_0268" in printed
    assert "0 error(s)" in printed and "not verified" in printed
    rows = manifest(out)
    assert rows["Gt/Sp_S_CND_A_pla0016_pla0016_0196.png"]["source"] == \
        "casia1groundtruth/CASIA 1.0 groundtruth.zip/CASIA 1.0 groundtruth/CM/Sp_S_CND_A_pla0016_pla0016_0196_gt.png"
    assert "mode RGB" in rows["Gt/Sp_S_CND_A_pla0016_pla0016_0196.png"]["correction"]
    assert rows["Au/Au_ani_0001.jpg"]["source"] == "CASIA 1.0 dataset/Au.zip/Au/Au_ani_0001.jpg"
    assert rows["Tp/Sp_S_CNN_A_art0024_ani0032_0268.jpg"]["source"] == \
        "CASIA 1.0 dataset/Modified Tp.zip/Tp/Sp/Sp_D_CNN_A_art0024_ani0032_0268.jpg"
    assert rows["Tp/Sp_S_CNN_A_art0024_ani0032_0268.jpg"]["correction"] == "renamed (was Sp_D_CNN_A_art0024_ani0032_0268)"
    # the JSON files load as datasets (authentic images as Negative)
    ds_all = dataset_from_path(str(out / "with_authentic.json"), is_resizing=True, output_size=64)
    assert len(ds_all) == 5 and sorted(int(ds_all[i]["label"]) for i in range(5)) == [0, 0, 1, 1, 1]
    assert not list(tmp_path.rglob(".prepare-*"))  # extracted archives are cleaned up


def test_casia1_missing_folder_is_one_message_naming_what_was_expected(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["data", "prepare", "casia1", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "CASIA v1.0: expected the 'Modified Tp' folder" in err and "Modified Tp.zip" in err
    assert not (tmp_path / "o").exists()  # a failed run leaves no half-written folder


# --------------------------------------------------------------------------------------------- CASIA v2


def build_casia2_corrected(root: Path) -> Path:
    """The corrected release as the user downloads it: one ZIP with Au/, Tp/, Gt/."""
    base = root / "src" / "CASIA2.0"
    save(base / "Au" / "Au_ani_00001.jpg", rgb(240, 320, 1), quality=95)
    save(base / "Au" / "Au_txt_30029.jpg", rgb(240, 320, 2), quality=95)
    good = "Tp_D_CRN_S_N_cha00063_art00014_11818"
    save(base / "Tp" / f"{good}.jpg", rgb(240, 320, 3), quality=95)
    save(base / "Gt" / f"{good}_gt.png", box(240, 320, 20, 90, 30, 150))
    tif = "Tp_S_NNN_S_N_ani20009_ani20009_02052"
    save(base / "Tp" / f"{tif}.tif", rgb(200, 300, 4))
    save(base / "Gt" / f"{tif}_gt.png", box(200, 300, 10, 50, 10, 80))
    bad = "Tp_S_NRN_S_B_ind10002_ind10002_20010"  # documented: 600x450 image, 800x600 mask
    save(base / "Tp" / f"{bad}.jpg", rgb(45, 60, 5), quality=95)
    save(base / "Gt" / f"{bad}_gt.png", box(60, 80, 5, 20, 5, 30))
    cropped = "Tp_D_NRD_S_N_cha10002_cha10001_20094"  # documented: no mask could be derived
    save(base / "Tp" / f"{cropped}.jpg", rgb(60, 80, 6), quality=95)
    save(base / "Gt" / f"{cropped}_gt.png", np.zeros((60, 80), np.uint8))
    (base / "Tp" / "Thumbs.db").write_bytes(b"\0" * 16)
    return zip_folder(base, root / "CASIA2.0.zip")


def test_casia2_corrected_zip_sets_aside_the_documented_errata(tmp_path: Path):
    archive = build_casia2_corrected(tmp_path)
    out = tmp_path / "CASIA2.0"
    result = prepare_dataset("casia-v2", [str(archive)], str(out))
    assert result.ok
    assert_ready(out, pairs=2)
    assert result.found == {"tampered images": 4, "masks": 4, "authentic images": 2}
    reasons = {Path(str(x["file"])).stem: x for x in result.left_out}
    assert reasons["Tp_S_NRN_S_B_ind10002_ind10002_20010"]["documented"]
    assert "size mismatch (image 60x45, mask 80x60)" in reasons["Tp_S_NRN_S_B_ind10002_ind10002_20010"]["reason"]
    assert "cannotDetect" in reasons["Tp_D_NRD_S_N_cha10002_cha10001_20094"]["reason"]
    assert sorted(p.name for p in (out / "set_aside" / "Tp").iterdir()) == [
        "Tp_D_NRD_S_N_cha10002_cha10001_20094.jpg", "Tp_S_NRN_S_B_ind10002_ind10002_20010.jpg"]
    assert json.loads((out / "authentic.json").read_text()) == [["Au/Au_ani_00001.jpg", "Negative"],
                                                               ["Au/Au_txt_30029.jpg", "Negative"]]


def test_casia2_pham_ground_truth_matches_renamed_images_by_id(tmp_path: Path):
    base = tmp_path / "CASIA2"
    save(base / "CASIA2.0_revised" / "Tp" / "Tp_S_NRN_S_N_cha00063_cha00063_10001.jpg", rgb(40, 60, 1), quality=95)
    save(base / "CASIA 2 Groundtruth" / "Tp_D_NRN_S_N_cha00063_cha00063_10001_gt.png", box(40, 60, 5, 20, 5, 30))
    result = prepare_dataset("casia2", [str(base)], str(tmp_path / "out"))
    assert result.ok and (tmp_path / "out" / "Tp" / "Tp_D_NRN_S_N_cha00063_cha00063_10001.jpg").is_file()
    assert kinds(result)["renamed to its ground truth's name (file-name erratum)"].files == [
        "Tp_S_NRN_S_N_cha00063_cha00063_10001 -> Tp_D_NRN_S_N_cha00063_cha00063_10001"]
    assert any("Pham's original ground truth" in n for n in result.notes)


# --------------------------------------------------------------------------------------------- Columbia


def columbia_edgemask(h: int, w: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    """A colour-coded edge map: left (red) and right (green) regions, light shades in a band near the
    boundary and a white boundary line; and the spliced (green) truth."""
    m = np.zeros((h, w, 3), np.uint8)
    m[:, :split] = (200, 0, 0)
    m[:, split - 6:split] = (255, 140, 140)  # light red near the boundary
    m[:, split:] = (0, 200, 0)
    m[:, split:split + 6] = (140, 255, 140)  # light green
    m[:, split - 1:split + 1] = (255, 255, 255)
    truth = np.zeros((h, w), bool)
    truth[:, split:] = True
    return m, truth


def build_columbia(root: Path) -> list[Path]:
    splc = root / "src" / "4cam_splc"
    stems = ["canong3_canonxt_sub_01", "nikond70_kodakdcs330_sub_26"]
    for i, stem in enumerate(stems):
        save(splc / f"{stem}.tif", rgb(96, 128, i))
        m, _ = columbia_edgemask(96, 128, 50 + 10 * i)
        save(splc / "edgemask" / f"{stem}_edgemask.jpg", m, quality=90)  # the real maps are JPEG
    save(root / "src" / "4cam_auth" / "canong3_02_sub_01.tif", rgb(96, 128, 9))
    archives = []
    for name in ("4cam_splc", "4cam_auth"):
        archive = root / f"{name}.tar.bz2"
        with tarfile.open(archive, "w:bz2") as tf:
            tf.add(root / "src" / name, arcname=name)
        archives.append(archive)
    return archives


def test_columbia_colour_edge_masks_become_binary(tmp_path: Path):
    archives = build_columbia(tmp_path)
    out = tmp_path / "Columbia"
    result = prepare_dataset("columbia", [str(a) for a in archives], str(out))
    assert result.ok
    assert_ready(out, pairs=2)
    _, truth = columbia_edgemask(96, 128, 50)
    got = np.asarray(Image.open(out / "Gt" / "canong3_canonxt_sub_01.png")) > 0
    assert (got == truth).mean() > 0.99  # the light shades and the boundary line join the right region
    assert kinds(result)["colour edge mask turned into a binary mask"].files == [
        "canong3_canonxt_sub_01", "nikond70_kodakdcs330_sub_26"]
    assert (out / "Au" / "canong3_02_sub_01.tif").is_file()
    swapped = prepare_dataset("columbia", [str(a) for a in archives], str(tmp_path / "red"),
                              PrepareOptions(columbia_tampered="red"))
    red = np.asarray(Image.open(tmp_path / "red" / "Gt" / "canong3_canonxt_sub_01.png")) > 0
    assert swapped.ok and (red == ~truth).mean() > 0.99


# --------------------------------------------------------------------------------------------- COVERAGE


def build_coverage(root: Path) -> Path:
    """image/{i}.tif, image/{i}t.tif, mask/{i}{copy,paste,forged}.tif; ids 41 (mask of the uncropped image)
    and 56 (mask of the unscaled image) have masks of another size, as in the real release."""
    cov = root / "COVERAGE"
    rng = np.random.default_rng(0)
    truth = {}
    for i, (h, w) in {1: (60, 80), 41: (60, 80), 56: (60, 80)}.items():
        orig = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        tamp = orig.copy()
        tamp[20:40, 30:50] = orig[5:25, 5:25]  # the pasted copy
        truth[i] = box(h, w, 20, 40, 30, 50)
        save(cov / "image" / f"{i}.tif", orig)
        save(cov / "image" / f"{i}t.tif", tamp)
        for kind in ("copy", "paste"):
            save(cov / "mask" / f"{i}{kind}.tif", truth[i])
    save(cov / "mask" / "1forged.tif", truth[1])
    wide = np.zeros((60, 100), np.uint8)  # the image was cropped from a 100-pixel-wide original at x=12
    wide[20:40, 42:62] = 255
    save(cov / "mask" / "41forged.tif", wide)
    save(cov / "mask" / "56forged.tif", np.asarray(Image.fromarray(truth[56]).resize((120, 90), Image.NEAREST)))
    (cov / "label").mkdir()
    return cov


def test_coverage_repairs_or_sets_aside_the_size_mismatched_pairs(tmp_path: Path):
    cov = build_coverage(tmp_path)
    out = tmp_path / "repaired"
    result = prepare_dataset("coverage", [str(cov)], str(out))
    assert result.ok
    assert_ready(out, pairs=3)
    repaired = kinds(result)["mask size repaired (--mismatch repair)"].files
    assert [r.split(":")[0] for r in repaired] == ["41t", "56t"]
    assert "cropped 80x60 at x=12, y=0" in repaired[0] and "resized from 120x90" in repaired[1]
    for i in (41, 56):
        got = np.asarray(Image.open(out / "Gt" / f"{i}t.png")) > 0
        assert (got == (box(60, 80, 20, 40, 30, 50) > 0)).mean() > 0.99
    assert sorted(p.name for p in (out / "Au").iterdir()) == ["1.tif", "41.tif", "56.tif"]
    apart = prepare_dataset("coverage", [str(cov)], str(tmp_path / "apart"), PrepareOptions(mismatch="set-aside"))
    assert apart.ok and apart.written["pairs"] == 1
    assert all(x["documented"] and "size mismatch" in x["reason"] for x in apart.left_out)
    assert sorted(p.name for p in (tmp_path / "apart" / "set_aside" / "Gt").iterdir()) == ["41t.tif", "56t.tif"]
    rows = manifest(tmp_path / "apart")
    assert rows["set_aside/Gt/41t.tif"]["source"] == "COVERAGE/mask/41forged.tif"


def test_coverage_real_files_repaired(tmp_path: Path, coverage_dir: Path):
    """The real COVERAGE pairs, put back into the release's layout (PNG -> TIFF, lossless)."""
    cov = tmp_path / "COVERAGE"
    (cov / "image").mkdir(parents=True)
    (cov / "mask").mkdir()
    for i in (1, 2):
        Image.open(coverage_dir / "Tp" / f"{i}t.png").save(cov / "image" / f"{i}t.tif")
        Image.open(coverage_dir / "Au" / f"{i}.png").save(cov / "image" / f"{i}.tif")
        Image.open(coverage_dir / "Gt" / f"{i}t.png").save(cov / "mask" / f"{i}forged.tif")
    for i in (41, 56):
        Image.open(coverage_dir / "size_mismatch" / "Tp" / f"{i}t.png").save(cov / "image" / f"{i}t.tif")
        Image.open(coverage_dir / "Au" / f"{i}.png").save(cov / "image" / f"{i}.tif")
        Image.open(coverage_dir / "size_mismatch" / "Gt" / f"{i}t.png").save(cov / "mask" / f"{i}forged.tif")
    out = tmp_path / "out"
    result = prepare_dataset("coverage", [str(cov)], str(out))
    assert result.ok
    assert_ready(out, pairs=4)
    for i in (1, 2):
        assert np.array_equal(np.asarray(Image.open(out / "Gt" / f"{i}t.png")),
                              np.asarray(Image.open(coverage_dir / "Gt" / f"{i}t.png")))
    repaired = kinds(result)["mask size repaired (--mismatch repair)"].files
    assert repaired[0].startswith("41t: cropped") and repaired[1].startswith("56t: resized")


# --------------------------------------------------------------------------------------------- NIST16

_NIST_HEADER = "TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|DonorFileID|DonorFileName|IsTarget|BaseFileName"


def build_nist16(root: Path, image: np.ndarray | None = None, mask: np.ndarray | None = None) -> Path:
    nc = root / "NC2016_Test0613"
    image = rgb(1200, 1600, 1) if image is None else image
    h, w = image.shape[:2]
    save(nc / "probe" / "NC2016_0128.jpg", image, quality=92)
    nist_mask = box(h, w, h // 4, h // 2, w // 4, w // 2, value=0, bg=255) if mask is None else mask
    save(nc / "reference" / "manipulation" / "mask" / "NC2016_3942.png", nist_mask)  # black = manipulated
    save(nc / "probe" / "NC2016_0001.jpg", rgb(64, 96, 2), quality=92)
    save(nc / "probe" / "NC2016_0002.jpg", rgb(64, 96, 3), quality=92)
    save(nc / "reference" / "manipulation" / "mask" / "NC2016_5000.png", box(64, 96, 8, 30, 8, 40, value=0, bg=255))
    rows = [
        "Manipulation|NC2016_0128|probe/NC2016_0128.jpg|reference/manipulation/mask/NC2016_3942.png|||Y|"
        "world/NC2016_3272.jpg",
        "Manipulation|NC2016_0001|probe/NC2016_0001.jpg||||N|",
        "Manipulation|NC2016_0002|probe/NC2016_0002.jpg|reference/manipulation/mask/NC2016_5000.png|||Y|",
        "Manipulation|NC2016_0002|probe/NC2016_0002.jpg|reference/manipulation/mask/NC2016_5000.png|||Y|",
        "Manipulation|NC2016_0777|probe/NC2016_0777.jpg|reference/manipulation/mask/NC2016_0778.png|||Y|",
    ]
    csv_path = nc / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    csv_path.write_text("\n".join([_NIST_HEADER] + rows) + "\n")
    return nc


def test_nist16_pairs_from_the_csv_inverted_and_resized(tmp_path: Path):
    nc = build_nist16(tmp_path)
    out = tmp_path / "NIST16_1024"
    result = prepare_dataset("nist16", [str(nc)], str(out), PrepareOptions(long_side=1024))
    assert result.ok
    assert_ready(out, pairs=2)
    assert result.found == {"manipulated probes (IsTarget=Y)": 3, "other probes (IsTarget=N)": 1, "CSV rows": 5}
    with Image.open(out / "Tp" / "NC2016_0128.png") as img:
        assert img.size == (1024, 768)
    gt = np.asarray(Image.open(out / "Gt" / "NC2016_0128.png")) > 0
    assert gt.shape == (768, 1024) and gt[300, 300] and not gt[50, 50]  # white where NIST was black
    assert (out / "Tp" / "NC2016_0002.jpg").read_bytes() == (nc / "probe" / "NC2016_0002.jpg").read_bytes()
    assert [x["reason"] for x in result.left_out] == ["listed in the reference CSV but not found"]
    k = kinds(result)
    assert k["mask inverted (white = manipulated)"].files == ["NC2016_0128", "NC2016_0002"]
    assert k["duplicate CSV row ignored"].files == ["probe/NC2016_0002.jpg (CSV lines 4 and 5)"]
    assert k["resized (--long-side)"].files == ["NC2016_0128: 1600x1200 -> 1024x768"]
    row = manifest(out)["Gt/NC2016_0128.png"]
    assert row["source"] == "NC2016_Test0613/reference/manipulation/mask/NC2016_3942.png"
    assert "inverted" in row["correction"] and "resized to 1024x768" in row["correction"]
    assert (out / "Au" / "NC2016_0001.jpg").is_file()


# --------------------------------------------------------------------------------------------- IMD2020


def test_imd2020_folders_of_orig_and_mask_files(tmp_path: Path):
    imd = tmp_path / "src" / "IMD2020"
    save(imd / "1a1ogs" / "1a1ogs_orig.jpg", rgb(50, 70, 1), quality=95)
    save(imd / "1a1ogs" / "c8tf5mq_0.png", rgb(50, 70, 2))
    save(imd / "1a1ogs" / "c8tf5mq_0_mask.png", box(50, 70, 10, 30, 10, 40))
    save(imd / "1a3oag" / "1a3oag_orig.jpg", rgb(40, 60, 3), quality=95)
    save(imd / "1a3oag" / "c8ttxyz_1.jpg", rgb(40, 60, 4), quality=95)
    save(imd / "1a3oag" / "c8ttxyz_1_mask.png", box(40, 60, 5, 20, 5, 30))
    save(imd / "z14" / "00030_fake.jpg", rgb(40, 60, 5), quality=95)
    save(imd / "z14" / "00030_fake_mask.png", box(44, 60, 5, 20, 5, 30))  # the documented mismatch
    save(imd / "1a3oag" / "c8ttabc_2.jpg", rgb(40, 60, 6), quality=95)  # a tampered image whose mask is missing
    archive = zip_folder(imd, tmp_path / "IMD2020.zip")
    out = tmp_path / "IMD2020"
    result = prepare_dataset("imd2020", [str(archive)], str(out))
    assert result.ok
    assert_ready(out, pairs=2)
    nomask, bad = result.left_out
    assert nomask["file"] == "IMD2020.zip/IMD2020/1a3oag/c8ttabc_2.jpg" and not nomask["documented"]
    assert bad["documented"] and bad["file"] == "IMD2020.zip/IMD2020/z14/00030_fake.jpg"
    assert result.found == {"masks": 3, "authentic images": 2, "tampered images": 4}
    assert sorted(p.name for p in (out / "Au").iterdir()) == ["1a1ogs_orig.jpg", "1a3oag_orig.jpg"]


# --------------------------------------------------------------------------------------------- Korus


def test_korus_three_level_maps(tmp_path: Path):
    data = tmp_path / "data-images"
    levels = box(40, 60, 10, 30, 10, 30)  # white: semantic change
    levels[10:30, 30:40] = 128  # grey: collateral damage
    for cam, seed in (("Sony_A57", 1), ("Canon_60D", 2)):
        save(data / cam / "tampered-realistic" / "DSC06083.TIF", rgb(40, 60, seed))
        save(data / cam / "pristine" / "DSC06083.TIF", rgb(40, 60, seed + 10))
        save(data / cam / "ground-truth" / "DSC06083.PNG", levels)
    out = tmp_path / "Korus"
    result = prepare_dataset("korus", [str(data)], str(out))
    assert result.ok
    assert_ready(out, pairs=2)
    assert sorted(p.name for p in (out / "Tp").iterdir()) == ["Canon_60D_DSC06083.TIF", "Sony_A57_DSC06083.TIF"]
    assert int((np.asarray(Image.open(out / "Gt" / "Sony_A57_DSC06083.png")) > 0).sum()) == 20 * 30
    white = prepare_dataset("korus", [str(data)], str(tmp_path / "white"), PrepareOptions(korus_collateral="authentic"))
    assert int((np.asarray(Image.open(tmp_path / "white" / "Gt" / "Sony_A57_DSC06083.png")) > 0).sum()) == 20 * 20
    assert white.ok and len(kinds(white)["renamed (the name is used twice)"].files) == 2


# --------------------------------------------------------------------------------------------- the real samples


def test_misc_samples_prepared_from_their_original_layout(tmp_path: Path, shared_datasets: Path):
    """CASIA v1/v2, NIST16 and Korus single pairs, copied under their original names and encodings."""
    misc = shared_datasets / "MISC_samples"
    gt = {p.stem: np.asarray(Image.open(p)) for p in (misc / "Gt").iterdir()}

    def copy(src: str, dst: Path) -> Path:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes((misc / "Tp" / src).read_bytes())
        return dst

    c1 = "Sp_S_NNN_A_ani0041_ani0041_0199"
    copy(f"CASIA1_{c1}.jpg", tmp_path / "c1" / "Modified Tp" / "Tp" / "CM" / f"{c1}.jpg")
    (tmp_path / "c1" / "Modified Tp" / "Tp" / "Sp").mkdir()
    save(tmp_path / "c1" / "CASIA 1.0 groundtruth" / "CM" / f"{c1}_gt.png", np.stack([gt[f"CASIA1_{c1}"]] * 3, axis=2))
    (tmp_path / "c1" / "CASIA 1.0 groundtruth" / "Sp").mkdir()
    c2 = "Tp_S_NNN_S_N_ani20009_ani20009_02052"
    copy(f"CASIA2_{c2}.tif", tmp_path / "c2" / "Tp" / f"{c2}.tif")
    save(tmp_path / "c2" / "Gt" / f"{c2}_gt.png", gt[f"CASIA2_{c2}"])
    build_nist16(tmp_path / "nist", image=np.asarray(Image.open(misc / "Tp" / "NIST16_NC2016_2564.jpg")),
                 mask=255 - gt["NIST16_NC2016_2564"])  # back to NIST's black = manipulated
    nist_probe = tmp_path / "nist" / "NC2016_Test0613" / "probe" / "NC2016_0128.jpg"
    nist_probe.write_bytes((misc / "Tp" / "NIST16_NC2016_2564.jpg").read_bytes())  # the original bytes
    copy("Korus_SonyA57_DSC06083.TIF", tmp_path / "korus" / "Sony_A57" / "tampered-realistic" / "DSC06083.TIF")
    save(tmp_path / "korus" / "Sony_A57" / "ground-truth" / "DSC06083.PNG", gt["Korus_SonyA57_DSC06083"])
    cases = [("casia1", tmp_path / "c1", c1, f"CASIA1_{c1}", ".jpg", 1),
             ("casia2", tmp_path / "c2", c2, f"CASIA2_{c2}", ".tif", 1),
             ("nist16", tmp_path / "nist", "NC2016_0128", "NIST16_NC2016_2564", ".jpg", 2),  # + the generated probe
             ("korus", tmp_path / "korus", "DSC06083", "Korus_SonyA57_DSC06083", ".TIF", 1)]
    for name, src, stem, sample, ext, pairs in cases:
        out = tmp_path / f"out_{name}"
        result = prepare_dataset(name, [str(src)], str(out))
        assert result.ok, name
        assert_ready(out, pairs=pairs)
        assert sha(out / "Tp" / f"{stem}{ext}") == sha(next((misc / "Tp").glob(f"{sample}.*"))), name
        assert np.array_equal(np.asarray(Image.open(out / "Gt" / f"{stem}.png")), gt[sample]), name


# --------------------------------------------------------------------------------------------- errors and options


def test_bad_input_and_options_are_one_message(tmp_path: Path, capsys):
    archive = build_casia2_corrected(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="--mismatch applies to coverage only"):
        prepare_dataset("casia2", [str(archive)], str(out), PrepareOptions(mismatch="repair"))
    with pytest.raises(UsageError, match="unknown dataset 'casia3'"):
        prepare_dataset("casia3", [str(archive)], str(out))
    rar = tmp_path / "CASIA 1.0 dataset.rar"
    rar.write_bytes(b"Rar!")
    with pytest.raises(DatasetError, match="extract it first"):
        prepare_dataset("casia1", [str(rar)], str(tmp_path / "o2"))
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(out), "--force"]) == 0
    other = tmp_path / "notours"
    (other / "keep.txt").parent.mkdir()
    (other / "keep.txt").write_text("x")
    assert main(["data", "prepare", "casia2", str(archive), "--out", str(other), "--force"]) == 2
    assert "nothing in it is deleted" in capsys.readouterr().err and (other / "keep.txt").is_file()
    assert main(["data", "prepare", "casia2", str(archive)]) == 2
    assert "--out DIR is required" in capsys.readouterr().err
    assert main(["data", "prepare"]) == 0
    listing = capsys.readouterr().out
    for name in ("casia1", "casia2", "columbia", "coverage", "nist16", "imd2020", "korus"):
        assert f"\n{name}: " in "\n" + listing


# --------------------------------------------------------------------------------------------- protocols


def test_protocols_write_loadable_training_and_test_lists(tmp_path: Path, capsys):
    root = tmp_path / "data"
    ds, clone = build_casia1(tmp_path)
    prepare_dataset("casia1", [str(ds), str(clone)], str(root / "CASIA1.0"))
    prepare_dataset("casia2", [str(build_casia2_corrected(tmp_path))], str(root / "CASIA2.0"))
    prepare_dataset("coverage", [str(build_coverage(tmp_path))], str(root / "COVERAGE"))
    assert sorted(find_prepared(str(root))) == ["casia1", "casia2", "coverage"]

    assert main(["data", "protocol", "mvss", "--root", str(root), "--with-authentic"]) == 0
    printed = capsys.readouterr().out
    assert "missing: columbia" in printed and "missing: nist16" in printed
    tests = load_test_datasets(str(root / "test_datasets.json"))
    assert sorted(tests) == ["CASIA1.0", "COVERAGE"]
    assert json.loads((root / "test_datasets.json").read_text())["CASIA1.0"] == "CASIA1.0"  # relative paths
    train = dataset_from_path(str(root / "train_mvss.json"), is_resizing=True, output_size=32)
    assert len(train) == 4  # 2 CASIA v2 pairs + 2 authentic images

    (root / "FantasticReality_v1").mkdir()
    au = root / "CASIA2.0" / "Au" / "Au_ani_00001.jpg"
    (root / "FantasticReality_v1" / "FantasticReality.json").write_text(json.dumps([[str(au), "Negative"]]))
    info = write_protocol("cat", str(root), with_authentic=True)
    entries = json.loads((root / "balanced_dataset.json").read_text())
    assert entries == [["ManiDataset", "CASIA2.0"], ["JsonDataset", "FantasticReality_v1/FantasticReality.json"],
                       ["JsonDataset", "CASIA2.0/authentic.json"]]
    assert [(label, count) for label, _, _, count in info["train"]] == [
        ("CASIA v2.0", 2), ("FantasticReality", 1), ("CASIA v2.0 authentic", 2)]
    assert any(m.startswith("tampCOCO sp") for m in info["missing"])
    balanced = dataset_from_path(str(root / "balanced_dataset.json"), is_resizing=True, output_size=32, sample_number=3)
    assert len(balanced) == 9
    assert main(["data", "protocol", "casia", "--root", str(tmp_path / "nothing")]) == 2


# --------------------------------------------------------------------------------------------- index


def test_index_table_details_and_json(capsys):
    assert main(["data", "index"]) == 0
    table = capsys.readouterr().out
    for name in ("CASIA v1.0", "COVERAGE", "NIST16", "IMD2020", "tampCOCO", "Korus"):
        assert name in table
    assert main(["data", "index", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["datasets"]
    casia2 = next(r for r in rows if r["name"] == "CASIA v2.0")
    assert casia2["authentic"] == "7491" and casia2["tampered"] == "5123" and casia2["prepare"] == "casia2"
    assert all({"name", "year", "errata", "download"} <= set(r) for r in rows)
    assert main(["data", "index", "coverage"]) == 0
    assert "41, 48, 55" in capsys.readouterr().out
    assert main(["data", "index", "--aigc", "--json"]) == 0
    aigc = json.loads(capsys.readouterr().out)
    assert "only its title" in aigc["note"] and aigc["datasets"]
    assert main(["data", "index", "nosuchset"]) == 2
