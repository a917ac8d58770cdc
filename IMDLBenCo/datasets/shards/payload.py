"""Pixel payloads of a shard: an array as a ``.npy`` file, optionally zstd- or lz4-compressed.

``.npy`` (NumPy's self-describing format: dtype and shape in a short header) keeps the shards
readable by any WebDataset pipeline (its default decoder reads ``.npy``); the compressors are
Zstandard and LZ4 frames with content checksums, so a damaged shard fails loudly instead of
giving wrong pixels. Decoding returns a read-only array over the decompressed bytes (no copy).
"""

from __future__ import annotations

import io

import numpy as np

from ...errors import DatasetError

__all__ = ["CODECS", "DEFAULT_CODEC", "DEFAULT_LEVEL", "SUFFIX", "encode_array", "decode_array", "check_codec"]

#: codec -> tar member suffix after the field name
SUFFIX: dict[str, str] = {"zstd": "npy.zst", "lz4": "npy.lz4", "none": "npy"}
CODECS = tuple(SUFFIX)
#: lz4: 1024x768 pixels decode in ~0.5 ms (zstd ~2 ms) for ~11% more disk (measured: benchmarks/bench_data.py)
DEFAULT_CODEC = "lz4"
#: zstd level 3 (its default): ~7% smaller than level 1 on photographs, decodes as fast
DEFAULT_LEVEL = 3


def _zstd():
    try:
        import zstandard
    except ImportError as err:  # a core dependency; a broken install gets one clear line
        raise DatasetError("shards compressed with zstd need the zstandard package: pip install zstandard") from err
    return zstandard


def _lz4():
    try:
        import lz4.frame
    except ImportError as err:
        raise DatasetError("shards compressed with lz4 need the lz4 package: pip install lz4") from err
    return lz4.frame


def check_codec(codec: str) -> str:
    if codec not in SUFFIX:
        raise DatasetError(f"unknown shard codec {codec!r}; expected one of {', '.join(CODECS)}")
    if codec == "zstd":
        _zstd()
    elif codec == "lz4":
        _lz4()
    return codec


def encode_array(arr: np.ndarray, codec: str = DEFAULT_CODEC, level: int = DEFAULT_LEVEL) -> bytes:
    """``arr`` as ``.npy`` bytes, compressed with ``codec``."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    raw = buf.getvalue()
    if codec == "zstd":
        return _zstd().ZstdCompressor(level=level, write_checksum=True, write_content_size=True).compress(raw)
    if codec == "lz4":
        return _lz4().compress(raw, content_checksum=True, store_size=True)
    if codec == "none":
        return raw
    raise DatasetError(f"unknown shard codec {codec!r}; expected one of {', '.join(CODECS)}")


def decode_array(data: bytes, codec: str, where: str = "shard") -> np.ndarray:
    """The array stored by :func:`encode_array` (read-only, sharing the decompressed buffer)."""
    try:
        if codec == "zstd":
            raw = _zstd().ZstdDecompressor().decompress(data)
        elif codec == "lz4":
            raw = _lz4().decompress(data)
        elif codec == "none":
            raw = bytes(data)
        else:
            raise DatasetError(f"{where}: unknown shard codec {codec!r}; expected one of {', '.join(CODECS)}")
        fp = io.BytesIO(raw)
        version = np.lib.format.read_magic(fp)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fp)
        if fortran or dtype.hasobject:
            raise ValueError("not a C-ordered plain array")
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(raw, dtype=dtype, count=count, offset=fp.tell()).reshape(shape)
    except DatasetError:
        raise
    except Exception as err:  # zstd/lz4 frame or checksum errors, a short or foreign .npy
        raise DatasetError(f"{where}: the stored pixels cannot be decoded ({type(err).__name__}: {err}); the shard "
                           f"is damaged or was changed after packing. Pack the dataset again (benco data pack).") from err
