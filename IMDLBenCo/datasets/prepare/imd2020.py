"""IMD2020 real-life set: <name>_mask.png next to each image, <id>_orig.* originals."""

from __future__ import annotations

import os

from ..io import is_image_file, list_images
from .base import (
    RENAMED_UNIQUE,
    SIZE_RULE,
    Correction,
    DatasetSpec,
    Pair,
    Plan,
    PrepareOptions,
    decode_standard,
    file_stem,
    not_found,
    strip_suffix,
)
from .sources import SourceTree


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    masks = [p for p in tree.find_files(r"_mask\.[a-z0-9]+$") if is_image_file(p)]
    if not masks:
        raise not_found(SPEC, "folders of <name>.<ext> images with <name>_mask.png masks and <id>_orig.<ext> "
                         "originals (IMD2020.zip, real-life set)", tree)
    originals = [p for p in tree.find_files(r"_orig\.[a-z0-9]+$") if is_image_file(p)]
    plan.found = {"masks": len(masks), "authentic images": len(originals)}
    taken: dict[str, str] = {}
    n_images = 0
    for mask in masks:
        folder = os.path.dirname(mask)
        key = strip_suffix(file_stem(mask), "_mask")
        cands = [n for n in list_images(folder) if file_stem(n) == key]
        if not cands:
            plan.leave_out(tree.display(mask), "mask without an image of the same name")
            continue
        n_images += 1
        name = key
        notes = []
        if name in taken:  # same name in two folders: keep both, apart
            name = f"{os.path.basename(folder)}_{key}"
            notes.append((RENAMED_UNIQUE, f"{tree.display(os.path.join(folder, cands[0]))} -> {name}"))
        taken[name] = mask
        note = ("documented erratum: mask size differs from the image (IML-Dataset-Corrections)"
                if key == "00030_fake" else "")
        plan.pairs.append(Pair(os.path.join(folder, cands[0]), mask, name, decode_standard, errata_note=note,
                                notes=notes))
    paired = {p.image for p in plan.pairs}
    for folder in sorted({os.path.dirname(m) for m in masks}):
        for n in list_images(folder):
            stem = file_stem(n).lower()
            path = os.path.join(folder, n)
            if path not in paired and not stem.endswith(("_mask", "_orig")):
                n_images += 1
                plan.leave_out(tree.display(path), "image without a <name>_mask file")
    plan.found["tampered images"] = n_images
    plan.corrections.append(Correction(RENAMED_UNIQUE, "output names must be unique; the folder name is prefixed"))
    names: dict[str, int] = {}
    for p in originals:
        stem = file_stem(p)
        names[stem] = names.get(stem, 0) + 1
        plan.authentic.append((p, stem if names[stem] == 1 else f"{os.path.basename(os.path.dirname(p))}_{stem}"))
    if not opts.long_side:
        plan.notes.append("IMDL-BenCo's protocols use IMD2020 resized to a long side of 1024 (IMD_20_1024): "
                          "--long-side 1024.")
    return plan


LAYOUT = """\
  IMD2020 real-life set (IMD2020.zip from staff.utia.cas.cz/novozada/db/):
    <id>/<id>_orig.<ext>, <id>/<name>.<ext>, <id>/<name>_mask.png
  e.g. benco data prepare imd2020 IMD2020.zip --out data/IMD_20_1024 --long-side 1024"""

SPEC = DatasetSpec(
    "imd2020", "IMD2020 (real-life)", ("imd", "imd20", "imd-2020"), LAYOUT,
    ("<name>_mask.png pairs with <name>.<ext> in the same folder; <id>_orig.* are the authentic images",
     "z14/00030_fake.jpg's mask differs in size (documented) and is set aside", SIZE_RULE),
    ("the layout follows loaders of the real-life set (folders with _orig and _mask files), not a copy of "
     "IMD2020.zip",),
    {"tampered images": 2010, "authentic images": 414}, "IMD2020", (), collect)
