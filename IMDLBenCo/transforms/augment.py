"""Training augmentation: IMDL-BenCo 0.1.45's list (its train.py) as small numpy/Pillow transforms.

Every transform is an albumentations-style callable ``t(image=HxWx3 uint8, mask=HxW uint8) ->
{"image", "mask"}``; geometric ones move the mask with the image. Randomness comes from numpy's
global RNG, which ``--seed`` seeds and which PyTorch re-seeds in each DataLoader worker, so a
run reproduces. An albumentations ``Compose`` (or any callable of that shape) can be used instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .functional import gaussian_blur, inpaint_box, jpeg_roundtrip
from .geometry import resize_pair

__all__ = [
    "DualTransform",
    "Compose",
    "RandomScale",
    "RandomCopyMove",
    "RandomInpainting",
    "HorizontalFlip",
    "VerticalFlip",
    "RandomBrightnessContrast",
    "ImageCompression",
    "RandomRotate90",
    "GaussianBlur",
    "default_train_transform",
]

rng = np.random  # the global, seedable RNG (see the module docstring)


class DualTransform:
    """Base class: applied with probability ``p``; subclasses implement ``apply(image, mask)``."""

    def __init__(self, p: float = 1.0) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)

    def apply(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, mask: np.ndarray, **extra: Any) -> dict[str, Any]:
        if self.p >= 1.0 or rng.random() < self.p:
            image, mask = self.apply(image, mask)
        return {"image": image, "mask": mask, **extra}

    def _args(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._args().items())})"


class Compose:
    """Apply transforms in order; each is a callable ``t(image=, mask=) -> dict``."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms: list[Callable] = list(transforms)

    def __call__(self, image: np.ndarray, mask: np.ndarray, **extra: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"image": image, "mask": mask, **extra}
        for t in self.transforms:
            data = t(**data)
        return data

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])"


class RandomScale(DualTransform):
    """Scale both sides by one factor drawn from [1 - scale_limit, 1 + scale_limit]."""

    def __init__(self, scale_limit: float = 0.2, p: float = 1.0) -> None:
        super().__init__(p)
        self.scale_limit = float(scale_limit)

    def apply(self, image, mask):
        s = rng.uniform(1 - self.scale_limit, 1 + self.scale_limit)
        h, w = mask.shape[:2]
        return resize_pair(image, mask, (max(1, int(round(h * s))), max(1, int(round(w * s)))))


class _RandomWindow(DualTransform):
    """Shared window sampling of RandomCopyMove / RandomInpainting (sizes as fractions of H, W)."""

    def __init__(self, max_h: float = 0.8, max_w: float = 0.8, min_h: float = 0.05, min_w: float = 0.05,
                 mask_value: int = 255, p: float = 0.5) -> None:
        super().__init__(p)
        for name, v in (("max_h", max_h), ("max_w", max_w), ("min_h", min_h), ("min_w", min_w)):
            if not 0 < v < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be in (0, 1), got {v}")
        self.max_h, self.max_w, self.min_h, self.min_w = max_h, max_w, min_h, min_w
        self.mask_value = int(mask_value)

    def _window(self, h: int, w: int) -> tuple[int, int]:
        lo_h = max(1, int(h * self.min_h))
        lo_w = max(1, int(w * self.min_w))
        wh = min(h, rng.randint(lo_h, max(lo_h + 1, int(h * self.max_h))))
        ww = min(w, rng.randint(lo_w, max(lo_w + 1, int(w * self.max_w))))
        return wh, ww

    @staticmethod
    def _place(h: int, w: int, wh: int, ww: int) -> tuple[int, int]:
        return rng.randint(0, h - wh + 1), rng.randint(0, w - ww + 1)


class RandomCopyMove(_RandomWindow):
    """Copy a random window of the image onto another random place; the mask marks the target."""

    def apply(self, image, mask):
        h, w = mask.shape[:2]
        wh, ww = self._window(h, w)
        sy, sx = self._place(h, w, wh, ww)
        dy, dx = self._place(h, w, wh, ww)
        image = np.array(image)
        mask = np.array(mask)
        image[dy:dy + wh, dx:dx + ww] = image[sy:sy + wh, sx:sx + ww].copy()
        mask[dy:dy + wh, dx:dx + ww] = self.mask_value
        return image, mask


