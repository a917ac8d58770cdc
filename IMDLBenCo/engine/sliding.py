"""Sliding-window inference: a model built for S×S inputs predicts on an image of any size.

``--sliding_window`` (test.py, test_save_images.py, ``benco predict``) keeps every image at its
own size. The image is covered by S×S tiles whose starts are multiples of a stride
``S × (1 - overlap)`` (rounded down to a multiple of 8, so a JPEG's 8×8 grid stays aligned in every
tile, which CAT-Net's DCT stream needs); the last tile of a row or column extends past the image
and is zero-padded exactly as ``--if_padding`` pads (black pixels, ``shape_mask`` marking the
content). An image no larger than S is one padded tile, i.e. the same as ``--if_padding``.

Tiles go through the model several at a time (``tiles_per_call``; by default as many as fill
:data:`PIXELS_PER_CALL`): one call per 64-px tile spent most of its time in per-call overhead
and in OpenMP's thread synchronisation, which on a CPU shared with other processes (another
job, the data loader's worker decoding the next large image) stalled each of the thousands of
tiny parallel regions — the same image took 0.9 s or 33 s depending on the machine's load
(``benchmarks/bench_predict.py``). In evaluation mode a tile's prediction does not depend on the
other tiles of its call.

Blending: each tile's ``pred_mask`` is weighted by a separable ramp that rises over the overlap
width from its edges, so two neighbouring tiles cross-fade linearly and no seam is left; the
weighted sum is divided by the summed weights (every pixel is covered, weights are > 0).
``pred_label`` is the maximum over the tiles (an image is as manipulated as its most manipulated
part); ``backward_loss`` is the tiles' mean. Every tensor of the batch laid out like the image
(``mask``, ``edge_mask``, a post-function's ``DCT_coef``) is cut into the same tiles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

#: tile starts are multiples of this (the JPEG block size)
GRID = 8

#: input pixels per model call when ``tiles_per_call`` is not given: 64 tiles of 64 px, 4 of
#: 256 px, one of 512 px or more (what one image of a usual test batch holds)
PIXELS_PER_CALL = 64 * 64 * 64


def tile_starts(length: int, window: int, overlap: float) -> list[int]:
    """Starts of the tiles covering ``length`` pixels with tiles of ``window`` (the last may
    extend past the end; it is padded)."""
    if length <= window:
        return [0]
    stride = max(GRID, int(window * (1.0 - overlap)) // GRID * GRID)
    stride = min(stride, window)  # tiles must overlap or touch
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(starts[-1] + stride)
    return starts


def default_tiles_per_call(window: int, images: int = 1) -> int:
    """Tiles per model call for ``images`` images of a batch: :data:`PIXELS_PER_CALL` input
    pixels, at least one tile."""
    return max(1, PIXELS_PER_CALL // (max(1, images) * window * window))


def _ramp(size: int, ramp: int, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    if ramp <= 0:
        return torch.ones(size, device=device)
    return torch.minimum(torch.ones(size, device=device), torch.minimum(x, size - x) / ramp)


def _cut(value: torch.Tensor, y: int, x: int, window: int, fill: torch.Tensor | None) -> torch.Tensor:
    """The window×window tile at (y, x) of the last two dims of ``value``, padded with ``fill``
    (per channel, for the image) or zeros."""
    part = value[..., y:y + window, x:x + window]
    ph, pw = part.shape[-2], part.shape[-1]
    if (ph, pw) == (window, window):
        return part
    shape = value.shape[:-2] + (window, window)
    if fill is None:
        out = value.new_zeros(shape)
    else:
        out = fill.to(value.dtype).view(1, -1, 1, 1).expand(shape).clone()
    out[..., :ph, :pw] = part
    return out


def sliding_window_forward(call: Callable[[dict[str, Any]], dict[str, Any]], batch: dict[str, Any], window: int,
                           overlap: float = 0.25, image_fill: torch.Tensor | None = None,
                           tiles_per_call: int | None = None) -> dict[str, Any]:
    """Run ``call(tile_batch) -> output dict`` on the tiles of ``batch`` and blend.

    Args:
        call: the model call on one batch of tiles (e.g. ``lambda b: forward(model, b, flag)``).
        batch: images (B,3,H,W) of one size, already on the device and normalised.
        window: tile side S (the model's ``--image_size``).
        overlap: fraction of S shared by neighbouring tiles, in [0, 1).
        image_fill: per-channel value of a black pixel after normalisation (padding of the image).
        tiles_per_call: tile positions per model call (each holding the B images' tiles, tile-major:
            row ``t × B + i`` is image i's tile t); default :func:`default_tiles_per_call`.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--window_overlap {overlap}: must be at least 0 and below 1")
    image = batch["image"]
    b, _, h, w = image.shape
    ys, xs = tile_starts(h, window, overlap), tile_starts(w, window, overlap)
    if len(ys) == 1 and len(xs) == 1 and (h, w) == (window, window):
        return call(batch)
    per_call = default_tiles_per_call(window, b) if tiles_per_call is None else int(tiles_per_call)
    if per_call < 1:
        raise ValueError(f"tiles_per_call {tiles_per_call}: must be at least 1")
    stride_y = ys[1] - ys[0] if len(ys) > 1 else window
    stride_x = xs[1] - xs[0] if len(xs) > 1 else window
    wy = _ramp(window, window - stride_y, image.device)
    wx = _ramp(window, window - stride_x, image.device)
    weight_tile = wy[:, None] * wx[None, :]
    acc: torch.Tensor | None = None
    weights = torch.zeros(h, w, device=image.device)
    labels: list[torch.Tensor] = []
    loss_sum: torch.Tensor | None = None
    loss_tiles = 0
    has_mask = False
    positions = [(y, x) for y in ys for x in xs]
    for first in range(0, len(positions), per_call):
        chunk = positions[first:first + per_call]
        k = len(chunk)
        tiles = [_tile_batch(batch, y, x, window, h, w, min(window, h - y), min(window, w - x), image_fill)
                 for y, x in chunk]
        out = call(tiles[0] if k == 1 else _stack_tiles(tiles, b))
        pred = out.get("pred_mask")
        if pred is not None:
            has_mask = True
            pred = pred.float()
            if tuple(pred.shape[-2:]) != (window, window) or pred.numel() != k * b * window * window:
                raise ValueError(f"sliding window: the model returned pred_mask {tuple(pred.shape)} for "
                                 f"{k * b} tile(s) of {window}x{window}; it must predict (N,1,S,S) at its input size")
            pred = pred.reshape(k, b, 1, window, window)
            if acc is None:
                acc = torch.zeros(b, 1, h, w, device=image.device)
            for t, (y, x) in enumerate(chunk):
                th, tw = min(window, h - y), min(window, w - x)
                wt = weight_tile[:th, :tw]
                acc[:, :, y:y + th, x:x + tw] += pred[t, :, :, :th, :tw] * wt
                weights[y:y + th, x:x + tw] += wt
        label = out.get("pred_label")
        if label is not None:
            labels.append(label.float().reshape(k, b))
        loss = out.get("backward_loss")
        if isinstance(loss, torch.Tensor):
            # a call's loss is its tiles' mean: weighted by the tiles it covers
            part = loss.detach().float() * k
            loss_sum = part if loss_sum is None else loss_sum + part
            loss_tiles += k
    result: dict[str, Any] = {}
    if has_mask:
        result["pred_mask"] = acc / weights
    result["pred_label"] = torch.cat(labels).max(dim=0).values if labels else None
    if loss_sum is not None:
        result["backward_loss"] = loss_sum / loss_tiles
    return result


def _tile_batch(batch: dict[str, Any], y: int, x: int, window: int, h: int, w: int, th: int, tw: int,
                image_fill: torch.Tensor | None) -> dict[str, Any]:
    tile: dict[str, Any] = {}
    image = batch["image"]
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 3 and tuple(value.shape[-2:]) == (h, w):
            tile[key] = _cut(value, y, x, window, image_fill if key == "image" else None)
        else:
            tile[key] = value
    b = image.shape[0]
    tile["shape"] = torch.tensor([[th, tw]] * b, device=image.device)
    shape_mask = torch.zeros(b, 1, window, window, device=image.device)
    shape_mask[..., :th, :tw] = 1
    tile["shape_mask"] = shape_mask
    return tile


def _stack_tiles(tiles: Sequence[dict[str, Any]], b: int) -> dict[str, Any]:
    """One batch of k tile batches of B images each, tile-major: per-image tensors (first
    dimension B) and per-image string lists (``name``, ``image_path``) are concatenated; anything
    else (a shared object the caller passed) is passed as it is."""
    out: dict[str, Any] = {}
    for key, value in tiles[0].items():
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == b:
            out[key] = torch.cat([t[key] for t in tiles], dim=0)
        elif isinstance(value, (list, tuple)) and len(value) == b and all(isinstance(v, str) for v in value):
            out[key] = type(value)(item for t in tiles for item in t[key])
        else:
            out[key] = value
    return out


def black_pixel(device: torch.device) -> torch.Tensor:
    """Per-channel value of a black (0) pixel after the pipeline's normalisation: what padding holds."""
    from ..datasets import normalize_batch

    return normalize_batch({"image": torch.zeros(1, 3, 1, 1, dtype=torch.uint8)})["image"].reshape(3).to(device)


def sliding_shape(h: int, w: int, window: int, overlap: float) -> tuple[int, int]:
    """Number of tiles (rows, columns) for an H×W image."""
    return len(tile_starts(h, window, overlap)), len(tile_starts(w, window, overlap))


def count_tiles(sizes: Iterable[tuple[int, int]], window: int, overlap: float = 0.25) -> int:
    """Model inputs a sliding-window run makes for images of ``sizes`` ((H, W) pairs): the sum of
    each image's rows × columns of tiles (an image no larger than S is one tile)."""
    total = 0
    for h, w in sizes:
        rows, cols = sliding_shape(int(h), int(w), window, overlap)
        total += rows * cols
    return total


def tile_plan(sizes: Sequence[tuple[int, int]], window: int, overlap: float = 0.25,
              seconds_per_tile: float | None = None) -> str:
    """One line for the log before a sliding-window run: how many tiles, how many per image at
    most, and (given ``seconds_per_tile``) roughly how long. Also says when a window far smaller
    than the images makes the run long (hundreds of tiles per image)."""
    counts = [count_tiles([s], window, overlap) for s in sizes]
    total = sum(counts)
    if not counts:
        return f"sliding window {window}x{window}: no images"
    largest = max(range(len(counts)), key=counts.__getitem__)
    h, w = sizes[largest]
    line = (f"sliding window {window}x{window} (overlap {overlap:g}): {total} tiles for {len(counts)} image(s), "
            f"up to {counts[largest]} for one ({h}x{w})")
    if seconds_per_tile is not None and seconds_per_tile > 0:
        line += f", about {_duration(total * seconds_per_tile)}"
    if counts[largest] >= 100:
        line += (f"; the model sees {window}-pixel windows, so a large photo takes many of them "
                 f"(--if_resizing predicts each image in one {window}x{window} pass, at lower resolution)")
    return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
