"""Reference parity: every fixture in ../shared/reference/parity/ (or $IMDLBENCO_PARITY_DIR) against our code.

Models (README §3): same filled weights and inputs give IMDL-BenCo 0.1.45's eval and train
outputs, losses, per-parameter gradient norms and dropout probabilities. Data pipeline (§4): same
resized / padded images, masks, edge masks, shape masks, labels and shapes. Attacks (§5): same
blurred and JPEG-compressed images, same noise statistics. A fixture that is present and does not
match fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from parity import (
    DATA_DIR,
    PARITY_DIR,
    SOURCES_DIR,
    data_fixture_names,
    model_fixture_names,
    robust_fixture_names,
    run_model_fixture,
)

pytestmark = pytest.mark.skipif(not PARITY_DIR.is_dir(), reason=f"parity fixtures not found at {PARITY_DIR}")



@pytest.fixture(autouse=True)
def _reference_numerics():
    """README: the fixtures were made with 2 threads and deterministic algorithms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------- models
#: fixtures whose check takes about a minute or more on a 2-core CPU (full-resolution convolutions
#: forward and backward): run with --runslow (`pytest --runslow tests/test_parity.py`, about 8 more
#: minutes) so that the default suite stays within CI's budget; every other fixture runs always
HEAVY = {"Cat_Net", "SPAN", "SparseViT", "MantraNet", "MSCDI_Net"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in model_fixture_names()])
def test_model_matches_reference(name):
    report = run_model_fixture(name)
    assert report.ok, f"{name} differs from IMDL-BenCo 0.1.45:\n  " + "\n  ".join(report.problems)


def test_every_zoo_fixture_is_known():
    """Every fixture names a registered model (a typo'd or new fixture would fail to build)."""
    from IMDLBenCo.registry import MODELS

    unknown = [n for n in model_fixture_names() if n not in MODELS]
    assert not unknown


# ---------------------------------------------------------------------------------- data pipeline
def _source(z) -> tuple:
    """(dataset root, image path, mask path or None) of a data fixture (README §4)."""
    image_file, mask_file = str(z["image_file"]), str(z["mask_file"])
    root = SOURCES_DIR / ("MISC_samples" if image_file.startswith("CASIA") else "COVERAGE")
    if "Negative" in str(z["dataset"]):
        return root, root / "Au" / image_file, None
    return root, root / "Tp" / image_file, root / "Gt" / mask_file


@pytest.mark.parametrize("fixture", data_fixture_names())
def test_dataset_pipeline_matches_reference(fixture, tmp_path: Path):
    from IMDLBenCo.datasets import JsonDataset, ManiDataset

    z = np.load(DATA_DIR / f"{fixture}.npz")
    mode = str(z["mode"])
    geometry = (dict(is_resizing=True, output_size=int(mode[len("resize"):])) if mode.startswith("resize")
                else dict(is_padding=True, output_size=int(mode[len("pad"):])))
    root, image, mask = _source(z)
    if not image.is_file():
        pytest.skip(f"source image {image} not found")
    # the reference read the same files through its ManiDataset / JsonDataset; the uint8
    # (deferred-normalisation) items are what the fixture stores
    if mask is None:
        listing = tmp_path / "negative.json"
        listing.write_text(json.dumps([[str(image), "Negative"]]))
        sample = JsonDataset(str(listing), edge_width=7, defer_normalization=True, **geometry)[0]
    else:
        listing = tmp_path / "pair.json"
        listing.write_text(json.dumps([[str(image), str(mask)]]))
        sample = JsonDataset(str(listing), edge_width=7, defer_normalization=True, **geometry)[0]
        if root.name == "COVERAGE":  # and through the folder reader, for the same pair
            ds = ManiDataset(str(root), edge_width=7, defer_normalization=True, **geometry)
            folder_sample = ds[ds.names.index(image.name)]
            assert torch.equal(folder_sample["image"], sample["image"])
            assert torch.equal(folder_sample["mask"], sample["mask"])

    ours = sample["image"].numpy().astype(np.int16)
    assert ours.shape == z["image"].shape
    close = np.abs(ours - z["image"].astype(np.int16)) <= 1
    assert close.mean() >= 0.999, f"only {close.mean():.4%} of image values within 1 grey level"
    assert np.array_equal(sample["mask"].numpy(), z["mask"])
    assert np.array_equal(sample["edge_mask"].numpy(), z["edge_mask"])
    if "shape_mask" in z.files:
        assert np.array_equal(sample["shape_mask"].numpy(), z["shape_mask"])
    assert int(sample["label"]) == int(z["label"])
    assert sample["shape"].tolist() == z["shape"].tolist()
    assert sample["original_shape"].tolist() == z["original_shape"].tolist()


