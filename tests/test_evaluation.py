"""Evaluators against scikit-learn, degenerate inputs, input checks and EvalSampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eval_reference import all_evaluators, assert_matches, image_reference, pixel_reference, run_evaluators

from IMDLBenCo import evaluation as E
from IMDLBenCo.evaluation import EvalSampler, InputError


def random_set(n=9, size=40, quantise=None, seed=0, padded=True):
    """n images: random blob masks (every 3rd authentic), predictions correlated with the masks."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.float32)
    valid = np.ones((n, size, size), bool)
    for i in range(n):
        if i % 3 != 2:
            y0, x0 = rng.integers(0, size // 2, 2)
            h, w = rng.integers(3, size // 2, 2)
            masks[i, y0:y0 + h, x0:x0 + w] = 1
        if padded:
            hh, ww = rng.integers(size // 2, size + 1, 2)
            valid[i, hh:, :] = False
            valid[i, :, ww:] = False
    preds = np.clip(masks * 0.4 + rng.random(masks.shape) * 0.6, 0, 1).astype(np.float32)
    if quantise:
        preds = (np.round(preds * quantise) / quantise).astype(np.float32)
    labels = (masks * valid).reshape(n, -1).max(1).astype(np.int64)
    scores = np.clip(rng.random(n) * 0.7 + labels * 0.3, 0, 1).astype(np.float32)
    if quantise:
        scores = (np.round(scores * 4) / 4).astype(np.float32)  # ties in image scores too
    return preds, masks, (valid if padded else None), labels, scores


def reference(preds, masks, valid, labels, scores):
    return {**pixel_reference(preds, masks, valid), **image_reference(labels, scores)}


@pytest.mark.parametrize("quantise", [None, 10, 255])
@pytest.mark.parametrize("padded", [False, True])
def test_random_scores_match_sklearn(quantise, padded):
    data = random_set(quantise=quantise, padded=padded, seed=int(padded) + (quantise or 0))
    ours = run_evaluators(all_evaluators(), *data, batch_size=4)
    assert_matches(ours, reference(*data))
    if quantise:  # at most one distinct value per histogram bin: the pooled AUC is exact
        assert abs(ours["pixel_auc_pooled"] - reference(*data)["pixel_auc_pooled"]) < 1e-12


@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_thresholded_metrics_at_other_thresholds_match_sklearn(threshold):
    """Every thresholded evaluator (pixel F1/IoU/accuracy/FPR in all modes, image F1, accuracy,
    balanced accuracy, MCC, TPR, TNR) at another threshold than 0.5, against scikit-learn."""
    from eval_reference import thresholded_evaluators

    data = random_set(quantise=None, padded=True, seed=5)
    ours = run_evaluators(thresholded_evaluators(threshold), *data, batch_size=3)
    ref = {**pixel_reference(*data[:3], threshold=threshold), **image_reference(*data[3:], threshold=threshold)}
    assert set(ours) <= set(ref), sorted(set(ours) - set(ref))
    assert_matches(ours, {k: v for k, v in ref.items() if k in ours})


def test_new_metrics_edge_cases():
    """MCC is 0 when undefined; TPR/TNR are NaN without their class; AUPRC counts manipulated
    images only and equals 1 for a perfect ranking."""
    one_class = {"pred_label": torch.tensor([0.9, 0.8])}
    batch = {"label": torch.tensor([1, 1])}
    for cls, want in ((E.ImageMCC, 0.0), (E.ImageTPR, 1.0), (E.ImageTNR, float("nan"))):
        ev = cls()
        ev.update(one_class, batch)
        got = ev.compute()[ev.name]
        assert (math.isnan(got) and math.isnan(want)) or got == want, (cls.__name__, got)
    ap = E.PixelAUPRC()
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2] = 1
    ap.update({"pred_mask": mask * 0.9 + 0.05}, {"mask": mask})  # image 1 is authentic: not in the mean
    assert ap.compute()["pixel_auprc"] == 1.0


def _coverage_set(coverage_dir, n=6, size=96, seed=0):
    """Real COVERAGE masks (nearest-resized, long side ``size``) padded into size×size, plus
    two authentic images; predictions = mask blurred by noise, some saturated, some quantised."""
    from PIL import Image

    files = sorted((coverage_dir / "Gt").glob("*.png"))[:n]
    assert files, f"no masks in {coverage_dir / 'Gt'}"
    rng = np.random.default_rng(seed)
    m = len(files) + 2
    masks = np.zeros((m, size, size), np.float32)
    valid = np.zeros((m, size, size), bool)
    for i in range(m):
        if i < len(files):
            im = Image.open(files[i]).convert("L")
            scale = size / max(im.size)
            im = im.resize((max(1, int(im.size[0] * scale)), max(1, int(im.size[1] * scale))), Image.NEAREST)
            a = np.asarray(im) > 127
            masks[i, : a.shape[0], : a.shape[1]] = a
            valid[i, : a.shape[0], : a.shape[1]] = True
        else:
            valid[i, : size - 10 * (i - len(files)), :] = True
    noise = rng.normal(0, 1.2, masks.shape)
    preds = 1 / (1 + np.exp(-((masks * 2 - 1) * 2.5 + noise)))
    preds[1] = np.round(preds[1] * 255) / 255  # 8-bit prediction
    preds[2] = np.where(preds[2] > 0.9, 1.0, preds[2])  # saturated: big ties at 1.0
    preds = preds.astype(np.float32)
    labels = (masks * valid).reshape(m, -1).max(1).astype(np.int64)
    scores = np.clip(labels * 0.5 + rng.random(m) * 0.6, 0, 1).astype(np.float32)
    return preds, masks, valid, labels, scores


def test_real_coverage_masks_match_sklearn(coverage_dir):
    data = _coverage_set(coverage_dir)
    assert data[3].sum() == 6 and (data[3] == 0).sum() == 2
    ours = run_evaluators(all_evaluators(), *data, batch_size=3)
    assert_matches(ours, reference(*data))


def test_values_do_not_depend_on_batching():
    data = random_set(n=7, quantise=20)
    one = run_evaluators(all_evaluators(), *data, batch_size=1)
    seven = run_evaluators(all_evaluators(), *data, batch_size=7)
    assert one.keys() == seven.keys()
    for k in one:
        assert one[k] == seven[k] or (math.isnan(one[k]) and math.isnan(seven[k])), k


def test_authentic_images_do_not_enter_per_image_means():
    preds, masks, valid, labels, scores = random_set(n=6, padded=False)
    manip = labels == 1
    with_auth = run_evaluators(all_evaluators(), preds, masks, None, labels, scores, batch_size=2)
    only = run_evaluators(all_evaluators(), preds[manip], masks[manip], None, labels[manip], scores[manip],
                          batch_size=2)
    for key in ("pixel_f1", "pixel_iou", "pixel_accuracy", "pixel_auc", "pixel_f1_best", "pixel_f1_double"):
        assert with_auth[key] == only[key], key
    assert math.isnan(only["pixel_fpr_authentic"])
    assert with_auth["pixel_fpr_authentic"] > 0  # noisy predictions put false positives on authentic images
    # pooled keys are dataset-level: authentic pixels count there
    assert with_auth["pixel_f1_pooled"] != only["pixel_f1_pooled"]


def _one(pred, mask, shape_mask=None, label=None, score=None):
    out = {"pred_mask": torch.as_tensor(pred, dtype=torch.float32)[None, None],
           "pred_label": torch.tensor([0.5 if score is None else score])}
    batch = {"mask": torch.as_tensor(mask, dtype=torch.float32)[None, None],
             "label": torch.tensor([int(np.asarray(mask).any()) if label is None else label])}
    if shape_mask is not None:
        batch["shape_mask"] = torch.as_tensor(shape_mask, dtype=torch.float32)[None, None]
    return out, batch


def _results(out, batch, evaluators=None):
    evs = evaluators or all_evaluators()
    res = {}
    for ev in evs:
        ev.update(out, batch)
        res.update(ev.compute())
    return res


def test_all_authentic_batch():
    res = _results(*_one(np.full((8, 8), 0.7), np.zeros((8, 8))))
    for key in ("pixel_f1", "pixel_iou", "pixel_accuracy", "pixel_auc", "pixel_f1_best", "pixel_auc_pooled",
                "image_auc"):
        assert math.isnan(res[key]), key
    assert res["pixel_fpr_authentic"] == 1.0 and res["pixel_fpr_authentic_pooled"] == 1.0
    assert res["pixel_f1_pooled"] == 0.0  # scikit-learn's zero_division=0: FP only
    assert res["pixel_accuracy_pooled"] == 0.0
    assert res["image_f1"] == 0.0 and res["image_accuracy"] == 1.0 and res["image_ap"] == 0.0


def test_empty_prediction_and_all_equal_scores():
    mask = np.zeros((8, 8))
    mask[:2] = 1
    res = _results(*_one(np.zeros((8, 8)), mask))
    assert res["pixel_f1"] == 0.0 and res["pixel_iou"] == 0.0
    assert res["pixel_accuracy"] == 48 / 64
    assert res["pixel_auc"] == 0.5  # all scores tied
    assert res["pixel_f1_best"] == pytest.approx(2 * 16 / (64 + 16))  # the only threshold: everything positive
    assert res["pixel_f1_reverse"] == pytest.approx(2 * 16 / (64 + 16))


def test_fully_manipulated_image_has_no_auc_but_has_f1():
    res = _results(*_one(np.full((4, 4), 0.9), np.ones((4, 4))))
    assert math.isnan(res["pixel_auc"])
    assert res["pixel_f1"] == 1.0 and res["pixel_accuracy"] == 1.0


def test_padding_is_excluded():
    mask = np.zeros((6, 6))
    mask[:2, :2] = 1
    valid = np.zeros((6, 6))
    valid[:3, :3] = 1
    pred = np.where(valid > 0, mask * 0.9, 1.0)  # garbage (all positive) in the padding
    res = _results(*_one(pred, mask, valid))
    assert res["pixel_f1"] == 1.0 and res["pixel_auc"] == 1.0 and res["pixel_accuracy"] == 1.0
    assert res["pixel_auc_pooled"] == 1.0


def test_negative_zero_ties_with_zero():
    mask = np.array([[1.0, 0.0, 0.0, 1.0]])
    pred = torch.tensor([[0.0, -0.0, 0.0, 0.5]])
    ev = E.PixelAUC()
    ev.update(*_one(pred, mask))
    # scores: pos {0, .5}, neg {-0, 0}: pairs (.5 > both) = 2, (0 vs -0, 0 vs 0) ties = 2 × 0.5
    assert ev.compute()["pixel_auc"] == 0.75


def test_compute_is_repeatable_and_reset_forgets():
    data = random_set(n=5)
    evs = all_evaluators()
    first = run_evaluators(evs, *data, batch_size=2)
    again = {}
    for ev in evs:
        again.update(ev.compute())
    assert first.keys() == again.keys()
    assert all(first[k] == again[k] or math.isnan(first[k]) for k in first)
    for ev in evs:
        ev.reset()
    assert run_evaluators(evs, *data, batch_size=5) == pytest.approx(first, nan_ok=True)


def test_inplace_change_of_the_prediction_is_seen():
    # The evaluators share per-batch work keyed on the tensors; an in-place edit must invalidate it.
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    pred = mask.clone() * 0.9
    batch = {"mask": mask, "label": torch.tensor([1])}
    a, b = E.PixelF1(), E.PixelF1()
    a.update({"pred_mask": pred}, batch)
    pred.fill_(0.0)
    b.update({"pred_mask": pred}, batch)
    assert a.compute()["pixel_f1"] == 1.0 and b.compute()["pixel_f1"] == 0.0


def test_keys_definitions_and_names():
    for ev in all_evaluators() + [E.PixelF1(threshold=0.3), E.ImageF1(threshold=0.7)]:
        data = random_set(n=3, size=8)
        res = run_evaluators([ev], *data, batch_size=3)
        defs = ev.definitions()
        assert set(res) == set(defs), ev
        assert all(k.startswith(ev.name) for k in res), ev
        assert all(isinstance(v, float) for v in res.values())
        assert all(len(d) > 20 for d in defs.values())
    assert E.PixelF1(threshold=0.3).name == "pixel_f1_t0.3"
    assert E.PixelIOU(mode="double").name == "pixel_iou_double"
    assert "mean over manipulated images" in E.PixelF1().definitions()["pixel_f1"]
    assert "all images" in E.PixelF1().definitions()["pixel_f1_pooled"]
    with pytest.raises(ValueError, match="mode"):
        E.PixelF1(mode="inverse")


# ------------------------------------------------------------------ input checks
def _batch(b=2, s=8):
    return {"mask": torch.zeros(b, 1, s, s), "label": torch.zeros(b, dtype=torch.int64)}


@pytest.mark.parametrize("cls", [E.PixelF1, E.PixelAUC, E.PixelIOU, E.PixelAccuracy, E.PixelF1Best, E.PixelFPR])
def test_pixel_input_checks(cls):
    ev = cls()
    name = cls.__name__
    with pytest.raises(InputError, match=f"{name}.*pred_mask.*missing or None"):
        ev.update({"pred_mask": None}, _batch())
    with pytest.raises(InputError, match=f"{name}.*shape \\(B,1,H,W\\)"):
        ev.update({"pred_mask": torch.rand(2, 8, 8)}, _batch())
    with pytest.raises(InputError, match=f"{name}.*batch\\['mask'\\] has"):
        ev.update({"pred_mask": torch.rand(2, 1, 8, 9)}, _batch())
    with pytest.raises(InputError, match=f"{name}.*outside \\[0, 1\\].*sigmoid"):
        ev.update({"pred_mask": torch.randn(2, 1, 8, 8) * 3}, _batch())
    nan = torch.rand(2, 1, 8, 8)
    nan[1, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match=f"{name}.*NaN"):
        ev.update({"pred_mask": nan}, _batch())
    with pytest.raises(InputError, match=f"{name}.*shape_mask"):
        ev.update({"pred_mask": torch.rand(2, 1, 8, 8)}, {**_batch(), "shape_mask": torch.ones(2, 1, 4, 4)})
    with pytest.raises(InputError, match=f"{name}.*floating-point"):
        ev.update({"pred_mask": torch.ones(2, 1, 8, 8, dtype=torch.int64)}, _batch())


@pytest.mark.parametrize("cls", [E.ImageF1, E.ImageAUC, E.ImageAccuracy, E.ImageAP, E.ImageBalancedAccuracy])
def test_image_input_checks(cls):
    ev = cls()
    name = cls.__name__
    with pytest.raises(InputError, match=f"{name}.*pred_label.*missing or None.*classification head"):
        ev.update({"pred_mask": torch.rand(2, 1, 8, 8), "pred_label": None}, _batch())
    with pytest.raises(InputError, match=f"{name}.*pred_label.*missing"):
        ev.update({"pred_mask": torch.rand(2, 1, 8, 8)}, _batch())
    with pytest.raises(InputError, match=f"{name}.*3 scores.*2 labels"):
        ev.update({"pred_label": torch.rand(3)}, _batch())
    with pytest.raises(InputError, match=f"{name}.*outside \\[0, 1\\]"):
        ev.update({"pred_label": torch.tensor([-1.5, 2.0])}, _batch())
    with pytest.raises(InputError, match=f"{name}.*NaN"):
        ev.update({"pred_label": torch.tensor([float("nan"), 0.2])}, _batch())
    # (B,1) is refused with the hint, as the engine's output check does (one contract)
    with pytest.raises(InputError, match=f"{name}.*\\(2, 1\\); expected \\(B,\\): use pred_label.squeeze\\(1\\)"):
        ev.update({"pred_label": torch.tensor([[0.2], [0.9]])}, _batch())


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


# ------------------------------------------------------------------ sampler
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 7, 10, 101])
def test_eval_sampler_covers_every_index_once(world, length):
    shards = [list(EvalSampler(range(length), num_replicas=world, rank=r)) for r in range(world)]
    assert sum(shards, []) == list(range(length))  # contiguous, in rank order, nothing repeated
    assert [len(EvalSampler(range(length), num_replicas=world, rank=r)) for r in range(world)] == \
        [len(s) for s in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_eval_sampler_defaults_and_errors():
    s = EvalSampler(range(5))
    assert (s.num_replicas, s.rank, list(s)) == (1, 0, [0, 1, 2, 3, 4])
    s.set_epoch(3)
    with pytest.raises(ValueError, match="rank"):
        EvalSampler(range(5), num_replicas=2, rank=2)


def test_torch_code_path_matches_sklearn(monkeypatch):
    # GPUs use the torch kernels (torch.sort, torch.bincount); run them on CPU here.
    from IMDLBenCo.evaluation import _prepare

    monkeypatch.setattr(_prepare, "USE_NUMPY_ON_CPU", False)
    for quantise in (None, 10):
        data = random_set(n=7, quantise=quantise, seed=11)
        torch_path = run_evaluators(all_evaluators(), *data, batch_size=3)
        assert_matches(torch_path, reference(*data))
        monkeypatch.setattr(_prepare, "USE_NUMPY_ON_CPU", True)
        numpy_path = run_evaluators(all_evaluators(), *data, batch_size=3)
        monkeypatch.setattr(_prepare, "USE_NUMPY_ON_CPU", False)
        assert all(torch_path[k] == numpy_path[k] or math.isnan(numpy_path[k]) for k in numpy_path)


def test_shared_batch_work_is_released_after_compute():
    """Evaluators that share a cache prepare a batch once; the cache belongs to them (no module
    state: evaluators that do not share it never see each other's batches)."""
    from IMDLBenCo.evaluation import _prepare, share_batch_cache

    f1, auc = E.PixelF1(), E.PixelAUC()
    cache = share_batch_cache([f1, auc])
    out, batch = _one(np.full((4, 4), 0.7), np.eye(4))
    f1.update(out, batch)
    first = cache.batch
    assert first is not None
    auc.update(out, batch)
    assert cache.batch is first  # prepared once, used by both
    f1.compute()
    assert cache.batch is None
    alone = E.PixelIOU()
    alone.update(out, batch)
    assert alone._batch_cache is not cache and cache.batch is None
    assert not any(isinstance(v, dict) and "batch" in v for v in vars(_prepare).values())


def test_inference_mode_tensors_are_accepted():
    with torch.inference_mode():
        pred = torch.rand(2, 1, 8, 8)
        mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    f1, auc = E.PixelF1(), E.PixelAUC()
    for ev in (f1, auc):
        ev.update({"pred_mask": pred}, {"mask": mask, "label": torch.ones(2)})
    ref = pixel_reference(pred[:, 0].numpy(), mask[:, 0].numpy())
    assert abs(f1.compute()["pixel_f1"] - ref["pixel_f1"]) < 1e-12
    assert abs(auc.compute()["pixel_auc"] - ref["pixel_auc"]) < 1e-12


def test_non_tensor_prediction_is_rejected_with_the_metric_name():
    with pytest.raises(InputError, match="PixelAUC.*torch.Tensor"):
        E.PixelAUC().update({"pred_mask": np.zeros((1, 1, 4, 4))}, _batch(1, 4))
