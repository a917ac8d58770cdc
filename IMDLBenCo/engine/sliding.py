"""Sliding-window inference: a model built for S×S inputs predicts on an image of any size.

``--sliding_window`` (test.py, test_save_images.py, ``benco predict``) keeps every image at its
own size. The image is covered by S×S tiles whose starts are multiples of a stride
``S × (1 - overlap)`` (rounded down to a multiple of 8, so a JPEG's 8×8 grid stays aligned in every
tile, which CAT-Net's DCT stream needs); the last tile of a row or column extends past the image
and is zero-padded exactly as ``--if_padding`` pads (black pixels, ``shape_mask`` marking the
content). An image no larger than S is one padded tile, i.e. the same as ``--if_padding``.

Blending: each tile's ``pred_mask`` is weighted by a separable ramp that rises over the overlap
width from its edges, so two neighbouring tiles cross-fade linearly and no seam is left; the
weighted sum is divided by the summed weights (every pixel is covered, weights are > 0).
``pred_label`` is the maximum over the tiles (an image is as manipulated as its most manipulated
part); ``backward_loss`` is the tiles' mean. Every tensor of the batch laid out like the image
(``mask``, ``edge_mask``, a post-function's ``DCT_coef``) is cut into the same tiles.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

#: tile starts are multiples of this (the JPEG block size)
GRID = 8


def tile_starts(length: int, window: int, overlap: float) -> List[int]:
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


def _ramp(size: int, ramp: int, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    if ramp <= 0:
        return torch.ones(size, device=device)
    return torch.minimum(torch.ones(size, device=device), torch.minimum(x, size - x) / ramp)


def _cut(value: torch.Tensor, y: int, x: int, window: int, fill: Optional[torch.Tensor]) -> torch.Tensor:
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


def sliding_window_forward(call: Callable[[Dict[str, Any]], Dict[str, Any]], batch: Dict[str, Any], window: int,
                           overlap: float = 0.25, image_fill: Optional[torch.Tensor] = None) -> Dict[str, Any]:
    """Run ``call(tile_batch) -> output dict`` on the tiles of ``batch`` and blend.

    Args:
        call: the model call on one batch of tiles (e.g. ``lambda b: forward(model, b, flag)``).
        batch: images (B,3,H,W) of one size, already on the device and normalised.
        window: tile side S (the model's ``--image_size``).
        overlap: fraction of S shared by neighbouring tiles, in [0, 1).
        image_fill: per-channel value of a black pixel after normalisation (padding of the image).
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--window_overlap {overlap}: must be at least 0 and below 1")
    image = batch["image"]
    b, _, h, w = image.shape
    ys, xs = tile_starts(h, window, overlap), tile_starts(w, window, overlap)
    if len(ys) == 1 and len(xs) == 1 and (h, w) == (window, window):
        return call(batch)
    stride_y = ys[1] - ys[0] if len(ys) > 1 else window
    stride_x = xs[1] - xs[0] if len(xs) > 1 else window
    wy = _ramp(window, window - stride_y, image.device)
    wx = _ramp(window, window - stride_x, image.device)
    weight_tile = wy[:, None] * wx[None, :]
    acc: Optional[torch.Tensor] = None
    weights = torch.zeros(h, w, device=image.device)
    labels: List[torch.Tensor] = []
    losses: List[torch.Tensor] = []
    has_mask = False
    for y in ys:
        for x in xs:
            th, tw = min(window, h - y), min(window, w - x)
            tile = _tile_batch(batch, y, x, window, h, w, th, tw, image_fill)
            out = call(tile)
            pred = out.get("pred_mask")
            if pred is not None:
                has_mask = True
                pred = pred.float()
                if pred.shape[-2:] != (window, window):
                    raise ValueError(f"sliding window: the model returned pred_mask {tuple(pred.shape)} for a "
                                     f"{window}x{window} tile; it must predict at its input size")
                if acc is None:
                    acc = torch.zeros(b, 1, h, w, device=image.device)
                wt = weight_tile[:th, :tw]
                acc[:, :, y:y + th, x:x + tw] += pred[..., :th, :tw].reshape(b, 1, th, tw) * wt
                weights[y:y + th, x:x + tw] += wt
            if out.get("pred_label") is not None:
                labels.append(out["pred_label"].float())
            loss = out.get("backward_loss")
            if isinstance(loss, torch.Tensor):
                losses.append(loss.detach().float())
    result: Dict[str, Any] = {}
    if has_mask:
        result["pred_mask"] = acc / weights
    result["pred_label"] = torch.stack(labels).max(dim=0).values if labels else None
    if losses:
        result["backward_loss"] = torch.stack(losses).mean()
    return result


def _tile_batch(batch: Dict[str, Any], y: int, x: int, window: int, h: int, w: int, th: int, tw: int,
                image_fill: Optional[torch.Tensor]) -> Dict[str, Any]:
    tile: Dict[str, Any] = {}
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


def black_pixel(device: torch.device) -> torch.Tensor:
    """Per-channel value of a black (0) pixel after the pipeline's normalisation: what padding holds."""
    from ..datasets import normalize_batch

    return normalize_batch({"image": torch.zeros(1, 3, 1, 1, dtype=torch.uint8)})["image"].reshape(3).to(device)


def sliding_shape(h: int, w: int, window: int, overlap: float) -> Tuple[int, int]:
    """Number of tiles (rows, columns) for an H×W image."""
    return len(tile_starts(h, window, overlap)), len(tile_starts(w, window, overlap))
