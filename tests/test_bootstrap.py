"""Bootstrap intervals equal a plain numpy bootstrap with the same resampling indices (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from IMDLBenCo.evaluation import (
    ImageAccuracy,
    ImageAP,
    ImageAUC,
    ImageBalancedAccuracy,
    ImageF1,
    ImageMCC,
    ImageTNR,
    ImageTPR,
    PixelAccuracy,
    PixelAUC,
    PixelAUPRC,
    PixelF1,
    PixelF1Best,
    PixelFPR,
    PixelIOU,
)
from IMDLBenCo.evaluation.bootstrap import (
    bootstrap_intervals,
    percentile_interval,
    resample_indices,
    resample_weights,
    weight_chunks,
)


def _factories():
    return [lambda: PixelF1(), lambda: PixelF1(threshold=0.3, mode="reverse"), lambda: PixelIOU(mode="double"),
            lambda: PixelAccuracy(), lambda: PixelAUC(), lambda: PixelAUC(mode="double"), lambda: PixelAUPRC(),
            lambda: PixelF1Best(), lambda: PixelFPR(), lambda: PixelFPR(mode="double"), lambda: ImageAUC(),
            lambda: ImageF1(), lambda: ImageAP(), lambda: ImageMCC(), lambda: ImageAccuracy(),
            lambda: ImageBalancedAccuracy(), lambda: ImageTPR(), lambda: ImageTNR()]


def _data(n=21, seed=0, size=12):
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(n, 1, size, size, generator=g) > 0.7).float()
    masks[: n // 4] = 0  # authentic images
    preds = torch.rand(n, 1, size, size, generator=g)
    preds[1] = 0.5  # ties everywhere
    labels = (masks.flatten(1).sum(1) > 0).long()
    scores = torch.rand(n, generator=g).double()
    scores[3] = scores[4]  # a tie of image scores
    shape_mask = torch.ones_like(masks)
    shape_mask[:, :, size - 3:, :] = 0  # padding
    return masks, preds, labels, scores, shape_mask


def _feed(ev, masks, preds, labels, scores, shape_mask, idx=None, batch=4):
    idx = torch.arange(len(labels)) if idx is None else torch.as_tensor(idx)
    for i in range(0, len(idx), batch):
        sel = idx[i:i + batch]
        ev.update({"pred_mask": preds[sel], "pred_label": scores[sel]},
                  {"mask": masks[sel], "label": labels[sel], "shape_mask": shape_mask[sel]})


@pytest.mark.parametrize("make", _factories())
def test_intervals_equal_a_plain_bootstrap_on_the_same_indices(make):
    data = _data()
    n, resamples, seed = len(data[2]), 60, 11
    ev = make()
    _feed(ev, *data)
    values, states = ev.compute_with_states()
    ours = bootstrap_intervals([(ev, states)], n, resamples, seed)
    plain = {k: [] for k in values}
    for row in resample_indices(n, resamples, seed):
        again = make()
        _feed(again, *data, idx=row)
        for key, value in again.compute().items():
            plain[key].append(value)
    for key in values:
        if key.endswith("error_bound"):
            assert key not in ours
            continue
        expected = percentile_interval(np.array(plain[key]))
        assert ours[key] == pytest.approx(expected, abs=1e-12), key


def test_weights_count_the_draws_and_chunks_match_the_indices():
    idx = resample_indices(7, 250, 3)
    w = np.concatenate(list(weight_chunks(7, 250, 3)))
    assert idx.shape == (250, 7) and (w.sum(axis=1) == 7).all()
    assert (w == resample_weights(idx, 7)).all()
    assert (np.bincount(idx[5], minlength=7) == w[5]).all()


def test_percentile_interval_leaves_out_nan_and_handles_empty():
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0])) == pytest.approx((1.05, 2.95))
    assert percentile_interval(np.array([np.nan])) == (None, None)


def test_an_evaluator_without_resample_gets_no_interval():
    from IMDLBenCo.evaluation import Evaluator

    class Sub(Evaluator):
        """A user's evaluator without definitions()."""

        name = "sub"

        def update(self, outputs, batch):
            pass

        def _compute(self, states):
            return {"sub": 0.0}

    sub = Sub()
    assert sub.definitions() == {"sub": "Sub: A user's evaluator without definitions()."}
    assert bootstrap_intervals([(sub, sub.compute_with_states()[1])], 5, 20, 0) == {}