def test_normalised_image_inverts_to_the_fixture():
    """The float (normalised) form of our item is the fixture's pipeline tensor (README §4)."""
    from IMDLBenCo.datasets import ManiDataset

    name = "resize256__cov_1t"
    if name not in data_fixture_names():
        pytest.skip(f"{name} not present")
    z = np.load(DATA_DIR / f"{name}.npz")
    cov = SOURCES_DIR / "COVERAGE"
    if not (cov / "Tp" / "1t.png").is_file():
        pytest.skip(f"source image {cov / 'Tp' / '1t.png'} not found")
    ds = ManiDataset(str(cov), is_resizing=True, output_size=256)
    x = ds[ds.names.index("1t.png")]["image"]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    back = torch.round((x * std + mean) * 255).to(torch.uint8).numpy()
    assert np.array_equal(back, z["image"])


# ---------------------------------------------------------------------------------- attacks
def _attack(wrapper, param):
    for p, transform in wrapper:
        if p == param:
            return transform
    raise AssertionError(f"{wrapper!r} has no strength {param}")


@pytest.mark.parametrize("fixture", robust_fixture_names())
def test_blur_attack_matches_reference(fixture):
    from IMDLBenCo.transforms import GaussianBlurWrapper

    z = np.load(DATA_DIR / f"{fixture}.npz")
    x = z["input"]
    wrapper = GaussianBlurWrapper([3, 7, 11, 15, 19, 23])
    for k in wrapper.param_list:
        out = _attack(wrapper, k)(image=x, mask=np.zeros(x.shape[:2], np.uint8))["image"]
        assert np.array_equal(out, z[f"blur_{k}"]), f"blur {k}: max diff {np.abs(out.astype(int) - z[f'blur_{k}']).max()}"


@pytest.mark.parametrize("fixture", robust_fixture_names())
def test_jpeg_attack_matches_reference(fixture):
    from IMDLBenCo.transforms import JpegCompressionWrapper

    z = np.load(DATA_DIR / f"{fixture}.npz")
    x = z["input"]
    wrapper = JpegCompressionWrapper([50, 60, 70, 80, 90, 100])
    np.random.seed(0)
    for q in wrapper.param_list:
        attack = _attack(wrapper, q)
        seen = set()
        for _ in range(12):
            out = attack(image=x, mask=np.zeros(x.shape[:2], np.uint8))["image"]
            hits = [j for j in (q - 1, q) if np.array_equal(out, z[f"jpeg_{q}_q{j}"])]
            assert hits, f"JPEG {q}: output equals neither stored outcome (quality {q - 1} or {q})"
            seen.update(hits)
        assert seen == {q - 1, q}, f"JPEG {q}: the quality is not drawn from both {q - 1} and {q}"


def test_gaussian_noise_attack_statistics():
    from IMDLBenCo.transforms import GaussianNoiseWrapper

    path = DATA_DIR / "robust_gaussian_noise.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    rows = json.loads(path.read_text())["rows"]
    grey = np.full((512, 512, 3), 128, np.uint8)
    wrapper = GaussianNoiseWrapper([r["param"] for r in rows])
    np.random.seed(0)
    for row in rows:
        out = _attack(wrapper, row["param"])(image=grey, mask=np.zeros((512, 512), np.uint8))["image"]
        d = out.astype(np.float64) - 128
        assert abs(d.std() - row["std"]) <= 0.02 * row["std"], (row["param"], d.std(), row["std"])
        assert abs(d.mean() - row["mean"]) <= 0.05, (row["param"], d.mean(), row["mean"])
        for c in range(3):
            assert abs(d[..., c].std() - row["std_per_channel"][c]) <= 0.02 * row["std_per_channel"][c]
        assert abs(np.corrcoef(d[..., 0].ravel(), d[..., 1].ravel())[0, 1]) < 0.01


def test_corrected_attacks_are_options():
    """The reference's JPEG quirks (quality drawn from {q-1, q}, RGB encoded as BGR) are the
    default; the exact, colour-correct round trip is one switch away."""
    from IMDLBenCo.transforms import JpegCompressionWrapper, jpeg_roundtrip

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    x[..., 0] = 255  # strongly coloured: the channel order matters
    fixed = _attack(JpegCompressionWrapper([70], exact_quality=True, correct_colors=True), 70)
    out = fixed(image=x, mask=np.zeros((48, 64), np.uint8))["image"]
    assert np.array_equal(out, jpeg_roundtrip(x, 70))
    ref = _attack(JpegCompressionWrapper([70], exact_quality=True), 70)
    assert not np.array_equal(ref(image=x, mask=np.zeros((48, 64), np.uint8))["image"], out)
    assert "exact_quality=True" in repr(fixed)
