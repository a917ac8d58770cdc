"""Dataset layer: sample dict, geometry, masks, pairing, bad inputs, balanced sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from IMDLBenCo.datasets import (
    BalancedDataset,
    DatasetError,
    JsonDataset,
    ManiDataset,
    dataset_from_path,
    denormalize,
    load_test_datasets,
    normalize_batch,
)
from IMDLBenCo.registry import DATASETS
from IMDLBenCo.transforms import edge_mask

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def rect_mask(h: int, w: int, box=(2, 3, 8, 12)) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = 255
    return m


def make_mani(root: Path, items, mask_suffix: str = "", image_ext: str = ".png") -> Path:
    """items: list of (stem, image array, mask array or None)."""
    (root / "Tp").mkdir(parents=True, exist_ok=True)
    (root / "Gt").mkdir(parents=True, exist_ok=True)
    for stem, img, msk in items:
        Image.fromarray(img).save(root / "Tp" / f"{stem}{image_ext}")
        if msk is not None:
            Image.fromarray(msk).save(root / "Gt" / f"{stem}{mask_suffix}.png")
    return root


@pytest.fixture
def small_mani(tmp_path: Path) -> Path:
    items = [(f"img{i}", rand_image(20, 30, i), rect_mask(20, 30, (i, i + 1, i + 8, i + 12))) for i in range(4)]
    return make_mani(tmp_path / "mani", items)


# ---------------------------------------------------------------- sample dict
def test_every_class_is_registered():
    for name in ("ManiDataset", "JsonDataset", "BalancedDataset"):
        assert name in DATASETS


def test_padding_sample_keys_geometry_and_values(small_mani: Path):
    ds = ManiDataset(str(small_mani), is_padding=True, output_size=(32, 32), edge_width=3)
    assert len(ds) == 4
    s = ds[1]
    assert set(s) == {"image", "mask", "label", "shape", "original_shape", "origin_shape", "name",
                      "shape_mask", "edge_mask", "image_path", "mask_path"}
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.float32
    assert s["mask"].shape == (1, 32, 32) and s["mask"].dtype == torch.float32
    assert s["shape_mask"].shape == (1, 32, 32) and s["edge_mask"].shape == (1, 32, 32)
    assert s["label"].dtype == torch.int64 and s["label"].item() == 1
    assert s["shape"].tolist() == [20, 30] and s["original_shape"].tolist() == [20, 30]
    assert s["origin_shape"].tolist() == [20, 30]
    assert s["name"] == "img1.png" and s["image_path"].endswith("Tp/img1.png") and s["mask_path"].endswith("Gt/img1.png")
    # content at the top-left, normalised; zeros (≈ -mean/std) elsewhere
    raw = torch.from_numpy(rand_image(20, 30, 1)).permute(2, 0, 1).float() / 255
    assert torch.allclose(s["image"][:, :20, :30], (raw - MEAN) / STD, atol=1e-5)
    assert torch.allclose(s["image"][:, 20:, :], (-MEAN / STD).expand(3, 12, 32), atol=1e-5)
    expected_shape_mask = torch.zeros(1, 32, 32)
    expected_shape_mask[:, :20, :30] = 1
    assert torch.equal(s["shape_mask"], expected_shape_mask)
    expected_mask = torch.zeros(1, 32, 32)
    expected_mask[:, 1:9, 2:13] = 1
    assert torch.equal(s["mask"], expected_mask)


def test_resizing_geometry(small_mani: Path):
    ds = ManiDataset(str(small_mani), is_resizing=True, output_size=40)
    s = ds[0]
    assert "shape_mask" not in s and "edge_mask" not in s
    assert s["image"].shape == (3, 40, 40) and s["shape"].tolist() == [40, 40]
    assert s["original_shape"].tolist() == [20, 30]
    assert set(s["mask"].unique().tolist()) == {0.0, 1.0}
    # nearest resize: 20x30 mask rows 0..8, cols 1..12 scaled by (2, 4/3)
    m = s["mask"][0]
    assert m[:16].sum() > 0 and m[17:].sum() == 0


def test_keep_size_leaves_each_image_at_its_size(small_mani: Path):
    """keep_size (--sliding_window): no padding, no resizing, no shape_mask; output_size unused."""
    ds = ManiDataset(str(small_mani), keep_size=True, output_size=8)
    for i in range(len(ds)):
        s = ds[i]
        h, w = s["original_shape"].tolist()
        assert s["image"].shape == (3, h, w) and s["mask"].shape == (1, h, w)
        assert s["shape"].tolist() == [h, w] and "shape_mask" not in s


def test_exactly_one_of_padding_or_resizing(small_mani: Path):
    with pytest.raises(ValueError, match="exactly one of is_padding, is_resizing and keep_size"):
        ManiDataset(str(small_mani))
    with pytest.raises(ValueError, match="exactly one"):
        ManiDataset(str(small_mani), is_padding=True, is_resizing=True)


def test_oversize_shrink_and_error(tmp_path: Path, caplog, monkeypatch):
    root = make_mani(tmp_path / "big", [("a", rand_image(20, 40), rect_mask(20, 40, (0, 0, 20, 20)))])
    ds = ManiDataset(str(root), is_padding=True, output_size=32)
    import IMDLBenCo.datasets.dataset as dataset_module

    monkeypatch.setattr(dataset_module, "_oversize_logged", False)
    with caplog.at_level("WARNING"):
        s = ds[0]
        ds[0]
    assert len([r for r in caplog.records if "shrunk" in r.getMessage()]) == 1  # said once
    assert s["shape"].tolist() == [16, 32]  # long side 40 -> 32, aspect kept, no crop
    assert s["original_shape"].tolist() == [20, 40]
    assert s["shape_mask"].sum().item() == 16 * 32
    assert s["mask"][0, :16, :16].mean().item() == 1.0 and s["mask"][0, :, 16:].sum().item() == 0
    strict = ManiDataset(str(root), is_padding=True, output_size=32, oversize="error")
    with pytest.raises(DatasetError, match=r"a\.png.*larger than the padding size"):
        strict[0]
    with pytest.raises(ValueError, match="oversize"):
        ManiDataset(str(root), is_padding=True, output_size=32, oversize="crop")


def test_deferred_normalisation_matches_float_form(small_mani: Path):
    kw = dict(is_padding=True, output_size=32, edge_width=5)
    ref = ManiDataset(str(small_mani), **kw)[2]
    lazy = ManiDataset(str(small_mani), defer_normalization=True, **kw)[2]
    for key in ("image", "mask", "shape_mask", "edge_mask"):
        assert lazy[key].dtype == torch.uint8
    batch = torch.utils.data.default_collate([lazy])
    normalize_batch(batch)
    for key in ("image", "mask", "shape_mask", "edge_mask"):
        assert batch[key].dtype == torch.float32
        assert torch.allclose(batch[key][0], ref[key], atol=1e-5), key
    before = batch["image"].clone()
    normalize_batch(batch)  # float input: no-op
    assert torch.equal(before, batch["image"])
    assert torch.allclose(denormalize(ref["image"])[:, :20, :30],
                          torch.from_numpy(rand_image(20, 30, 2)).permute(2, 0, 1).float() / 255, atol=1e-5)


def test_post_funcs_run_last(small_mani: Path):
    seen = {}

    def post(sample):
        seen["keys"] = set(sample)
        sample["extra"] = sample["image"].dtype

    s = ManiDataset(str(small_mani), is_resizing=True, output_size=16, post_funcs=[post])[0]
    assert "label" in seen["keys"] and s["extra"] == torch.float32
    with pytest.raises(TypeError, match="post_funcs"):
        ManiDataset(str(small_mani), is_resizing=True, post_funcs=3)


def test_label_from_final_mask_after_transform(small_mani: Path):
    def clear(image, mask):
        return {"image": image, "mask": np.zeros_like(mask)}

    def flip(image, mask):
        return {"image": image[:, ::-1], "mask": mask[:, ::-1]}

    s = ManiDataset(str(small_mani), is_padding=True, output_size=32, common_transforms=clear)[0]
    assert s["label"].item() == 0 and s["mask"].sum() == 0
    f = ManiDataset(str(small_mani), is_padding=True, output_size=32, common_transforms=flip)[0]
    assert f["mask"][0, 0:8, 30 - 12:30 - 1].mean() == 1.0


# ---------------------------------------------------------------- edge mask
@pytest.mark.parametrize("width", [3, 5, 7])
def test_edge_mask_band_width(width):
    # IMDL-BenCo's cross kernel of size k: k//2 pixels on each side of a straight boundary
    m = np.zeros((20, 40), np.uint8)
    m[:, 20:] = 1
    band = edge_mask(m, width)
    cols = np.flatnonzero(band[10])
    r = width // 2
    assert len(cols) == 2 * r and band.sum() == 20 * 2 * r
    assert cols.min() == 20 - r and cols.max() == 20 + r - 1
    assert edge_mask(np.zeros((9, 9), np.uint8), width).sum() == 0
    assert edge_mask(np.ones((9, 9), np.uint8), width).sum() == 0


@pytest.mark.parametrize("width", [0, 1, 2, 6, -3, 7.0, True])
def test_edge_width_must_be_odd_and_at_least_3(width):
    with pytest.raises(ValueError, match="odd number of pixels >= 3"):
        edge_mask(np.zeros((9, 9), np.uint8), width)


def test_edge_mask_tensor_equals_numpy_rule():
    from IMDLBenCo.transforms import edge_mask_tensor

    rng = np.random.default_rng(0)
    m = (rng.random((2, 1, 24, 31)) > 0.7).astype(np.float32)
    t = edge_mask_tensor(torch.from_numpy(m), 7)
    for i in range(2):
        assert np.array_equal(t[i, 0].numpy().astype(np.uint8), edge_mask(m[i, 0].astype(np.uint8), 7))


def test_edge_mask_is_built_before_resizing(tmp_path: Path):
    # a 10x20 mask with the right half tampered, resized 4x: the 2-pixel band (width 3) of the
    # original resolution becomes 8 output pixels, as in IMDL-BenCo
    m = np.zeros((10, 20), np.uint8)
    m[:, 10:] = 255
    root = make_mani(tmp_path / "e", [("a", rand_image(10, 20), m)])
    s = ManiDataset(str(root), is_resizing=True, output_size=(40, 80), edge_width=3)[0]
    assert s["edge_mask"][0, 20].sum().item() == 8
    # padding: no band along the content border where the mask touches the padding
    p = ManiDataset(str(root), is_padding=True, output_size=32, edge_width=3)[0]
    assert p["edge_mask"][0, :, 19:].sum().item() == 0 and p["edge_mask"][0, :10].sum().item() == 20


# ---------------------------------------------------------------- masks and pairing
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "1"])
def test_mask_modes_binarise_alike(tmp_path: Path, mode):
    base = rect_mask(20, 30)
    base[0, 0] = 100  # grey below the 127.5 threshold -> 0
    base[0, 1] = 200  # above -> 1
    if mode == "I;16":
        img = Image.fromarray(base.astype(np.uint16) * 257)
    elif mode == "RGBA":
        rgba = np.dstack([base] * 3 + [np.full_like(base, 255)])
        img = Image.fromarray(rgba, "RGBA")
    else:
        img = Image.fromarray(base).convert(mode)
    root = tmp_path / mode.replace(";", "")
    make_mani(root, [("a", rand_image(20, 30), None)])
    img.save(root / "Gt" / "a.png")
    s = ManiDataset(str(root), is_padding=True, output_size=32)[0]
    expected = (base > 127.5) if mode != "1" else (base > 127)
    assert torch.equal(s["mask"][0, :20, :30].bool(), torch.from_numpy(expected))


def _one_pair(root: Path, mask_img: Image.Image, h: int = 20, w: int = 30) -> Path:
    make_mani(root, [("a", rand_image(h, w), None)])
    mask_img.save(root / "Gt" / "a.png")
    return root


@pytest.mark.parametrize("kind", ["01_L", "01_I16", "0255_I16", "0_100_L"])
def test_two_valued_masks_are_read_by_their_nonzero_value(tmp_path: Path, kind):
    """Masks that IMDL-BenCo reads as empty (0/1 in 8 or 16 bits, 0/255 in 16 bits): manipulated
    where non-zero, in the dataset and in `benco data check` alike."""
    from IMDLBenCo.datasets import check_dataset

    base = rect_mask(20, 30) > 0
    value = {"01_L": 1, "01_I16": 1, "0255_I16": 255, "0_100_L": 100}[kind]
    arr = base.astype(np.uint16 if "I16" in kind else np.uint8) * value
    root = _one_pair(tmp_path / kind, Image.fromarray(arr))
    s = ManiDataset(str(root), is_padding=True, output_size=32)[0]
    assert torch.equal(s["mask"][0, :20, :30].bool(), torch.from_numpy(base)) and s["label"].item() == 1
    report = check_dataset(str(root))
    assert not report.errors and [p.kind for p in report.warnings] == ["two-valued mask"]


@pytest.mark.parametrize("kind", ["red_on_black", "faint"])
def test_unclear_masks_are_refused_naming_the_file(tmp_path: Path, kind):
    from IMDLBenCo.datasets import check_dataset

    base = rect_mask(20, 30) > 0
    if kind == "red_on_black":
        rgb = np.zeros((20, 30, 3), np.uint8)
        rgb[base] = (255, 0, 0)
        img = Image.fromarray(rgb)
    else:  # several faint values, none above the threshold
        arr = base.astype(np.uint8) * 60
        arr[0, :5] = 30
        img = Image.fromarray(arr)
    root = _one_pair(tmp_path / kind, img)
    ds = ManiDataset(str(root), is_padding=True, output_size=32)
    with pytest.raises(DatasetError, match=r"Gt/a\.png: .*white \(255\) on black") as info:
        ds[0]
    assert ("coloured" in str(info.value)) == (kind == "red_on_black")
    report = check_dataset(str(root))
    assert [p.kind for p in report.errors] == ["unclear mask"] and report.errors[0].path.endswith("a.png")


def test_valid_white_masks_with_stray_grey_keep_the_threshold_rule(tmp_path: Path):
    arr = rect_mask(20, 30)
    arr[0, 0] = 100  # a stray grey pixel next to real 255 content: read as 0 (IMDL-BenCo's rule)
    root = _one_pair(tmp_path / "grey", Image.fromarray(arr))
    s = ManiDataset(str(root), is_padding=True, output_size=32)[0]
    assert torch.equal(s["mask"][0, :20, :30].bool(), torch.from_numpy(arr > 127.5))


def test_no_exif_rotation(tmp_path: Path):
    # an EXIF "rotate 90" tag must not turn the image: its mask would no longer line up
    root = make_mani(tmp_path / "exif", [])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rand_image(20, 30)).save(root / "Tp" / "a.jpg", exif=exif.tobytes())
    Image.fromarray(rect_mask(20, 30)).save(root / "Gt" / "a.png")
    s = ManiDataset(str(root), is_padding=True, output_size=32)[0]
    assert s["original_shape"].tolist() == [20, 30]


def test_pairing_by_stem_not_sort_position(tmp_path: Path):
    root = tmp_path / "pairs"
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir(parents=True)
    Image.fromarray(rand_image(20, 30, 1)).save(root / "Tp" / "b.jpg")
    Image.fromarray(rand_image(20, 30, 2)).save(root / "Tp" / "a.png")
    Image.fromarray(rect_mask(20, 30, (0, 0, 5, 5))).save(root / "Gt" / "b_mask.png")
    Image.fromarray(rect_mask(20, 30, (10, 10, 20, 30))).save(root / "Gt" / "a_gt.png")
    (root / "Tp" / "notes.txt").write_text("not an image")
    (root / "Gt" / "Thumbs.db").write_bytes(b"\0")
    ds = ManiDataset(str(root), is_padding=True, output_size=32)
    by_name = {ds[i]["name"]: ds[i] for i in range(len(ds))}
    assert set(by_name) == {"a.png", "b.jpg"}
    assert by_name["a.png"]["mask"][0, 10:20, 10:30].mean() == 1 and by_name["a.png"]["mask"].sum() == 200
    assert by_name["b.jpg"]["mask"].sum() == 25


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_mask", r"1 image\(s\) without a mask in Gt/: c\.png"),
        ("orphan_mask", r"1 mask\(s\) without an image in Tp/: z\.png"),
        ("duplicate", r"2 file\(s\) sharing a stem with another file: a\.jpg, a\.png \(stem 'a'"),
    ],
)
def test_structural_problems_fail_at_construction(tmp_path: Path, case, pattern):
    items = [("a", rand_image(8, 8), rect_mask(8, 8)), ("b", rand_image(8, 8), rect_mask(8, 8))]
    root = make_mani(tmp_path / case, items)
    if case == "missing_mask":
        Image.fromarray(rand_image(8, 8)).save(root / "Tp" / "c.png")
    elif case == "orphan_mask":
        Image.fromarray(rect_mask(8, 8)).save(root / "Gt" / "z.png")
    else:
        Image.fromarray(rand_image(8, 8)).save(root / "Tp" / "a.jpg")
    with pytest.raises(DatasetError, match=pattern) as err:
        ManiDataset(str(root), is_resizing=True, output_size=8)
    assert "benco data check" in str(err.value)


def test_missing_folders_and_files(tmp_path: Path):
    with pytest.raises(DatasetError, match="not a folder"):
        ManiDataset(str(tmp_path / "nope"), is_resizing=True)
    (tmp_path / "only_tp" / "Tp").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"only_tp/Gt: folder missing"):
        ManiDataset(str(tmp_path / "only_tp"), is_resizing=True)


def test_broken_files_fail_at_load_naming_the_file(tmp_path: Path):
    items = [("good", rand_image(20, 30), rect_mask(20, 30)), ("trunc", rand_image(20, 30), rect_mask(20, 30)),
             ("size", rand_image(20, 30), rect_mask(20, 30))]
    root = make_mani(tmp_path / "broken", items, image_ext=".jpg")
    data = (root / "Tp" / "trunc.jpg").read_bytes()
    (root / "Tp" / "trunc.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(rect_mask(21, 30)).save(root / "Gt" / "size.png")
    ds = ManiDataset(str(root), is_resizing=True, output_size=16)  # construction only pairs names
    names = [ds.names[i] for i in range(len(ds))]
    assert ds[names.index("good.jpg")]["label"].item() == 1
    with pytest.raises(DatasetError, match=r"size\.jpg: image is 30x20 \(WxH\) but its mask .*size\.png is 30x21"):
        ds[names.index("size.jpg")]
    with pytest.raises(DatasetError, match=r"trunc\.jpg: cannot be read as an image") as err:
        ds[names.index("trunc.jpg")]
    assert "benco data check" in str(err.value)


def test_worker_error_is_one_clear_message(tmp_path: Path):
    root = make_mani(tmp_path / "w", [("bad", rand_image(8, 8), rect_mask(8, 8))])
    (root / "Tp" / "bad.png").write_bytes(b"garbage")
    loader = torch.utils.data.DataLoader(ManiDataset(str(root), is_resizing=True, output_size=8), num_workers=1)
    with pytest.raises(DatasetError, match=r"bad\.png: cannot be read"):
        next(iter(loader))


# ---------------------------------------------------------------- JsonDataset
def test_json_dataset_negative_and_relative_paths(tmp_path: Path, small_mani: Path, monkeypatch):
    au = tmp_path / "au"
    au.mkdir()
    Image.fromarray(rand_image(20, 30, 9)).save(au / "img0.png")  # same file name as a Tp image
    entries = [["mani/Tp/img0.png", "mani/Gt/img0.png"], ["au/img0.png", "Negative"]]
    jpath = tmp_path / "list.json"
    jpath.write_text(json.dumps(entries))
    monkeypatch.chdir(small_mani / "Tp")  # relative paths must not depend on the CWD
    ds = JsonDataset(str(jpath), is_padding=True, output_size=32)
    assert len(ds) == 2
    neg = ds[1]
    assert neg["label"].item() == 0 and neg["mask"].sum() == 0 and neg["mask_path"] == "Negative"
    assert ds[0]["label"].item() == 1
    assert ds.names[0] != ds.names[1] and ds.names == ["Tp/img0.png", "au/img0.png"]


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("{not json", "not valid JSON"),
        ("[]", "empty list"),
        ('[["a.png"]]', "entry 0 is"),
        ('[["a.png", "b.png"]]', r"listed image\(s\) that do not exist: .*a\.png \(listed in entry 0"),
    ],
)
def test_json_dataset_bad_files(tmp_path: Path, content, pattern):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(DatasetError, match=pattern) as err:
        JsonDataset(str(p), is_resizing=True)
    assert "bad.json" in str(err.value)


# ---------------------------------------------------------------- BalancedDataset
@pytest.fixture
def balanced_json(tmp_path: Path) -> Path:
    make_mani(tmp_path / "big", [(f"b{i:02d}", rand_image(8, 8, i), rect_mask(8, 8)) for i in range(10)])
    make_mani(tmp_path / "small", [(f"s{i}", rand_image(8, 8, i), rect_mask(8, 8)) for i in range(3)])
    jl = tmp_path / "small.json"
    jl.write_text(json.dumps([[f"small/Tp/s{i}.png", f"small/Gt/s{i}.png"] for i in range(3)]))
    p = tmp_path / "balanced.json"
    p.write_text(json.dumps([["ManiDataset", "big"], ["JsonDataset", "small.json"]]))
    return p


def names_of(ds):
    return [ds[i]["name"] for i in range(len(ds))]


def test_balanced_dataset_draws(balanced_json: Path):
    ds = BalancedDataset(str(balanced_json), sample_number=5, is_resizing=True, output_size=8, seed=3)
    assert len(ds) == 10 and len(ds.datasets) == 2
    first = names_of(ds)
    assert all(n.startswith("b") for n in first[:5]) and all(n.startswith("s") for n in first[5:])
    assert len(set(first[:5])) == 5  # no replacement while the sub-dataset is large enough
    assert sorted(first[5:]).count("s0.png") <= 2 and set(first[5:]) == {"s0.png", "s1.png", "s2.png"}
    again = BalancedDataset(str(balanced_json), sample_number=5, is_resizing=True, output_size=8, seed=3)
    assert names_of(again) == first
    ds.set_epoch(1)
    second = names_of(ds)
    assert second != first and len(set(second[:5])) == 5
    ds.set_epoch(0)
    assert names_of(ds) == first
    assert ds[0]["image"].shape == (3, 8, 8)  # kwargs reach the sub-datasets


def test_balanced_dataset_bad_class(tmp_path: Path):
    p = tmp_path / "b.json"
    p.write_text(json.dumps([["ManiDatset", "x"]]))
    with pytest.raises(DatasetError, match=r"b\.json: entry 0: .*Did you mean \"ManiDataset\""):
        BalancedDataset(str(p), is_resizing=True)


# ---------------------------------------------------------------- path helpers
def test_dataset_from_path_and_test_datasets(tmp_path: Path, balanced_json: Path):
    root = tmp_path
    assert type(dataset_from_path(str(root / "big"), is_resizing=True, output_size=8, sample_number=4)).__name__ == "ManiDataset"
    assert type(dataset_from_path(str(root / "small.json"), is_resizing=True, output_size=8)).__name__ == "JsonDataset"
    bal = dataset_from_path(str(balanced_json), is_resizing=True, output_size=8, sample_number=4)
    assert type(bal).__name__ == "BalancedDataset" and len(bal) == 8
    (root / "obj.json").write_text(json.dumps({"big": "big", "small": "small.json"}))
    with pytest.raises(DatasetError, match="obj.json.*test_datasets.json"):
        dataset_from_path(str(root / "obj.json"), is_resizing=True)
    with pytest.raises(DatasetError, match="nothing_here.*ManiDataset folder"):
        dataset_from_path(str(root / "nothing_here"), is_resizing=True)
    tests = load_test_datasets(str(root / "obj.json"))
    assert tests == {"big": str(root / "big"), "small": str(root / "small.json")}
    assert load_test_datasets(str(root / "big")) == {"test_dataset": str(root / "big")}
    assert load_test_datasets(str(root / "small.json")) == {"test_dataset": str(root / "small.json")}
    (root / "bad.json").write_text(json.dumps({"x": "missing"}))
    with pytest.raises(DatasetError, match="'x' points to"):
        load_test_datasets(str(root / "bad.json"))


# ---------------------------------------------------------------- real data
def test_coverage_yields_91_samples(coverage_dir: Path):
    ds = ManiDataset(str(coverage_dir), is_resizing=True, output_size=64)
    assert len(ds) == 91
    s = ds[0]
    assert s["label"].item() == 1 and s["image"].shape == (3, 64, 64)
    with_au = ManiDataset(str(coverage_dir), is_resizing=True, output_size=64, include_authentic=True)
    assert len(with_au) == 191 and with_au[190]["label"].item() == 0


def test_coverage_size_mismatch_fails_at_load(coverage_dir: Path):
    ds = ManiDataset(str(coverage_dir / "size_mismatch"), is_resizing=True, output_size=64)
    assert len(ds) == 9
    with pytest.raises(DatasetError, match=r"41t\.png: image is 588x376"):
        ds[0]


# ---------------------------------------------------------------- padded item layout (speed path)
@pytest.mark.parametrize("transform", [None, "numpy_flip"])
def test_padded_deferred_item_is_contiguous_chw_with_exact_content(small_mani: Path, transform):
    """The padded uint8 image is built as contiguous (3,S,S) zeros with the pixels copied into its
    top-left (so the collate is a plain copy); values equal the plain HWC pad seen as CHW."""
    flip = (lambda image, mask: {"image": image[:, ::-1], "mask": mask[:, ::-1]}) if transform else None
    ds = ManiDataset(str(small_mani), is_padding=True, output_size=(32, 40), defer_normalization=True,
                     common_transforms=flip)
    for i in range(len(ds)):
        s = ds[i]
        img = rand_image(20, 30, i)
        if transform:
            img = img[:, ::-1]
        ref = np.zeros((32, 40, 3), np.uint8)
        ref[:20, :30] = img
        assert s["image"].dtype == torch.uint8 and s["image"].is_contiguous()
        assert torch.equal(s["image"], torch.from_numpy(ref).permute(2, 0, 1))
        ref_shape = torch.zeros(1, 32, 40, dtype=torch.uint8)
        ref_shape[:, :20, :30] = 1
        assert torch.equal(s["shape_mask"], ref_shape)
        assert s["mask"][:, 20:].sum() == 0 and s["mask"][:, :, 30:].sum() == 0


def test_padded_oversize_shrink_deferred_layout(tmp_path: Path):
    """An image shrunk to fit (torch resize output, channels-last strides) pads the same way."""
    root = make_mani(tmp_path / "big", [("a", rand_image(20, 40, 3), rect_mask(20, 40, (0, 0, 20, 20)))])
    s = ManiDataset(str(root), is_padding=True, output_size=32, defer_normalization=True)[0]
    resized = ManiDataset(str(root), is_resizing=True, output_size=(16, 32), defer_normalization=True)[0]
    assert s["image"].is_contiguous() and s["shape"].tolist() == [16, 32]
    assert torch.equal(s["image"][:, :16, :32], resized["image"])
    assert s["image"][:, 16:].sum() == 0
    batch = normalize_batch(torch.utils.data.default_collate([s, s]))
    float_item = ManiDataset(str(root), is_padding=True, output_size=32)[0]
    assert torch.equal(batch["image"][1], float_item["image"])


def test_normalize_batch_leaves_thread_settings_alone_and_paths_agree(small_mani: Path, monkeypatch):
    """The conversion changes no process-wide setting (no set_num_threads), and its numpy path
    (small CPU batches) and torch path (large batches, other devices) give the same values."""
    ds = ManiDataset(str(small_mani), is_padding=True, output_size=32, edge_width=3, defer_normalization=True)
    calls = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real_set(n)))
    small = normalize_batch(torch.utils.data.default_collate([ds[0], ds[1]]))
    for batch in torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1):
        normalize_batch(batch)
    import IMDLBenCo.datasets.utils as utils_module

    monkeypatch.setattr(utils_module, "SMALL_CONVERSION", 1)  # every batch counts as large: torch path
    large = normalize_batch(torch.utils.data.default_collate([ds[0], ds[1]]))
    assert calls == []
    for key in ("image", "mask", "shape_mask", "edge_mask"):
        assert small[key].dtype == torch.float32
        torch.testing.assert_close(small[key], large[key], rtol=0, atol=1e-6)
