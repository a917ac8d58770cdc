"""``benco data prepare`` for AI-edit datasets (issue 25): CocoGlide, AutoSplice, OpenSDID, TGIF, MagicBrush.

Each test builds a miniature copy of the published layout (file names, folders, listing files, mask
encodings) with a few tiny generated images, prepares it, and checks pairs, masks, authentic images,
splits and what is reported; the assumed parts of each layout are in the preparers' docstrings.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_prepare import assert_ready, box, manifest, rgb, save

from IMDLBenCo.cli import main
from IMDLBenCo.datasets import dataset_from_path
from IMDLBenCo.datasets.prepare import PREPARERS, PrepareOptions, prepare_dataset
from IMDLBenCo.errors import DatasetError


def gt(out: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(out / "Gt" / f"{name}.png")) > 0


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- CocoGlide


def build_cocoglide(root: Path, table: bool = True) -> Path:
    base = root / "src" / "CocoGlide"
    samples = [("dining table", 114871), ("clock", 267351), ("dog", 5)]
    rows = ["real,fake,mask,prompt"]
    for i, (cat, cid) in enumerate(samples[:2]):
        save(base / "real" / f"{cat}_{cid}.png", rgb(32, 32, i))
        save(base / "fake" / f"glide_inpainting_val2017_{cid}_up.png", rgb(32, 32, 10 + i))
        save(base / "mask" / f"{cat}_{cid}_mask.png", box(32, 32, 4 + i, 20, 6, 24))
        rows.append(f"real/{cat}_{cid}.png,fake/glide_inpainting_val2017_{cid}_up.png,mask/{cat}_{cid}_mask.png,"
                    f"\"a {cat}, inpainted\"")
    rows.append("real/dog_5.png,fake/glide_inpainting_val2017_5_up.png,mask/dog_5_mask.png,a dog")  # not on disk
    if table:
        (base / "table.csv").write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    archive = root / "CocoGlide.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(base.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(base.parent).as_posix())
    return archive


def test_cocoglide_pairs_through_table_csv(tmp_path: Path):
    out = tmp_path / "CocoGlide"
    result = prepare_dataset("cocoglide", [str(build_cocoglide(tmp_path))], str(out))
    assert result.ok and result.found == {"table rows": 3, "tampered images": 3}
    assert_ready(out, pairs=2)
    assert sorted(p.name for p in (out / "Tp").iterdir()) == [
        "glide_inpainting_val2017_114871_up.png", "glide_inpainting_val2017_267351_up.png"]
    assert sorted(p.name for p in (out / "Au").iterdir()) == ["clock_267351.png", "dining table_114871.png"]
    assert (gt(out, "glide_inpainting_val2017_114871_up") == (box(32, 32, 4, 20, 6, 24) > 0)).all()
    assert [x["reason"] for x in result.left_out] == ["fake/glide_inpainting_val2017_5_up.png is not on disk"]
    row = manifest(out)["Gt/glide_inpainting_val2017_267351_up.png"]
    assert row["source"] == "CocoGlide.zip/CocoGlide/mask/clock_267351_mask.png"


def test_cocoglide_without_table_pairs_by_coco_id(tmp_path: Path):
    out = tmp_path / "out"
    result = prepare_dataset("cocoglide", [str(build_cocoglide(tmp_path, table=False))], str(out))
    assert result.ok and result.written["pairs"] == 2 and result.written["authentic images"] == 2
    assert any("paired by the COCO image id" in n for n in result.notes)


def test_cocoglide_table_paths_leaving_the_source_are_refused(tmp_path: Path):
    base = tmp_path / "src"
    save(base / "fake" / "glide_inpainting_val2017_1_up.png", rgb(16, 16, 1))
    save(base / "mask" / "a_1_mask.png", box(16, 16, 2, 8, 2, 8))
    save(tmp_path / "secret.png", rgb(16, 16, 9))
    (base / "table.csv").write_text("real,fake,mask,prompt\n../secret.png,fake/glide_inpainting_val2017_1_up.png,"
                                    "mask/a_1_mask.png,x\n")
    result = prepare_dataset("cocoglide", [str(base)], str(tmp_path / "out"))
    assert [e["reason"].split(":")[0] for e in result.errors] == ["real refused"]
    assert result.written["pairs"] == 0


# --------------------------------------------------------------------------------------------- AutoSplice


def build_autosplice(root: Path) -> Path:
    base = root / "AutoSplice"
    for q in (100, 90):
        for name, seed in (("1_0", 1), ("1_1", 2), ("2_0", 3)):
            save(base / f"Forged_JPEG{q}" / f"{name}.jpg", rgb(24, 32, seed + q), quality=q)
    faint = box(24, 32, 4, 12, 4, 20, value=30)  # not 0/255: the standard rule would refuse it
    save(base / "Mask" / "1_mask.png", faint)
    save(base / "Mask" / "2_mask.png", box(24, 32, 10, 20, 10, 30))
    save(base / "Mask" / "3_mask.png", box(24, 32, 1, 5, 1, 5))  # its forged image is missing
    save(base / "Authentic" / "1.jpg", rgb(24, 32, 7), quality=95)
    return base


def test_autosplice_shared_masks_and_quality_versions(tmp_path: Path, capsys):
    base = build_autosplice(tmp_path)
    out = tmp_path / "AutoSplice100"
    result = prepare_dataset("autosplice", [str(base)], str(out))
    assert result.ok and result.found == {"tampered images": 3, "masks": 3, "authentic images": 1}
    assert_ready(out, pairs=3)
    assert (gt(out, "1_0") == (box(24, 32, 4, 12, 4, 20) > 0)).all() and (gt(out, "1_0") == gt(out, "1_1")).all()
    assert [x["file"] for x in result.left_out] == ["AutoSplice/Mask/3_mask.png"]
    assert "any non-zero" in manifest(out)["Gt/1_0.png"]["correction"]
    q90 = prepare_dataset("autosplice", [str(base)], str(tmp_path / "q90"), PrepareOptions(autosplice_quality="90"))
    assert q90.ok and manifest(tmp_path / "q90")["Tp/2_0.jpg"]["source"] == "AutoSplice/Forged_JPEG90/2_0.jpg"
    with pytest.raises(DatasetError, match="found Forged_JPEG100, Forged_JPEG90: pass --autosplice-quality"):
        prepare_dataset("autosplice", [str(base)], str(tmp_path / "q75"), PrepareOptions(autosplice_quality="75"))
    with pytest.raises(SystemExit):
        main(["data", "prepare", "autosplice", str(base), "--out", str(tmp_path / "x"), "--autosplice-quality", "50"])
    assert main(["data", "prepare", "casia2", str(base), "--out", str(tmp_path / "y"), "--autosplice-quality", "90"]) == 2
    assert "--autosplice-quality applies to autosplice only" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- OpenSDID


def write_shard(path: Path, rows: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("key", pa.string()), ("image", image_type), ("mask", image_type), ("label", pa.int64())])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)
    return path


def cell(arr: np.ndarray) -> dict:
    return {"bytes": png_bytes(arr), "path": None}


def build_opensdid(root: Path) -> Path:
    region = box(16, 24, 2, 9, 3, 15)
    for split, gens in (("OpenSDI_test", ("sd15", "sdxl")), ("OpenSDI_train", ("sd15",))):
        for gi, gen in enumerate(gens):
            write_shard(root / split / "data" / f"{gen}-00000-of-00001.parquet", [
                {"key": f"real/{gen}_0001.png", "image": cell(rgb(16, 24, gi)), "mask": None, "label": 0},
                {"key": f"partial/{gen}_0002.png", "image": cell(rgb(16, 24, gi + 5)), "mask": cell(region), "label": 1},
                {"key": f"entire/{gen}_0003.png", "image": cell(rgb(16, 24, gi + 9)), "mask": None, "label": 1},
                {"key": "../../../etc/evil", "image": cell(rgb(16, 24, 3)), "mask": cell(region), "label": 1},
            ])
    return root


def test_opensdid_per_generator_splits_from_parquet_shards(tmp_path: Path):
    src = build_opensdid(tmp_path / "hf")
    out = tmp_path / "OpenSDID"
    result = prepare_dataset("opensdid", [str(src / "OpenSDI_test"), str(src / "OpenSDI_train")], str(out))
    assert result.ok, [x for x in result.left_out]
    assert_ready(out, pairs=9)  # per shard: one edit, one fully generated, one odd key
    assert result.found == {"sd15 images": 8, "sdxl images": 4, "shards": 3}
    assert result.splits == {"sd15_test": 4, "sd15_train": 4, "sdxl_test": 4}
    assert gt(out, "sdxl_test_entire_sdxl_0003").all()  # fully generated: every pixel
    assert (gt(out, "sd15_train_partial_sd15_0002") == (box(16, 24, 2, 9, 3, 15) > 0)).all()
    assert (out / "Tp" / "sd15_test_etc_evil.png").is_file() and not list(tmp_path.rglob("evil"))
    ds = dataset_from_path(str(out / "splits" / "sdxl_test.json"), is_resizing=True, output_size=16)
    assert sorted(int(ds[i]["label"]) for i in range(len(ds))) == [0, 1, 1, 1]
    row = manifest(out)["Tp/sdxl_test_partial_sdxl_0002.png"]
    assert row["source"] == "OpenSDI_test/data/sdxl-00000-of-00001.parquet/sdxl_test_partial_sdxl_0002.png"
    only_edits = prepare_dataset("opensdid", [str(src / "OpenSDI_test")], str(tmp_path / "edits"),
                                 PrepareOptions(opensdid_entire="leave-out"))
    assert only_edits.written["pairs"] == 4 and sum(x["documented"] for x in only_edits.left_out) == 2


def test_opensdid_bad_shards_are_one_message(tmp_path: Path, monkeypatch):
    pytest.importorskip("pyarrow")
    bad = tmp_path / "OpenSDI_test" / "data" / "sd3-00000-of-00001.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not parquet")
    with monkeypatch.context() as m:  # without pyarrow: say what to install
        m.setitem(sys.modules, "pyarrow.parquet", None)
        with pytest.raises(DatasetError, match="pip install pyarrow"):
            prepare_dataset("opensdid", [str(tmp_path / "OpenSDI_test")], str(tmp_path / "o"))
    with pytest.raises(DatasetError, match="not a readable parquet file"):
        prepare_dataset("opensdid", [str(tmp_path / "OpenSDI_test")], str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="parquet shards data/<generator>"):
        prepare_dataset("opensdid", [str(tmp_path / "empty")], str(tmp_path / "o2"))


# --------------------------------------------------------------------------------------------- TGIF


def build_tgif(root: Path) -> list[Path]:
    cat, iid = "airplane", 208901
    full, crop = (48, 64), (32, 32)
    fake_sd2, fake_ps, real, masks = (root / d / cat for d in ("TGIF-SD2", "TGIF-PS", "TGIF-real", "TGIF-masks"))
    save(fake_sd2 / f"{iid}_mask_bbox.png_sd2-512_0.png", rgb(*crop, 1))  # fully regenerated crop
    save(fake_sd2 / f"{iid}_mask_bbox.png_ps_mask.png_sd2_0.png", rgb(*full, 2))  # spliced through the PS mask
    save(fake_sd2 / f"{iid}_mask_bbox.png_sd2_0.png", rgb(*full, 3))  # crop pasted as a rectangle
    save(fake_ps / f"{iid}_mask_segm.png_ps_1.png", rgb(*full, 4))  # Firefly
    save(real / f"{iid}_orig.png", rgb(*full, 5))
    save(real / f"{iid}_orig_512.png", rgb(*crop, 6))
    save(masks / f"{iid}_mask_bbox_512.png", box(*crop, 8, 20, 8, 24))
    soft = box(*full, 10, 30, 10, 40)
    soft[10:30, 40:44] = 40  # Photoshop's feathered edge: above 0.1 of white
    soft[10:30, 44:46] = 20  # below it
    save(masks / f"{iid}_mask_bbox.png_ps_mask.png", soft)
    save(masks / f"{iid}_mask_segm.png_ps_mask.png", box(*full, 5, 15, 5, 25))
    splits = root / "tgif-dataset" / "splits"
    splits.mkdir(parents=True)
    (splits / "test.csv").write_text(",category,image_id,width,height\n0,airplane,208901,64,48\n")
    return [root / d for d in ("TGIF-SD2", "TGIF-PS", "TGIF-real", "TGIF-masks", "tgif-dataset")]


def test_tgif_sub_datasets_masks_and_splits(tmp_path: Path):
    out = tmp_path / "TGIF"
    result = prepare_dataset("tgif", [str(s) for s in build_tgif(tmp_path / "src")], str(out))
    assert result.ok
    assert_ready(out, pairs=3)
    assert result.found["sd2-fr images"] == 1 and result.found["sd2-sp images"] == 1 and result.found["ps-sp images"] == 1
    (rect,) = result.left_out
    assert rect["documented"] and rect["file"].endswith("208901_mask_bbox.png_sd2_0.png")
    expected = box(48, 64, 10, 30, 10, 44) > 0  # the 40s join the region, the 20s do not
    assert (gt(out, "airplane_208901_mask_bbox.png_ps_mask.png_sd2_0") == expected).all()
    assert (gt(out, "airplane_208901_mask_bbox.png_sd2-512_0") == (box(32, 32, 8, 20, 8, 24) > 0)).all()
    assert result.splits == {"ps-sp_test": 2, "sd2-fr_test": 2, "sd2-sp_test": 2}
    fr = json.loads((out / "splits" / "sd2-fr_test.json").read_text())
    assert fr[-1] == ["../Au/airplane_208901_orig_512.png", "Negative"]
    assert len(list((out / "Au").iterdir())) == 3  # full-size original once per spliced sub-dataset, and the crop


# --------------------------------------------------------------------------------------------- MagicBrush


def rgba_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int, seed: int) -> np.ndarray:
    arr = np.dstack([rgb(h, w, seed), np.full((h, w), 255, np.uint8)])
    arr[y0:y1, x0:x1, 3] = 0  # the editor's erased region is transparent
    return arr


def build_magicbrush(root: Path) -> Path:
    test = root / "MagicBrush" / "test"
    img = test / "images" / "242679"
    save(img / "242679-input.png", rgb(24, 24, 1))
    save(img / "242679-mask1.png", rgba_mask(24, 24, 2, 10, 2, 12, 1))
    save(img / "242679-output1.png", rgb(24, 24, 2))
    save(img / "242679-mask2.png", box(24, 24, 12, 20, 12, 20))
    save(img / "242679-output2.png", rgb(24, 24, 3))
    sessions = {"242679": [
        {"input": "242679-input.png", "mask": "242679-mask1.png", "output": "242679-output1.png",
         "instruction": "put a hat on the dog"},
        {"input": "242679-output1.png", "mask": "242679-mask2.png", "output": "242679-output2.png",
         "instruction": "make the sky pink"},
    ], "5": [{"input": "../../../../secret.png", "mask": "5-mask1.png", "output": "5-output1.png"}]}
    (test / "edit_sessions.json").write_text(json.dumps(sessions))
    return test


def test_magicbrush_sessions_turns_and_alpha_masks(tmp_path: Path):
    save(tmp_path / "secret.png", rgb(8, 8, 0))
    out = tmp_path / "MagicBrush_test"
    result = prepare_dataset("magicbrush", [str(build_magicbrush(tmp_path))], str(out))
    assert result.written["pairs"] == 2 and result.written["authentic images"] == 1
    assert [e["reason"].split(":")[0] for e in result.errors] == ["input refused"]  # the '..' path
    assert (gt(out, "test_242679_turn1") == (box(24, 24, 2, 10, 2, 12) > 0)).all()  # transparent = edited
    assert (gt(out, "test_242679_turn2") == (box(24, 24, 12, 20, 12, 20) > 0)).all()  # white = edited
    rows = manifest(out)
    assert "transparent = edited" in rows["Gt/test_242679_turn1.png"]["correction"]
    assert rows["Au/test_242679_source.png"]["source"] == "test/images/242679/242679-input.png"
    assert result.splits == {"test": 3}
    assert sorted(p.name for p in (out / "Au").iterdir()) == ["test_242679_source.png"]  # turn 2's input is generated


def test_instruction_edit_per_sample_folders(tmp_path: Path):
    base = tmp_path / "MagicBrush_hf"
    for i in range(2):
        s = base / "train" / f"{i:05d}"
        save(s / "source_img.png", rgb(16, 16, i))
        save(s / "mask_img.png", box(16, 16, 2, 8, 2 + i, 10))
        save(s / "target_img.png", rgb(16, 16, 10 + i))
        (s / "instructions.txt").write_text("add a boat")
    save(base / "dev" / "00007" / "target_img.png", rgb(16, 16, 3))  # no mask: left out
    out = tmp_path / "out"
    result = prepare_dataset("instruct-edit", [str(base)], str(out))
    assert result.ok
    assert_ready(out, pairs=2)
    assert result.splits == {"train": 4}
    assert [x["reason"] for x in result.left_out] == ["no mask_img next to target_img"]


def test_aigc_preparers_listed_with_their_layouts(capsys):
    assert main(["data", "prepare"]) == 0
    listing = capsys.readouterr().out
    for name in ("cocoglide", "autosplice", "opensdid", "tgif", "magicbrush"):
        assert f"\n{name}: " in "\n" + listing and name in PREPARERS
    assert main(["data", "index", "--aigc", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["datasets"]}
    for name, prepare in (("CocoGlide", "cocoglide"), ("AutoSplice", "autosplice"), ("OpenSDID", "opensdid"),
                          ("TGIF", "tgif"), ("MagicBrush", "magicbrush")):
        assert rows[name]["prepare"] == prepare and rows[name]["download"]
    assert main(["data", "index", "tgif", "--aigc"]) == 0
    assert "prepare: benco data prepare tgif" in capsys.readouterr().out
