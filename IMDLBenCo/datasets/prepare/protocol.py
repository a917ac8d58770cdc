"""``benco data protocol``: training and test lists over the folders ``benco data prepare`` wrote."""

from __future__ import annotations

import json
import os

from ...errors import UsageError
from ..check import pair_folders
from ..io import NEGATIVE, DatasetError, list_images
from ..utils import write_json_dataset
from .base import SUMMARY_FILE
from .registry import PREPARERS, get_spec

__all__ = ["find_prepared", "write_protocol", "PROTOCOLS"]


def find_prepared(root: str) -> dict[str, list[str]]:
    """``{dataset name: [folders]}`` for every completed prepare output in ``root`` or one level below."""
    found: dict[str, list[str]] = {}
    candidates = [root] + [os.path.join(root, d) for d in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, d))]
    for folder in candidates:
        path = os.path.join(folder, SUMMARY_FILE)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(info, dict) and info.get("status") == "complete" and info.get("dataset") in PREPARERS:
            found.setdefault(str(info["dataset"]), []).append(folder)
    return found


#: Protocol-CAT entries we cannot prepare (FantasticReality, tampCOCO, compRAISE): JsonDataset files the
#: user provides at these places under --root (the layout of IMDL-BenCo's balanced_dataset.json)
_CAT_EXTERNAL = (
    ("FantasticReality", "FantasticReality_v1/FantasticReality.json"),
    ("tampCOCO sp", "tampCOCO/sp_COCO_list.json"),
    ("tampCOCO cm", "tampCOCO/cm_COCO_list.json"),
    ("tampCOCO bcm", "tampCOCO/bcm_COCO_list.json"),
    ("tampCOCO bcmc", "tampCOCO/bcmc_COCO_list.json"),
    ("compRAISE", "compRAISE/compRAISE_list_1024.json"),
)
_CAT_EXTERNAL_AUTHENTIC = (("FantasticReality authentic", "FantasticReality_v1/FantasticReality_auth.json"),)

#: protocol → (training datasets, test datasets); see write_protocol
PROTOCOLS: dict[str, dict[str, tuple[str, ...]]] = {
    "cat": {"train": ("casia2", "imd2020"), "test": ("casia1", "columbia", "coverage", "nist16")},
    "mvss": {"train": ("casia2",), "test": ("casia1", "columbia", "coverage", "nist16", "imd2020")},
    "casia": {"train": ("casia2",), "test": ("casia1",)},
}


def _count_entries(kind: str, path: str) -> int:
    if kind == "ManiDataset":
        return len(pair_folders(os.path.join(path, "Tp"), os.path.join(path, "Gt"))[0])
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return len(data) if isinstance(data, list) else 0
    except (OSError, json.JSONDecodeError):
        return 0


