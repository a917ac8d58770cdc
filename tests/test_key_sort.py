"""The CPU sort behind the exact pixel AUC: every backend gives np.sort's result, so values never
depend on which one a machine picks (IMDLBenCo.evaluation._prepare.sort_keys_inplace)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from IMDLBenCo.evaluation import _prepare

SENTINEL = 0x7FFFFFFF


def _keys(n: int, seed: int, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.random(n, dtype=np.float32)
    if ties:
        p = np.round(p * 7) / 7  # few distinct values, many ties across labels
    p[: n // 10] = 0.0
    p[n // 10: n // 5] = 1.0
    keys = (p.view(np.int32) << 1) | (rng.random(n) < 0.3)
    keys[rng.random(n) < 0.05] = SENTINEL  # padding
    return rng.permutation(keys).astype(np.int32)


@pytest.mark.parametrize("backend", _prepare.KEY_SORTS)
@pytest.mark.parametrize("n", [0, 1, 2, 255, 65537, 262144])
@pytest.mark.parametrize("ties", [False, True])
def test_each_backend_sorts_like_numpy(backend, n, ties, forced):
    if backend == "opencv":
        pytest.importorskip("cv2")
    keys = _keys(n, seed=n + ties, ties=ties)
    buf = np.empty((2, n), np.int32)  # rows of a 2-D buffer, as the evaluator sorts them
    buf[1] = keys
    row = buf[1]
    forced(backend)
    _prepare.sort_keys_inplace(row)
    assert np.array_equal(buf[1], np.sort(keys))


@pytest.fixture
def forced(monkeypatch):
    def force(name: str) -> None:
        monkeypatch.setitem(_prepare._KEY_SORT, "name", name)
    return force


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(3, 1, 40, 56, generator=g) > 0.7).float()
    preds = torch.sigmoid((masks * 2 - 1) + torch.randn(3, 1, 40, 56, generator=g))
    preds[1] = torch.round(preds[1] * 20) / 20  # ties
    shape_mask = torch.zeros_like(masks)
    shape_mask[:, :, :33, :47] = 1
    return preds, masks, shape_mask


@pytest.mark.parametrize("backend", _prepare.KEY_SORTS)
def test_evaluator_values_do_not_depend_on_the_sort(backend, forced):
    if backend == "opencv":
        pytest.importorskip("cv2")
    preds, masks, shape_mask = _batch(0)
    forced("numpy")
    ref = _prepare.PixelBatch(preds, masks, shape_mask, "t")
    want = [ref.auc(), ref.average_precision(), ref.f1_best(), ref.histogram()]
    forced(backend)
    got = _prepare.PixelBatch(preds, masks, shape_mask, "t")
    for a, b in zip([got.auc(), got.average_precision(), got.f1_best(), got.histogram()], want):
        assert torch.equal(a, b) or torch.allclose(a, b, equal_nan=True, rtol=0, atol=0)
    sklearn = pytest.importorskip("sklearn.metrics")
    for i in range(3):
        valid = shape_mask[i].reshape(-1) > 0.5
        y, p = masks[i].reshape(-1)[valid].numpy(), preds[i].reshape(-1)[valid].numpy()
        assert float(got.auc()[i]) == pytest.approx(sklearn.roc_auc_score(y, p), abs=1e-12)


def test_choice_is_made_once_and_can_be_forced(monkeypatch):
    monkeypatch.setattr(_prepare, "_KEY_SORT", {})
    monkeypatch.setenv("IMDLBENCO_KEY_SORT", "radix")
    assert _prepare.key_sort_name() == "radix"
    monkeypatch.setenv("IMDLBENCO_KEY_SORT", "numpy")
    assert _prepare.key_sort_name() == "radix", "chosen once per process"
    monkeypatch.setattr(_prepare, "_KEY_SORT", {})
    monkeypatch.setenv("IMDLBENCO_KEY_SORT", "bogus")
    with pytest.raises(ValueError, match="IMDLBENCO_KEY_SORT"):
        _prepare.key_sort_name()
    monkeypatch.setattr(_prepare, "_KEY_SORT", {})
    monkeypatch.delenv("IMDLBENCO_KEY_SORT")
    assert _prepare.key_sort_name() in _prepare.KEY_SORTS  # timed choice
