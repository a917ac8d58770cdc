"""Sliding-window tiles go through the model several at a time; the tile count is known before a run."""

from __future__ import annotations

import math

import pytest
import torch

from IMDLBenCo.engine.sliding import (
    PIXELS_PER_CALL,
    count_tiles,
    default_tiles_per_call,
    sliding_shape,
    sliding_window_forward,
    tile_plan,
    tile_starts,
)


class SmallConvNet(torch.nn.Module):
    """Convolutions with a 5-px receptive field, BatchNorm in eval mode, a label and a loss:
    each tile's output depends on that tile only."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6),
                                        torch.nn.ReLU(), torch.nn.Conv2d(6, 1, 3, padding=1))

    def forward(self, image, mask, label=None, shape_mask=None, name=None, qtables=None, **kwargs):
        assert isinstance(name, list) and len(name) == image.shape[0]  # per-image lists follow the tiles
        assert qtables.shape[0] == image.shape[0]
        logits = self.body(image)
        return {"pred_mask": torch.sigmoid(logits), "pred_label": torch.sigmoid(logits.amax(dim=(1, 2, 3))),
                "backward_loss": torch.nn.functional.binary_cross_entropy_with_logits(logits, mask)}


@pytest.mark.parametrize("h,w", [(150, 203), (64, 64 + 8), (40, 300)])
def test_tiles_in_batches_give_what_one_tile_per_call_gives(h, w):
    torch.manual_seed(0)
    net = SmallConvNet().eval()
    net.body[1].running_mean.uniform_(-0.5, 0.5)
    g = torch.Generator().manual_seed(3)
    batch = {"image": torch.randn(2, 3, h, w, generator=g), "mask": (torch.rand(2, 1, h, w, generator=g) > 0.7).float(),
             "label": torch.tensor([1, 0]), "name": ["a.png", "b.png"], "qtables": torch.ones(2, 1, 8, 8)}
    calls = []

    def call(tile):
        calls.append(tile["image"].shape[0])
        return net(**tile)

    with torch.no_grad():
        one = sliding_window_forward(call, batch, 64, 0.25, torch.zeros(3), tiles_per_call=1)
        n_tiles = len(calls)
        calls.clear()
        many = sliding_window_forward(call, batch, 64, 0.25, torch.zeros(3), tiles_per_call=4)
    assert n_tiles == math.prod(sliding_shape(h, w, 64, 0.25))
    assert calls == [2 * min(4, n_tiles - i) for i in range(0, n_tiles, 4)]
    torch.testing.assert_close(many["pred_mask"], one["pred_mask"], rtol=0, atol=1e-5)
    torch.testing.assert_close(many["pred_label"], one["pred_label"], rtol=0, atol=1e-6)
    torch.testing.assert_close(many["backward_loss"], one["backward_loss"], rtol=1e-5, atol=1e-6)
    # the label is the most manipulated tile's, per image (not mixed across the two images)
    assert not torch.allclose(many["pred_label"][0], many["pred_label"][1])


def test_default_tiles_per_call_fills_a_pixel_budget():
    assert default_tiles_per_call(64) == PIXELS_PER_CALL // (64 * 64)
    assert default_tiles_per_call(64, images=4) == PIXELS_PER_CALL // (4 * 64 * 64)
    assert default_tiles_per_call(1024) == 1  # never fewer than one
    with pytest.raises(ValueError, match="tiles_per_call"):
        sliding_window_forward(lambda b: {}, {"image": torch.zeros(1, 3, 100, 100)}, 64, 0.25, None, tiles_per_call=0)


def _expected_tiles(length: int, window: int, stride: int) -> int:
    return 1 if length <= window else math.ceil((length - window) / stride) + 1


@pytest.mark.parametrize("window,overlap,stride", [(64, 0.25, 48), (512, 0.25, 384), (256, 0.5, 128), (100, 0.0, 96)])
def test_tile_count_of_a_list_of_sizes(window, overlap, stride):
    sizes = [(768, 1024), (2616, 3488), (40, 50), (window, window), (window + 1, 3 * window)]
    want = sum(_expected_tiles(h, window, stride) * _expected_tiles(w, window, stride) for h, w in sizes)
    assert count_tiles(sizes, window, overlap) == want
    for h, w in sizes:  # the same tiles the run cuts
        assert count_tiles([(h, w)], window, overlap) == len(tile_starts(h, window, overlap)) * len(
            tile_starts(w, window, overlap))


def test_tile_plan_line():
    line = tile_plan([(768, 1024), (256, 384)], 64, 0.25, seconds_per_tile=0.01)
    small = _expected_tiles(256, 64, 48) * _expected_tiles(384, 64, 48)
    assert f"{336 + small} tiles for 2 image(s)" in line
    assert "up to 336 for one (768x1024)" in line and f"about {round((336 + small) * 0.01)} s" in line
    assert "--if_resizing" in line  # hundreds of tiles per image: the faster alternative is named
    quiet = tile_plan([(100, 100)], 64, 0.25)
    assert "4 tiles for 1 image(s)" in quiet and "--if_resizing" not in quiet and "about" not in quiet
    assert "no images" in tile_plan([], 64)
