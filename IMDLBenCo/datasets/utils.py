"""Choosing a dataset class for a path, ``test_datasets.json``, and batch (de)normalisation."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

# the ImageNet normalisation lives in transforms/ (models use it too); re-exported here as before
from ..transforms.normalization import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize
from .io import NEGATIVE, DatasetError

__all__ = [
    "dataset_from_path", "load_test_datasets", "normalize_batch", "denormalize", "detect_format",
    "read_json_pairs", "read_balanced_entries", "write_json_dataset", "IMAGENET_MEAN", "IMAGENET_STD",
]


_FORMATS = (
    "a ManiDataset folder (Tp/ images + Gt/ masks), a JsonDataset file "
    '([[image_path, mask_path or "Negative"], ...]), a BalancedDataset file ([[dataset_class_name, path], ...]) '
    "or a shard folder or URL (benco data pack)"
)

_JSON_EXPECTED = 'a non-empty JSON list of [image_path, mask_path] pairs (mask_path "Negative" for authentic images)'
_BALANCED_EXPECTED = 'a non-empty JSON list of [dataset_class_name, dataset_path] pairs, e.g. [["ManiDataset", "data/CASIA2"]]'

# keyword arguments that only one class takes; dataset_from_path drops them for the others
_ONLY_FOR = {
    "sample_number": "BalancedDataset",
    "seed": "BalancedDataset",
    "include_authentic": "ManiDataset",
    "check_files": "JsonDataset",
    "shuffle_buffer": "ShardDataset",
}


def _load_json(path: str, expected: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found; expected {expected}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err}); expected {expected}.") from None


def _looks_like_class_name(name: str) -> bool:
    """A CamelCase identifier without extension or folder (``ManiDatset``), not a file name."""
    return name.isidentifier() and name[:1].isupper() and any(c.isupper() for c in name[1:])


def _is_dataset_class(name: object) -> bool:
    # image paths are never identifiers ("a.png"), so the registry (and torch) is only loaded
    # for strings that could be class names
    from ..registry import DATASETS

    return isinstance(name, str) and name.isidentifier() and name in DATASETS


def _is_negative(p: str, base: str) -> bool:
    """``"Negative"`` in any letter case (``"negative"`` is a common slip), unless such a file exists."""
    return p == NEGATIVE or (p.lower() == NEGATIVE.lower() and not os.path.exists(os.path.join(base, p)))


def _resolve(base: str, p: str) -> str:
    if _is_negative(p, base):
        return NEGATIVE
    return os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p))


def _entry_problem(entry: Any) -> str | None:
    """Why ``entry`` is not a ``[str, str]`` pair, or None."""
    if not isinstance(entry, (list, tuple)):
        return f"a JSON {type(entry).__name__} ({entry!r}), not a pair"
    if len(entry) == 0:
        return "an empty list"
    if len(entry) != 2:
        return f"a list of {len(entry)} elements ({list(entry)!r}), not a pair"
    if not all(isinstance(x, str) for x in entry):
        return f"{list(entry)!r}: both elements must be strings"
    return None


def _pair_list(path: str, data, expected: str) -> list[tuple[str, str]]:
    if not isinstance(data, list) or not data:
        found = "an empty list: the file lists no entries" if data == [] else f"a JSON {type(data).__name__}"
        hint = " (an object {name: path} is a test_datasets.json, read with load_test_datasets)" if isinstance(data, dict) else ""
        raise DatasetError(f"{path}: found {found}; expected {expected}{hint}.")
    for i, entry in enumerate(data):
        problem = _entry_problem(entry)
        if problem:
            raise DatasetError(f"{path}: entry {i} is {problem}; expected {expected}.")
    return [tuple(e) for e in data]  # type: ignore[misc]


def read_json_pairs(path: str) -> list[tuple[str, str]]:
    """Entries of a JsonDataset file, relative paths resolved against the file's folder.

    Raises :class:`DatasetError` for a file that is missing, not JSON, or not a non-empty list of
    ``[image_path, mask_path | "Negative"]``.
    """
    entries = _pair_list(path, _load_json(path, _JSON_EXPECTED), _JSON_EXPECTED)
    base = os.path.dirname(os.path.abspath(path))
    if _is_dataset_class(entries[0][0]) and not os.path.exists(os.path.join(base, entries[0][0])):
        raise DatasetError(
            f"{path}: entry 0 starts with the dataset class {entries[0][0]!r}: this is a BalancedDataset file "
            f"([[class_name, path], ...]); open it with BalancedDataset or dataset_from_path."
        )
    return [(_resolve(base, tp), _resolve(base, gt)) for tp, gt in entries]


def read_balanced_entries(path: str) -> list[tuple[str, str]]:
    """``[[class_name, path], ...]`` of a BalancedDataset file; relative paths resolve against its folder."""
    from ..registry import DATASETS

    entries = _pair_list(path, _load_json(path, _BALANCED_EXPECTED), _BALANCED_EXPECTED)
    base = os.path.dirname(os.path.abspath(path))
    for i, (name, _) in enumerate(entries):
        if name not in DATASETS:
            try:
                DATASETS.get(name)
            except KeyError as err:
                raise DatasetError(f"{path}: entry {i}: {err.args[0]}") from None
    return [(name, _resolve(base, sub)) for name, sub in entries]


def write_json_dataset(pairs: Sequence[tuple[str, str]], out: str, relative: bool = False) -> str:
    """Write ``pairs`` as a JsonDataset file. Absolute paths stay absolute unless ``relative``
    (a dataset folder meant to be moved as a whole); relative ones (relative to the working
    folder) are rewritten relative to the file's folder, which is what JsonDataset resolves them
    against."""
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)

    def rel(p: str) -> str:
        if p == NEGATIVE or (os.path.isabs(p) and not relative):
            return p
        try:
            return os.path.relpath(os.path.abspath(p), out_dir)
        except ValueError:  # another drive on Windows
            return os.path.abspath(p)

    with open(out, "w", encoding="utf-8") as f:
        # one pair per line: readable and diff-friendly
        f.write("[\n" + ",\n".join(" " + json.dumps([rel(tp), rel(gt)]) for tp, gt in pairs) + "\n]\n")
    return out


def detect_format(path: str) -> str:
    """``"ManiDataset"``, ``"JsonDataset"``, ``"BalancedDataset"`` or ``"ShardDataset"`` for
    ``path``; else DatasetError."""
    from .shards import shard_kind

    path = str(path)
    kind = shard_kind(path)  # a shard folder, index or URL (benco data pack)
    if kind == "complete":
        return "ShardDataset"
    if kind == "incomplete":
        raise DatasetError(f"{path}: an unfinished `benco data pack` (its index is written last); run the same "
                           f"`benco data pack ... --out {path}` again to finish it.")
    if os.path.isdir(path):
        return "ManiDataset"
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file or folder; expected {_FORMATS}.")
    data = _load_json(path, _FORMATS)
    if isinstance(data, list):
        entries = _pair_list(path, data, _FORMATS)  # empty lists and malformed entries: one message
        first, second = entries[0]
        base = os.path.dirname(os.path.abspath(path))
        if _is_dataset_class(first) and second != NEGATIVE and not os.path.isfile(os.path.join(base, first)):
            return "BalancedDataset"
        if _looks_like_class_name(first) and not os.path.exists(os.path.join(base, first)):
            from ..registry import DATASETS

            try:
                DATASETS.get(first)
            except KeyError as err:
                raise DatasetError(
                    f"{path}: entry 0 starts with {first!r}, which is neither a file (looked for "
                    f"{os.path.join(base, first)}) nor a dataset class: {err.args[0]}"
                ) from None
        return "JsonDataset"
    if isinstance(data, dict):
        raise DatasetError(
            f"{path}: a JSON object is a test_datasets.json ({{name: path}}), not one dataset; "
            f"read it with load_test_datasets (--test_data_json). Expected {_FORMATS}."
        )
    raise DatasetError(f"{path}: JSON content does not match any dataset format; expected {_FORMATS}.")


def dataset_from_path(path: str, **dataset_kwargs: Any):
    """Build the dataset for ``path``: folder → ManiDataset, ``[image, mask]`` list JSON →
    JsonDataset, ``[class, path]`` list JSON → BalancedDataset, shard folder/index/URL →
    ShardDataset (see :func:`detect_format`)."""
    from ..registry import DATASETS

    cls_name = detect_format(path)
    kwargs = {k: v for k, v in dataset_kwargs.items() if _ONLY_FOR.get(k, cls_name) == cls_name}
    return DATASETS.get(cls_name)(str(path), **kwargs)


def load_test_datasets(path: str) -> dict[str, str]:
    """``{name: path}`` from a ``test_datasets.json`` object (relative paths resolve against its
    folder); a single ManiDataset folder or JsonDataset file becomes ``{"test_dataset": path}``."""
    from .shards import is_url

    path = str(path)
    if os.path.isdir(path) or is_url(path):
        return {"test_dataset": path}
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file or folder; expected a test_datasets.json object {{name: path}} or {_FORMATS}.")
    data = _load_json(path, "a test_datasets.json object {name: path}")
    if isinstance(data, list):
        detect_format(path)  # raises for list content that is no dataset
        return {"test_dataset": path}
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"{path}: expected a non-empty JSON object {{name: dataset_path}}, found {type(data).__name__} {data!r:.80}.")
    base = os.path.dirname(os.path.abspath(path))
    out: dict[str, str] = {}
    for name, sub in data.items():
        if not isinstance(sub, str):
            raise DatasetError(f"{path}: the value of {name!r} is {sub!r}; expected the path of a ManiDataset folder or JsonDataset file.")
        if is_url(sub):  # shards on a server (benco data pack): read when the set is built
            out[str(name)] = sub
            continue
        resolved = sub if os.path.isabs(sub) else os.path.normpath(os.path.join(base, sub))
        if not os.path.exists(resolved):
            raise DatasetError(f"{path}: test set {name!r} points to {resolved}, which does not exist.")
        out[str(name)] = resolved
    return out


#: below this many elements, a CPU batch is converted with numpy (single-threaded, no thread
#: team to start beside busy DataLoader workers); above, with torch's intra-op threads (a large
#: padded batch makes the main process the bottleneck, where its threads pay off)
SMALL_CONVERSION = 16 * 2**20


def normalize_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Make a deferred (uint8) sample or batch float, in place, on the tensors' own device.

    ``image`` → float32 ImageNet-normalised; ``mask``, ``shape_mask``, ``edge_mask`` → float32
    {0,1}. Tensors that are already floating point are left alone, so calling it twice is harmless.
    Works for one item (3,H,W) and for a batch (B,3,H,W). Returns ``batch``. No process-wide
    setting (thread counts) is changed: a small CPU conversion runs in numpy, single-threaded.
    """
    import torch

    image = batch.get("image")
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
        if image.device.type == "cpu" and image.numel() < SMALL_CONVERSION:
            mean = [m * 255.0 for m in IMAGENET_MEAN]
            inv_std = [1.0 / (s * 255.0) for s in IMAGENET_STD]
            batch["image"] = torch.from_numpy(_normalize_numpy(image.numpy(), mean, inv_std))
        else:
            batch["image"] = normalize(image)
    for key in ("mask", "shape_mask", "edge_mask"):
        value = batch.get(key)
        if isinstance(value, torch.Tensor) and value.dtype == torch.uint8:
            batch[key] = value.float()
    return batch


def _normalize_numpy(arr, mean, inv_std):
    """``(arr - mean) * inv_std`` per channel (axis -3) in float32, in the input's memory layout."""
    import numpy as np

    shape = (3, 1, 1)
    out = np.empty_like(arr, dtype=np.float32)  # order "K": a channels-last item stays so
    np.subtract(arr, np.asarray(mean, np.float32).reshape(shape), out=out, dtype=np.float32)
    np.multiply(out, np.asarray(inv_std, np.float32).reshape(shape), out=out)
    return out
