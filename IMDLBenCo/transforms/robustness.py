"""Robustness attacks for ``test_robust.py``: wrappers that yield ``(param, transform)`` pairs.

A wrapper holds a list of strengths; iterating it gives, per strength, a transform to pass to the
dataset as ``common_transforms`` (applied before pad/resize and normalisation). Strength 0 gives
``None``: the unperturbed baseline. Subclass :class:`AbstractTransformWrapper` and implement
``build(param)`` for an attack of your own::

    class DownUpWrapper(AbstractTransformWrapper):
        def build(self, factor):
            def t(image, mask):
                ...
                return {"image": image, "mask": mask}
            return t

The three built-in attacks compute what IMDL-BenCo 0.1.45's do (parity fixtures
``data/robust__*.npz``): OpenCV's Gaussian blur (its fixed small kernels for sizes 3 and 7), the
JPEG attack with its quality drawn from ``{q-1, q}`` and the RGB array encoded as if it were BGR,
and Gaussian noise truncated to uint8. The JPEG wrapper's ``exact_quality`` and ``correct_colors``
switch to an exact-quality, colour-correct round trip (other numbers than published tables).
Noise and the JPEG quality draw use numpy's global RNG, which ``--seed`` seeds, so results reproduce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .functional import gaussian_blur, gaussian_noise, jpeg_roundtrip, jpeg_roundtrip_as_bgr

__all__ = [
    "AbstractTransformWrapper",
    "GaussianBlurWrapper",
    "GaussianNoiseWrapper",
    "JpegCompressionWrapper",
    "GaussianBlurAttack",
    "GaussianNoiseAttack",
    "JpegCompressionAttack",
]


class _ImageOnly:
    """A transform that changes the image and leaves the mask alone; ``repr`` names it."""

    def __init__(self, param) -> None:
        self.param = param

    def apply(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, mask: np.ndarray, **extra: Any) -> dict[str, Any]:
        return {"image": self.apply(np.ascontiguousarray(image)), "mask": mask, **extra}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.param!r})"


class GaussianBlurAttack(_ImageOnly):
    """OpenCV Gaussian blur with a ``param``×``param`` kernel (odd), σ derived by OpenCV."""

    def apply(self, image):
        return gaussian_blur(image, int(self.param))


class GaussianNoiseAttack(_ImageOnly):
    """Additive Gaussian noise of variance ``param`` in 0–255 units (std = sqrt(param)), truncated
    to uint8 as IMDL-BenCo does."""

    def apply(self, image):
        return gaussian_noise(image, float(self.param))


class JpegCompressionAttack(_ImageOnly):
    """JPEG round trip at quality ``param``.

    Default (IMDL-BenCo 0.1.45): the quality is drawn from ``{param - 1, param}`` at every call
    and OpenCV encodes the RGB array as if it were BGR. ``exact_quality``: always ``param``;
    ``correct_colors``: a colour-correct RGB round trip (Pillow).
    """

    def __init__(self, param, exact_quality: bool = False, correct_colors: bool = False) -> None:
        super().__init__(param)
        self.exact_quality = bool(exact_quality)
        self.correct_colors = bool(correct_colors)

    def quality(self) -> int:
        q = int(self.param)
        return q if self.exact_quality or q <= 1 else int(np.random.randint(q - 1, q + 1))

    def apply(self, image):
        q = self.quality()
        return jpeg_roundtrip(image, q) if self.correct_colors else jpeg_roundtrip_as_bgr(image, q)

    def __repr__(self) -> str:
        extra = "".join(f", {k}=True" for k in ("exact_quality", "correct_colors") if getattr(self, k))
        return f"{type(self).__name__}({self.param!r}{extra})"


class AbstractTransformWrapper:
    """Base class of robustness wrappers: ``for param, transform in wrapper`` (param 0 → None).

    ``name`` (and ``str(wrapper)``) is the class name without the trailing ``Wrapper``.
    Iterating twice gives the same sequence again.
    """

    def __init__(self, param_list: Iterable[Any]) -> None:
        self.param_list: list[Any] = list(param_list)
        if not self.param_list:
            raise ValueError(f"{type(self).__name__}: the list of strengths is empty")

    def build(self, param: Any) -> Callable:
        """The transform ``t(image=, mask=) -> dict`` for one non-zero strength."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(param)")

    @property
    def name(self) -> str:
        cls = type(self).__name__
        return cls[: -len("Wrapper")] if cls.endswith("Wrapper") and len(cls) > len("Wrapper") else cls

    def __iter__(self) -> Iterator[tuple[Any, Callable | None]]:
        for param in self.param_list:
            yield param, (None if param == 0 else self.build(param))

    def __len__(self) -> int:
        return len(self.param_list)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.param_list!r})"


class GaussianBlurWrapper(AbstractTransformWrapper):
    """Gaussian blur; each strength is the (odd) kernel size, e.g. ``[0, 3, 7, 11, 15, 19, 23]``."""

    def __init__(self, param_list: Iterable[int] = (0, 3, 7, 11, 15, 19, 23)) -> None:
        super().__init__(param_list)
        bad = [p for p in self.param_list if p != 0 and (int(p) != p or int(p) % 2 == 0 or p < 0)]
        if bad:
            raise ValueError(f"GaussianBlurWrapper: kernel sizes must be 0 or positive odd ints, got {bad}")

    def build(self, param):
        return GaussianBlurAttack(int(param))


class GaussianNoiseWrapper(AbstractTransformWrapper):
    """Gaussian noise; each strength is the variance in 0–255 units, e.g. ``[3, 7, 11, 15, 19, 23]``."""

    def __init__(self, param_list: Iterable[float] = (3, 7, 11, 15, 19, 23)) -> None:
        super().__init__(param_list)

    def build(self, param):
        return GaussianNoiseAttack(float(param))


class JpegCompressionWrapper(AbstractTransformWrapper):
    """JPEG compression; each strength is a quality, e.g. ``[50, 60, 70, 80, 90, 100]``.

    As in IMDL-BenCo, quality ``q`` means a quality drawn from ``{q-1, q}`` per image and the RGB
    array is encoded as if it were BGR (so published robustness tables reproduce).
    ``exact_quality=True`` uses exactly ``q``; ``correct_colors=True`` does a colour-correct round trip.
    """

    def __init__(self, param_list: Iterable[int] = (50, 60, 70, 80, 90, 100), exact_quality: bool = False,
                 correct_colors: bool = False) -> None:
        super().__init__(param_list)
        bad = [p for p in self.param_list if p != 0 and not 1 <= p <= 100]
        if bad:
            raise ValueError(f"JpegCompressionWrapper: qualities must be in 1..100 (0 = none), got {bad}")
        self.exact_quality = bool(exact_quality)
        self.correct_colors = bool(correct_colors)

    def build(self, param):
        return JpegCompressionAttack(int(param), self.exact_quality, self.correct_colors)
