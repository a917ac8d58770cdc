"""``ManiDataset`` and ``JsonDataset``: image/mask pairs → the sample dict of docs/ARCHITECTURE.md.

Per item the CPU work is: decode image and mask (Pillow), an optional user transform, the edge
mask (when asked) at the mask's own resolution, one resize (OpenCV, as IMDL-BenCo) or one top-left
pad, and a uint8 → tensor copy.
With ``defer_normalization=True`` the item stays uint8 and :func:`IMDLBenCo.datasets.normalize_batch`
turns the whole batch into float on the model's device, which is much cheaper than per-sample
float work in the loader workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..registry import DATASETS
from ..transforms.geometry import (
    OVERSIZE_CHOICES,
    check_edge_width,
    edge_mask,
    resize_image,
    resize_mask,
    shrink_to_fit,
)
from .check import json_structure, mani_structure, raise_for_structure
from .io import NEGATIVE, DatasetError, binarize_gray, check_hint, list_images, load_mask, load_rgb, unique_names
from .utils import normalize_batch

logger = logging.getLogger(__name__)

__all__ = ["AbstractDataset", "ManiDataset", "JsonDataset"]

_oversize_logged = False  # "shrink" is said once per process, not once per image


def _pad(a, hw: tuple[int, int]):
    """Zero-pad a H×W(×C) array or tensor at the bottom and right to ``hw``."""
    if isinstance(a, torch.Tensor):
        a = a.numpy()
    out = np.zeros(tuple(hw) + a.shape[2:], a.dtype)  # calloc: the padding costs no writes
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _normalize_post_funcs(post_funcs) -> list[Callable]:
    if post_funcs is None:
        return []
    if callable(post_funcs):
        return [post_funcs]
    if isinstance(post_funcs, (list, tuple)) and all(callable(f) for f in post_funcs):
        return list(post_funcs)
    raise TypeError(f"post_funcs must be None, a callable or a list of callables, got {post_funcs!r}")


def _output_hw(output_size) -> tuple[int, int]:
    if isinstance(output_size, int):
        hw = (output_size, output_size)
    else:
        try:
            hw = tuple(int(v) for v in output_size)
        except TypeError:
            hw = ()
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"output_size must be an int S or a pair (H, W) of positive ints, got {output_size!r}")
    return hw  # type: ignore[return-value]


class AbstractDataset(Dataset):
    """Common loading pipeline; subclasses fill ``image_paths``, ``mask_paths`` and ``names``.

    Args:
        path: the dataset (folder or JSON file).
        is_padding: zero-pad to ``output_size`` at the top-left (adds ``shape_mask``).
        is_resizing: resize to ``output_size`` (image OpenCV bilinear, mask OpenCV nearest, as
            IMDL-BenCo).
        keep_size: neither: every sample keeps its own size (``output_size`` is not used), for
            sliding-window inference (``--sliding_window``); batches then hold one image.
            Exactly one of the three.
        output_size: S or (H, W).
        common_transforms: albumentations-style callable ``t(image=HWC uint8, mask=HW uint8 0/255)
            -> {"image", "mask"}`` applied before pad/resize; the returned mask is binarised again
            (> 127.5), and ``label`` comes from the final mask.
        edge_width: size (odd, >= 3) of the cross kernel of the ``edge_mask`` band, which is
            computed at the mask's resolution before pad/resize (IMDL-BenCo's rule, see
            :func:`IMDLBenCo.transforms.edge_mask`); None for no edge mask.
        post_funcs: callable or list of callables ``f(sample_dict)`` run last, in place.
        defer_normalization: keep ``image``/``mask`` (and ``shape_mask``/``edge_mask``) uint8;
            ``normalize_batch`` makes them float later, on the batch's device.
        oversize: padding only: what to do with an image larger than ``output_size``:
            ``"shrink"`` (scale its long side down to fit, aspect kept; logged once) or
            ``"error"`` (refuse it). Never a silent crop.
    """

    def __init__(
        self,
        path: str,
        is_padding: bool = False,
        is_resizing: bool = False,
        output_size: int | Sequence[int] = (1024, 1024),
        common_transforms: Callable | None = None,
        edge_width: int | None = None,
        post_funcs: None | Callable | Sequence[Callable] = None,
        defer_normalization: bool = False,
        oversize: str = "shrink",
        keep_size: bool = False,
        max_pixels: int | None = None,
    ) -> None:
        super().__init__()
        if bool(is_padding) + bool(is_resizing) + bool(keep_size) != 1:
            raise ValueError(
                f"{type(self).__name__}({path!r}): exactly one of is_padding, is_resizing and keep_size must be "
                f"True (got is_padding={is_padding}, is_resizing={is_resizing}, keep_size={keep_size}); on the "
                f"command line pass one of --if_padding, --if_resizing or --sliding_window"
            )
        if oversize not in OVERSIZE_CHOICES:
            raise ValueError(f"oversize must be one of {OVERSIZE_CHOICES}, got {oversize!r}")
        if edge_width is not None:
            check_edge_width(edge_width)
        if common_transforms is not None and not callable(common_transforms):
            raise TypeError(f"common_transforms must be callable as t(image=..., mask=...), got {common_transforms!r}")
        self.entry_path = str(path)
        self.root = str(path)
        self.is_padding = bool(is_padding)
        self.is_resizing = bool(is_resizing)
        self.keep_size = bool(keep_size)
        self.output_size = _output_hw(output_size)
        self.common_transforms = common_transforms
        self.edge_width = None if edge_width is None else int(edge_width)
        self.post_funcs = _normalize_post_funcs(post_funcs)
        self.defer_normalization = bool(defer_normalization)
        self.oversize = oversize
        #: images whose header claims more pixels are refused before decoding (io.DEFAULT_MAX_PIXELS)
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.image_paths: list[str] = []
        self.mask_paths: list[str] = []
        self.names: list[str] = []
        self._init_dataset_path(str(path))
        if not self.image_paths:
            raise DatasetError(f"{path}: the dataset holds no images. {check_hint(self.root)}")

    # ------------------------------------------------------------------ subclass hook
    def _init_dataset_path(self, path: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ container protocol
    def __len__(self) -> int:
        return len(self.image_paths)

    def __str__(self) -> str:
        return f"[{type(self).__name__}] at {self.entry_path}, with length of {len(self):,}"

    __repr__ = __str__

    # ------------------------------------------------------------------ loading
    def _load_pair(self, index: int) -> tuple[Image.Image | np.ndarray, np.ndarray]:
        """The decoded image (RGB, Pillow or H×W×3 uint8) and its {0,1} uint8 H×W mask."""
        tp, gt = self.image_paths[index], self.mask_paths[index]
        image = load_rgb(tp, self.root, self.max_pixels)
        w, h = image.size
        if gt == NEGATIVE:
            return image, np.zeros((h, w), np.uint8)
        mask = load_mask(gt, self.root, self.max_pixels)
        if mask.shape != (h, w):
            raise DatasetError(
                f"{tp}: image is {w}x{h} (WxH) but its mask {gt} is {mask.shape[1]}x{mask.shape[0]}; "
                f"a mask must have its image's size. Fix or drop the pair. {check_hint(self.root)}"
            )
        return image, mask

    def _apply_transform(self, index: int, image: Image.Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tp = self.image_paths[index]
        try:
            out = self.common_transforms(image=np.array(image), mask=mask * np.uint8(255))
            new_image = np.ascontiguousarray(out["image"])
            new_mask = np.asarray(out["mask"])
        except Exception as err:
            raise DatasetError(
                f"{tp}: common_transforms {self.common_transforms!r} failed ({type(err).__name__}: {err}); "
                f"it must accept image=HxWx3 uint8 and mask=HxW uint8 (0/255) and return a dict with 'image' and 'mask'"
            ) from err
        if new_mask.ndim == 3:  # a transform that returns H×W×C masks
            new_mask = new_mask.mean(axis=2)
        if new_image.ndim != 3 or new_image.shape[2] != 3 or new_image.shape[:2] != new_mask.shape[:2]:
            raise DatasetError(
                f"{tp}: common_transforms returned image {new_image.shape} and mask {new_mask.shape}; "
                f"expected HxWx3 and HxW of the same size"
            )
        if new_image.dtype != np.uint8:
            new_image = np.clip(new_image, 0, 255).astype(np.uint8)
        return new_image, binarize_gray(new_mask)

    def _fit_size(self, index: int, hw: tuple[int, int]) -> tuple[int, int]:
        """Content size after resize or pad; an oversize image under padding is shrunk or refused."""
        if self.is_resizing:
            return self.output_size
        if self.keep_size:
            return tuple(hw)  # type: ignore[return-value]
        fit = shrink_to_fit(hw, self.output_size)
        if fit != tuple(hw):
            if self.oversize == "error":
                raise DatasetError(
                    f"{self.image_paths[index]}: image is {hw[1]}x{hw[0]} (WxH), larger than the padding size "
                    f"{self.output_size[1]}x{self.output_size[0]} and oversize='error'. Use a larger --image_size, "
                    f"--if_resizing, or oversize='shrink'."
                )
            global _oversize_logged
            if not _oversize_logged:
                _oversize_logged = True
                logger.warning(
                    "%s: images larger than the padding size %sx%s are shrunk (long side to fit, aspect kept) "
                    "instead of cropped, e.g. %s (%dx%d -> %dx%d); said once",
                    type(self).__name__, self.output_size[1], self.output_size[0],
                    self.image_paths[index], hw[1], hw[0], fit[1], fit[0],
                )
        return fit

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask = self._load_pair(index)
        if self.common_transforms is not None:
            image, mask = self._apply_transform(index, image, mask)
        original = mask.shape[:2]
        h, w = self._fit_size(index, original)
        sh, sw = self.output_size
        # IMDL-BenCo's order: the edge band at the mask's own resolution, then resized with it
        edge = edge_mask(mask, self.edge_width) if self.edge_width is not None else None
        pixels = resize_image(image, (h, w))
        mask = resize_mask(mask, (h, w))
        if edge is not None:
            edge = resize_mask(edge, (h, w))
        if self.is_padding:
            # contiguous CHW zeros (calloc: the padding costs no writes) with the content copied into
            # its top-left: the one transposing copy touches only the content, and the collate's
            # stack of contiguous items is a plain memcpy
            chw = np.zeros((3, sh, sw), np.uint8)  # torch.zeros would memset
            chw[:, :h, :w] = pixels.transpose(2, 0, 1)  # numpy: no thread pool for 1 MB
            image_t = torch.from_numpy(chw)
            mask = _pad(mask, (sh, sw))
            edge = None if edge is None else _pad(edge, (sh, sw))
        else:
            if not pixels.flags.writeable:  # Pillow's buffer (the image had the output size)
                pixels = pixels.copy()
            if not mask.flags.writeable:
                mask = mask.copy()
            # HWC memory seen as CHW (channels-last strides): no transposing copy, the collate copies anyway
            image_t = torch.from_numpy(pixels).permute(2, 0, 1)
        mask_t = torch.from_numpy(mask)[None]
        sample: dict[str, Any] = {
            "image": image_t,
            "mask": mask_t,
            "label": torch.tensor(int(mask.any()), dtype=torch.int64),
            "shape": torch.tensor((h, w), dtype=torch.int64),
            "original_shape": torch.tensor(original, dtype=torch.int64),
            "origin_shape": torch.tensor(original, dtype=torch.int64),
            "name": self.names[index],
            "image_path": self.image_paths[index],
            "mask_path": self.mask_paths[index],
        }
        if self.is_padding:
            shape_mask = np.zeros((1, sh, sw), np.uint8)
            shape_mask[:, :h, :w] = 1
            sample["shape_mask"] = torch.from_numpy(shape_mask)
        if edge is not None:
            sample["edge_mask"] = torch.from_numpy(edge)[None]
        if not self.defer_normalization:
            normalize_batch(sample)
        self._run_post_funcs(index, sample)
        return sample

    def _run_post_funcs(self, index: int, sample: dict[str, Any]) -> None:
        for func in self.post_funcs:
            func(sample)


@DATASETS.register_module()
class ManiDataset(AbstractDataset):
    """A folder with ``Tp/`` (images) and ``Gt/`` (masks), paired by file stem.

    A mask may carry a ``_gt``/``_mask`` suffix and any image extension; non-image files are
    ignored; pairs never depend on sort position. An image without a mask, a mask without an
    image, or two files with one stem is refused at construction. ``Au/`` (authentic images) is
    read only with ``include_authentic=True`` (then as ``Negative`` samples); other sub-folders
    are ignored.
    """

    def __init__(self, path: str, *args, include_authentic: bool = False, **kwargs) -> None:
        self.include_authentic = bool(include_authentic)
        super().__init__(path, *args, **kwargs)

    def _init_dataset_path(self, path: str) -> None:
        pairs, problems = mani_structure(path)  # the checker's own pairing and structure rules
        raise_for_structure(path, problems)
        for img, msk in pairs:
            self.image_paths.append(img)
            self.mask_paths.append(msk)
            self.names.append(os.path.basename(img))
        au_dir = os.path.join(path, "Au")
        if self.include_authentic and os.path.isdir(au_dir):
            for img in list_images(au_dir):
                self.image_paths.append(os.path.join(au_dir, img))
                self.mask_paths.append(NEGATIVE)
            self.names = unique_names(self.image_paths)  # Tp/x.png and Au/x.png stay apart


@DATASETS.register_module()
class JsonDataset(AbstractDataset):
    """A JSON list of ``[image_path, mask_path | "Negative"]``.

    Relative paths resolve against the JSON file's folder (not the working directory). Missing
    files are refused at construction (``check_files=False`` skips that stat of every file, for
    slow network file systems).
    """

    def __init__(self, path: str, *args, check_files: bool = True, **kwargs) -> None:
        self.check_files = bool(check_files)
        super().__init__(path, *args, **kwargs)

    def _init_dataset_path(self, path: str) -> None:
        pairs, problems = json_structure(path, check_files=self.check_files)  # the checker's rules
        raise_for_structure(path, problems)
        self.image_paths = [tp for tp, _ in pairs]
        self.mask_paths = [gt for _, gt in pairs]
        self.names = unique_names(self.image_paths)
