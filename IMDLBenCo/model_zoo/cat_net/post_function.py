"""``cat_net_post_func``: the JPEG luminance DCT coefficients and quantisation table of a sample.

CAT-Net's DCT stream reads the quantised DCT coefficients of the luminance channel (one per
pixel, in block layout: element ``[8i+u, 8j+v]`` is coefficient (u, v) of the 8x8 block in row i,
column j) and the luminance quantisation table. The engine runs this function on every sample,
in the DataLoader workers, after padding/resizing (docs/ARCHITECTURE.md); it adds

* ``DCT_coef``: float32 (S, S), aligned with the sample's ``image`` (zeros beyond the content);
* ``qtables``: float32 (8, 8), the luminance table (natural row-major order);
* ``DCT_source``: ``"file"`` or ``"benco"``, so the model can check how its batch was prepared.

``dct_source="file"`` (default) follows the CAT-Net authors:

1. the sample's image file is a JPEG and the sample's content is that file's decoded pixels, at
   its size, in the top-left corner (padding without shrinking, or a resize to the file's own
   size, no augmentation): the coefficients and table are read from the file with jpeglib;
2. the file is a JPEG but the content differs (resized, shrunk, augmented, attacked): the content
   is JPEG-encoded again **with the file's own quantisation tables** and that encoding's
   coefficients are used, so the 8x8 grid matches the pixels the model sees and the table stays
   the file's;
3. the file is not a JPEG (PNG, TIFF, ...; or CMYK), or there is no file (a synthetic sample):
   the content is encoded at quality 100 without chroma subsampling, as the authors prescribe for
   non-JPEG training images.

JPEG or not is decided by the file's bytes, not its name.

``dct_source="benco"`` (``Cat_Net --dct_source benco``) reproduces IMDL-BenCo 0.1.45: the whole S x S image as the pipeline holds
it (ImageNet-normalised float, whose cast to uint8 truncates and wraps modulo 256) is saved with
Pillow's defaults (quality 75, 4:2:0) and read back. Only for reproducing IMDL-BenCo's published Cat_Net numbers and using its
checkpoints: the cast corrupts the image, and the JPEG traces the model is meant to read are lost.

jpeglib is imported here, lazily: ``pip install jpeglib``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ...errors import DatasetError
from ...registry import POSTFUNCS

__all__ = ["cat_net_post_func", "DCT_SOURCES", "LumaDCT", "read_luma_dct", "encode_luma_dct",
           "jpeg_header_tables", "luma_dct_for_sample", "place_blocks"]

DCT_SOURCES = ("file", "benco")
#: the authors' encoding of non-JPEG images: quality 100, no chroma subsampling (4:4:4)
LOSSLESS_QUALITY = 100
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class LumaDCT:
    """Quantised luminance DCT coefficients of one JPEG and its luminance table."""

    coef: np.ndarray  # (8*rows, 8*cols) int16, block layout
    qtable: np.ndarray  # (8, 8) natural order


def _jpeglib():
    try:
        import jpeglib
    except ImportError as err:  # a dependency of this model only
        raise ImportError("Cat_Net's post-function reads JPEG DCT coefficients with jpeglib: "
                          "pip install jpeglib") from err
    return jpeglib


def read_luma_dct(path: str) -> LumaDCT:
    """The luminance coefficients and table stored in the JPEG file ``path`` (read by jpeglib)."""
    try:
        jpeg = _jpeglib().read_dct(str(path))
        y = np.asarray(jpeg.Y)  # (rows, cols, 8, 8): block (i, j), coefficient (u, v)
        qtable = np.asarray(jpeg.qt)[int(np.asarray(jpeg.quant_tbl_no)[0])]
    except ImportError:
        raise
    except Exception as err:  # noqa: BLE001 - jpeglib raises plain errors for broken files
        raise DatasetError(f"{path}: jpeglib could not read its DCT coefficients ({type(err).__name__}: {err}); "
                           f"check the file (benco data check) or convert it to PNG") from err
    rows, cols = y.shape[:2]
    return LumaDCT(coef=y.transpose(0, 2, 1, 3).reshape(rows * 8, cols * 8), qtable=qtable.astype(np.int32))


def jpeg_header_tables(path: str) -> tuple[tuple[int, int], list[np.ndarray]] | None:
    """``((H, W), [luma table, chroma table])`` from the header of a JPEG file, or None when the
    file is not a JPEG whose first component is luminance (a CMYK/YCCK JPEG counts as not JPEG).

    Reads the header only (Pillow), which is cheap next to reading all coefficients.
    """
    try:
        with open(path, "rb") as f:
            if f.read(3) != _JPEG_MAGIC:
                return None
        with Image.open(path) as img:
            if img.format != "JPEG" or img.mode not in ("L", "RGB"):
                return None
            size = (img.height, img.width)
            tables = {k: np.asarray(v, dtype=np.int32).reshape(8, 8) for k, v in img.quantization.items()}
            slots = [int(layer[3]) for layer in getattr(img, "layer", [])] or sorted(tables)
    except OSError as err:
        raise DatasetError(f"{path}: could not read its JPEG header ({err}); "
                           f"check the file (benco data check)") from err
    luma = tables[slots[0]]
    chroma = tables[slots[1]] if len(slots) > 1 else luma
    return size, [luma, chroma]


def encode_luma_dct(pixels: np.ndarray, *, qtables: Sequence[np.ndarray] | None = None,
                    quality: int | None = None, subsampling: int | None = 0) -> LumaDCT:
    """JPEG-encode ``pixels`` ((H, W, 3) uint8 RGB) with Pillow and read the luminance
    coefficients back with jpeglib.

    ``qtables`` (natural order, luma first) take precedence over ``quality``; with neither (and
    ``subsampling=None``) Pillow's defaults apply (quality 75, 4:2:0).
    """
    kwargs: dict[str, Any] = {}
    if qtables is not None:
        kwargs["qtables"] = [np.asarray(t).reshape(-1).tolist() for t in qtables]
    elif quality is not None:
        kwargs["quality"] = int(quality)
    if subsampling is not None:
        kwargs["subsampling"] = subsampling
    fd, tmp = tempfile.mkstemp(suffix=".jpg", prefix="catnet_")
    os.close(fd)
    try:
        Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(tmp, format="JPEG", **kwargs)
        return read_luma_dct(tmp)
    finally:
        os.remove(tmp)


def place_blocks(coef: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``coef`` in the top-left of a float32 zero array of ``size`` (cropped where larger)."""
    out = np.zeros(size, dtype=np.float32)
    h, w = min(size[0], coef.shape[0]), min(size[1], coef.shape[1])
    out[:h, :w] = coef[:h, :w]
    return out