def write_protocol(protocol: str, root: str, out: str | None = None, with_authentic: bool = False,
                   absolute: bool = False) -> dict[str, object]:
    """Write the training list and ``test_datasets.json`` of ``protocol`` for the folders prepared in ``root``.

    * ``cat``: ``balanced_dataset.json`` (BalancedDataset: ``[[class, path], ...]``) in IMDL-BenCo's order,
      CASIA v2 and IMD2020 from ``root`` plus the FantasticReality/tampCOCO/compRAISE JsonDataset files
      found at their usual places; ``with_authentic`` adds CAT-Net's authentic lists (CASIA v2 Au,
      FantasticReality authentic) as their own entries, as CAT-Net's data_core.py samples them.
    * ``mvss`` / ``casia``: ``train_<protocol>.json`` (JsonDataset of CASIA v2's pairs; with
      ``with_authentic`` also its authentic images as Negative).

    Returns ``{"files": [...], "train": [(name, class, path, count)], "test": {...}, "missing": [...]}``.
    """
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}.")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise UsageError(f"--root {root}: not a folder; expected the folder holding the `benco data prepare` outputs.")
    out = os.path.abspath(out or root)
    os.makedirs(out, exist_ok=True)
    prepared = find_prepared(root)

    def ref(path: str) -> str:
        return path if absolute else os.path.relpath(path, out)

    missing: list[str] = []
    train: list[tuple[str, str, str, int]] = []
    files: list[str] = []
    spec = PROTOCOLS[protocol]
    for ds in spec["train"]:
        if ds not in prepared:
            missing.append(f"{ds} (run `benco data prepare {ds} ... --out {os.path.join(root, get_spec(ds).default_dir)}`)")
    if protocol == "cat":
        # IMDL-BenCo's balanced_dataset.json order: CASIA v2, FantasticReality, IMD2020, tampCOCO x4, compRAISE
        wanted: list[tuple[str, str, str | None, str]] = [
            ("CASIA v2.0", "ManiDataset", (prepared.get("casia2") or [None])[0], "casia2"),
            ("FantasticReality", "JsonDataset", None, _CAT_EXTERNAL[0][1]),
            ("IMD2020", "ManiDataset", (prepared.get("imd2020") or [None])[0], "imd2020"),
        ] + [(label, "JsonDataset", None, rel) for label, rel in _CAT_EXTERNAL[1:]]
        if with_authentic:
            casia2 = (prepared.get("casia2") or [None])[0]
            au = os.path.join(casia2, "authentic.json") if casia2 else None
            wanted.append(("CASIA v2.0 authentic", "JsonDataset", au if au and os.path.isfile(au) else None,
                           "the prepared CASIA v2.0's authentic.json (needs its Au/ images)"))
            wanted += [(label, "JsonDataset", None, rel) for label, rel in _CAT_EXTERNAL_AUTHENTIC]
        order: list[tuple[str, str, str]] = []
        for label, cls, path, where in wanted:
            if path is None and cls == "JsonDataset" and where.endswith(".json"):
                candidate = os.path.join(root, where)
                path = candidate if os.path.isfile(candidate) else None
            if path is None:
                if where not in PROTOCOLS["cat"]["train"]:  # prepared datasets are reported above
                    missing.append(f"{label} (a JsonDataset file at {where})" if where.endswith(".json") else
                                   f"{label} ({where})")
                continue
            order.append((label, cls, path))
        if order:
            target = os.path.join(out, "balanced_dataset.json")
            with open(target, "w", encoding="utf-8") as f:
                f.write("[\n" + ",\n".join(" " + json.dumps([cls, ref(p)]) for _, cls, p in order) + "\n]\n")
            files.append(target)
            train = [(label, cls, p, _count_entries(cls, p)) for label, cls, p in order]
    elif "casia2" in prepared:
        folder = prepared["casia2"][0]
        entries, _ = pair_folders(os.path.join(folder, "Tp"), os.path.join(folder, "Gt"))
        au = os.path.join(folder, "Au")
        if with_authentic and os.path.isdir(au):
            entries += [(os.path.join(au, n), NEGATIVE) for n in list_images(au)]
        target = os.path.join(out, f"train_{protocol}.json")
        write_json_dataset(entries, target, relative=not absolute)
        files.append(target)
        train = [("CASIA v2.0" + (" + authentic" if with_authentic else ""), "JsonDataset", target, len(entries))]
    test: dict[str, str] = {}
    test_counts: dict[str, int] = {}
    for ds in spec["test"]:
        for folder in prepared.get(ds, []):
            key = os.path.basename(folder.rstrip(os.sep))
            test[key] = ref(folder)
            test_counts[key] = _count_entries("ManiDataset", folder)
        if ds not in prepared:
            target = os.path.join(root, get_spec(ds).default_dir)
            missing.append(f"{ds} (test set; `benco data prepare {ds} ... --out {target}`)")
    if test:
        target = os.path.join(out, "test_datasets.json")
        with open(target, "w", encoding="utf-8") as f:
            json.dump(test, f, indent=4)
            f.write("\n")
        files.append(target)
    if not files:
        raise DatasetError(f"{root}: no prepared dataset of protocol {protocol!r} found; missing: " + "; ".join(missing))
    return {"files": files, "train": train, "test": test_counts, "missing": missing}