class RandomInpainting(_RandomWindow):
    """Fill a random window from its surroundings with OpenCV's inpainting (radius 3, Telea's or
    the Navier–Stokes method with equal odds, as IMDL-BenCo) and mark it in the mask."""

    def apply(self, image, mask):
        h, w = mask.shape[:2]
        wh, ww = self._window(h, w)
        y, x = self._place(h, w, wh, ww)
        method = "telea" if rng.random_sample() > 0.5 else "ns"
        image = inpaint_box(np.asarray(image), (y, x, y + wh, x + ww), method=method, radius=3)
        mask = np.array(mask)
        mask[y:y + wh, x:x + ww] = self.mask_value
        return image, mask


class HorizontalFlip(DualTransform):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def apply(self, image, mask):
        return np.asarray(image)[:, ::-1], mask[:, ::-1]


class VerticalFlip(DualTransform):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def apply(self, image, mask):
        return np.asarray(image)[::-1], mask[::-1]


class RandomRotate90(DualTransform):
    """Rotate by k·90° with k uniform in {0, 1, 2, 3}."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def apply(self, image, mask):
        k = rng.randint(0, 4)
        return np.rot90(np.asarray(image), k), np.rot90(mask, k)


class RandomBrightnessContrast(DualTransform):
    """``image * alpha + beta * 255`` with alpha in 1 ± contrast_limit, beta in ± brightness_limit."""

    def __init__(self, brightness_limit: float = 0.1, contrast_limit: float = 0.1, p: float = 1.0) -> None:
        super().__init__(p)
        self.brightness_limit = float(brightness_limit)
        self.contrast_limit = float(contrast_limit)

    def apply(self, image, mask):
        alpha = 1.0 + rng.uniform(-self.contrast_limit, self.contrast_limit)
        beta = rng.uniform(-self.brightness_limit, self.brightness_limit) * 255.0
        lut = np.clip(np.arange(256, dtype=np.float32) * alpha + beta + 0.5, 0, 255).astype(np.uint8)
        return lut[np.asarray(image)], mask


class ImageCompression(DualTransform):
    """JPEG round trip at a quality drawn uniformly from [quality_lower, quality_upper]."""

    def __init__(self, quality_lower: int = 70, quality_upper: int = 100, p: float = 0.2) -> None:
        super().__init__(p)
        self.quality_lower, self.quality_upper = int(quality_lower), int(quality_upper)

    def apply(self, image, mask):
        return jpeg_roundtrip(np.ascontiguousarray(image), rng.randint(self.quality_lower, self.quality_upper + 1)), mask


class GaussianBlur(DualTransform):
    """Gaussian blur with an odd kernel size drawn from ``blur_limit`` (σ derived from the size)."""

    def __init__(self, blur_limit: tuple[int, int] = (3, 7), p: float = 0.2) -> None:
        super().__init__(p)
        self.blur_limit = tuple(int(v) for v in blur_limit)

    def apply(self, image, mask):
        sizes = [k for k in range(self.blur_limit[0], self.blur_limit[1] + 1) if k % 2 == 1]
        return gaussian_blur(np.asarray(image), sizes[rng.randint(0, len(sizes))]), mask


def default_train_transform() -> Compose:
    """IMDL-BenCo 0.1.45's training augmentation, in its order and probabilities."""
    return Compose([
        RandomScale(scale_limit=0.2, p=1.0),
        RandomCopyMove(p=0.1),
        RandomInpainting(p=0.1),
        HorizontalFlip(p=0.5),
        VerticalFlip(p=0.5),
        RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=1.0),
        ImageCompression(quality_lower=70, quality_upper=100, p=0.2),
        RandomRotate90(p=0.5),
        GaussianBlur(blur_limit=(3, 7), p=0.2),
    ])
