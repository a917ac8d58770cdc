"""Korus & Huang Realistic Tampering dataset: 3-level maps made binary."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..io import list_images, mask_gray
from .base import (
    RENAMED_UNIQUE,
    SIZE_RULE,
    Correction,
    DatasetSpec,
    Pair,
    Plan,
    PrepareOptions,
    file_stem,
    has_images,
    not_found,
    subdir,
)
from .sources import SourceTree

KORUS = "3-level map made binary"


def korus_decoder(collateral: str) -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        gray = np.asarray(mask_gray(img), dtype=np.float32)
        # 3-level maps: black authentic, grey collateral damage, white semantic change
        return gray > 10 if collateral == "tampered" else gray > 250

    return decode


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    tampered_dirs = tree.find_dirs(["tampered-realistic"], has_images(""))
    if not tampered_dirs:
        raise not_found(SPEC, "camera folders with tampered-realistic/ (TIFF), ground-truth/ (PNG) and pristine/", tree)
    collateral = opts.korus_collateral or "tampered"
    decoder = korus_decoder(collateral)
    stems: dict[str, int] = {}
    for d in tampered_dirs:
        for n in list_images(d):
            stems[file_stem(n)] = stems.get(file_stem(n), 0) + 1
    n_masks = n_images = 0
    rule = "3-level map: grey and white = tampered" if collateral == "tampered" else "3-level map: white = tampered"
    for d in tampered_dirs:
        camera = os.path.basename(os.path.dirname(d))
        gt_dir = subdir(os.path.dirname(d), "ground-truth")
        pristine = subdir(os.path.dirname(d), "pristine")
        gt = {file_stem(n).lower(): os.path.join(gt_dir, n) for n in list_images(gt_dir)} if gt_dir else {}
        n_masks += len(gt)
        for n in list_images(d):
            n_images += 1
            stem = file_stem(n)
            name = stem if stems[stem] == 1 else f"{camera}_{stem}"
            notes = [(KORUS, name)] + ([(RENAMED_UNIQUE, f"{camera}/{n} -> {name}")] if name != stem else [])
            mask = gt.get(stem.lower()) or gt.get(f"{stem.lower()}_mask")
            if mask is None:
                plan.leave_out(tree.display(os.path.join(d, n)), "no mask of the same name in ground-truth/")
                continue
            plan.pairs.append(Pair(os.path.join(d, n), mask, name, decoder, mask_rule=rule, notes=notes))
        if pristine:
            for n in list_images(pristine):
                stem = file_stem(n)
                plan.authentic.append((os.path.join(pristine, n), stem if stems.get(stem, 0) <= 1 else f"{camera}_{stem}"))
    plan.found = {"tampered images": n_images, "masks": n_masks, "authentic images": len(plan.authentic)}
    plan.corrections.append(Correction(
        KORUS, "black = authentic, white = semantic change, grey = collateral damage; grey counts as "
        + ("tampered, as the dataset readme advises for standard evaluation" if collateral == "tampered"
           else "authentic (--korus-collateral authentic)"), routine=True))
    plan.corrections.append(Correction(RENAMED_UNIQUE, "output names must be unique; the camera folder is prefixed"))
    return plan


LAYOUT = """\
  Realistic Tampering Dataset (Korus & Huang), data-images/:
    <camera>/tampered-realistic/*.TIF, <camera>/ground-truth/*.PNG, <camera>/pristine/*.TIF
    (cameras Canon_60D, Nikon_D90, Nikon_D7000, Sony_A57)
  e.g. benco data prepare korus data-images --out data/Korus"""

SPEC = DatasetSpec(
    "korus", "Korus Realistic Tampering", ("realistic-tampering", "rt", "korus-rt"), LAYOUT,
    ("3-level maps made binary: white and grey (collateral damage) = tampered, as the readme advises for "
     "standard evaluation (--korus-collateral authentic keeps only white)", SIZE_RULE),
    ("the grey level of the maps was not seen: pixels above 10 count as tampered, above 250 as white",),
    {"tampered images": 220, "authentic images": 220}, "Korus", ("korus_collateral",), collect)