def _pixels_hwc(image) -> np.ndarray:
    """The sample's (3, H, W) image as (H, W, 3) uint8: deferred uint8 as it is, a normalised
    float image de-normalised and rounded."""
    import torch

    if image.dtype == torch.uint8:
        return image.permute(1, 2, 0).numpy()
    from ...transforms.normalization import denormalize

    values = denormalize(image.detach().float().cpu()) * 255.0
    return values.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def luma_dct_for_sample(pixels: np.ndarray, image_path: str | None, content: tuple[int, int]) -> LumaDCT:
    """``dct_source="file"``: the coefficients for the content ``pixels[:h, :w]`` of a sample
    whose image was read from ``image_path`` (see the module docstring, cases 1-3)."""
    from ...datasets.io import load_rgb

    h, w = content
    region = pixels[:h, :w]
    header = jpeg_header_tables(image_path) if image_path and os.path.isfile(image_path) else None
    if header is None:
        return encode_luma_dct(region, quality=LOSSLESS_QUALITY, subsampling=0)
    size, tables = header
    if size == (h, w) and np.array_equal(np.asarray(load_rgb(image_path)), region):
        return read_luma_dct(image_path)
    return encode_luma_dct(region, qtables=tables, subsampling=0)


def _benco_luma(image) -> LumaDCT:
    """IMDL-BenCo 0.1.45's coefficients: its normalised float image cast to uint8 (NumPy on x86:
    truncation toward zero, then modulo 256), saved with Pillow's defaults, read back."""
    import torch

    from ...transforms.normalization import normalize

    if image.dtype == torch.uint8:
        image = normalize(image)
    values = image.detach().float().cpu().permute(1, 2, 0).numpy()
    wrapped = np.mod(np.trunc(values).astype(np.int64), 256).astype(np.uint8)
    return encode_luma_dct(wrapped, subsampling=None)


@POSTFUNCS.register_module()
def cat_net_post_func(sample: dict[str, Any], dct_source: str = "file") -> None:
    """Add ``DCT_coef`` (S, S), ``qtables`` (8, 8) and ``DCT_source`` to ``sample``, in place.

    ``sample`` needs ``image`` ((3, S, S), uint8 or normalised float); ``image_path`` and
    ``shape`` (the content's (h, w) in the top-left) are used when present.
    """
    import torch

    if dct_source not in DCT_SOURCES:
        raise ValueError(f"cat_net_post_func: dct_source {dct_source!r}; expected one of {DCT_SOURCES}")
    image = sample.get("image")
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        found = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"cat_net_post_func: sample['image'] is {found}; expected a (3, H, W) tensor")
    size = (int(image.shape[1]), int(image.shape[2]))
    if dct_source == "benco":
        luma = _benco_luma(image)
    else:
        shape = sample.get("shape")
        content = size if shape is None else (min(int(shape[0]), size[0]), min(int(shape[1]), size[1]))
        luma = luma_dct_for_sample(_pixels_hwc(image), sample.get("image_path"), content)
    sample["DCT_coef"] = torch.from_numpy(place_blocks(luma.coef, size))
    sample["qtables"] = torch.from_numpy(luma.qtable.astype(np.float32))
    sample["DCT_source"] = dct_source
