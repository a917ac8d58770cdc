"""TGIF (Mareen et al., WIFS 2024): text-guided inpainting of MS-COCO images by SD2, SDXL and Adobe Firefly.

Published layout (separate downloads of fake images, real images, masks; a category folder each),
file names as the dataset's generation script (code/inpaint-loop.py) writes them::

    <category>/<id>_orig.png, <id>_orig_<crop>.png                    authentic (full size, 512/1024 crop)
    <category>/<id>_mask_<bbox|segm>.png, <id>_mask_<t>_<crop>.png    inpainting masks (full size, crop)
    <category>/<id>_mask_<t>.png_ps_mask.png                          Photoshop masks (the spliced region)
    <category>/<id>_mask_<t>.png_<sd2|sdxl>-<crop>_<k>.png            fully regenerated crop (SD2-fr, SDXL-fr)
    <category>/<id>_mask_<t>.png_ps_mask.png_<sd2|sdxl>_<k>.png       spliced through the Photoshop mask (-sp)
    <category>/<id>_mask_<t>.png_ps_<k>.png                           Adobe Firefly, spliced (PS-sp)

Ground truth: the Photoshop mask for spliced images, the crop's inpainting mask for fully
regenerated crops; masks are binarised at 0.1 of white, as TGIF's own training code reads them (the
Photoshop masks have soft edges). ``<id>_mask_<t>.png_sd2_<k>.png`` (the SD2 crop pasted back as a
rectangle) has no published mask of the changed pixels and is left out. Splits come from the
repository's ``splits/{train,val,test}.csv`` when passed along (else "all"); each sub-dataset and
split is listed in ``splits/<sub-dataset>_<split>.json`` with its authentic counterparts.
Assumed, not verified on the real downloads: the folder structure around the file names (every file
is found by its name, anywhere in the sources) and the 0.1 threshold for every mask.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..io import DatasetError, mask_gray
from .base import SIZE_RULE, Correction, DatasetSpec, Pair, Plan, PrepareOptions, file_stem, not_found
from .sources import SourceTree

_FAKE = re.compile(r"^(?P<id>\d+)_mask_(?P<t>bbox|segm)\.png_(?P<ps>ps_mask\.png_)?(?P<gen>sd2|sdxl|ps)"
                   r"(?:-(?P<crop>\d+))?_(?P<k>\d+)$", re.IGNORECASE)
_ORIG = re.compile(r"^(?P<id>\d+)_orig(?:_(?P<crop>\d+))?$", re.IGNORECASE)
_MASK = re.compile(r"^(?P<id>\d+)_mask_(?P<t>bbox|segm)(?:_(?P<crop>\d+))?$", re.IGNORECASE)
_PS_MASK = re.compile(r"^(?P<id>\d+)_mask_(?P<t>bbox|segm)\.png_ps_mask$", re.IGNORECASE)
THRESHOLD = 0.1 * 255
SOFT = "mask binarised at 0.1 of white (TGIF's training code)"
Key = tuple[str, str]  # (category folder, COCO image id)


def tgif_decoder() -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        return np.asarray(mask_gray(img), dtype=np.float32) > THRESHOLD

    return decode


def _category(path: str) -> str:
    return os.path.basename(os.path.dirname(path))


def _read_splits(tree: SourceTree, plan: Plan) -> dict[Key, str]:
    """(category, image id) → train/val/test from the repository's splits/*.csv, when passed along."""
    out: dict[Key, str] = {}
    for path in tree.find_files(r"^(train|val|test)\.csv$"):
        split = file_stem(path).lower()
        try:
            rows = list(csv.DictReader(io.StringIO(tree.read_listing(path, "TGIF split file"), newline="")))
        except csv.Error as err:
            raise DatasetError(f"{tree.display(path)}: not a readable CSV ({err}).") from None
        if rows and not {"category", "image_id"} <= set(rows[0]):
            plan.notes.append(f"{tree.display(path)} has no category and image_id columns; not used as a split file.")
            continue
        for row in rows:
            out[(str(row["category"]).strip(), str(row["image_id"]).strip())] = split
    return out


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    files = [p for p in tree.find_files(r"\.png$")]
    fakes: list[tuple[str, re.Match]] = []
    origs: dict[tuple[str, str, str | None], str] = {}
    masks: dict[tuple[str, str, str, str | None], str] = {}
    ps_masks: dict[tuple[str, str, str], str] = {}
    for path in files:
        stem, cat = file_stem(path), _category(path)
        if (m := _FAKE.match(stem)) is not None:
            fakes.append((path, m))
        elif (m := _PS_MASK.match(stem)) is not None:
            ps_masks[(cat, m["id"], m["t"].lower())] = path
        elif (m := _ORIG.match(stem)) is not None:
            origs[(cat, m["id"], m["crop"])] = path
        elif (m := _MASK.match(stem)) is not None:
            masks[(cat, m["id"], m["t"].lower(), m["crop"])] = path
    if not fakes:
        raise not_found(SPEC, "manipulated images named <id>_mask_<bbox|segm>.png_<sd2|sdxl|ps>[-<crop>]_<k>.png", tree)
    splits = _read_splits(tree, plan)
    decoder = tgif_decoder()
    counts: dict[str, int] = {}
    authentic: dict[str, tuple[str, str]] = {}  # output stem → (path, group)
    for path, m in sorted(fakes, key=lambda x: x[0]):
        cat, iid, kind, gen = _category(path), m["id"], m["t"].lower(), m["gen"].lower()
        crop = m["crop"]
        if crop:
            sub, gt = f"{gen}-fr", masks.get((cat, iid, kind, crop))
            want = f"{iid}_mask_{kind}_{crop}.png"
        elif m["ps"] or gen == "ps":
            sub, gt = f"{gen}-sp", ps_masks.get((cat, iid, kind))
            want = f"{iid}_mask_{kind}.png_ps_mask.png"
        else:
            plan.leave_out(tree.display(path), "SD2 crop pasted back as a rectangle: no published mask of the pixels it "
                           "changed (the -sp images spliced through the Photoshop mask are used)", documented=True)
            continue
        counts[sub] = counts.get(sub, 0) + 1
        if gt is None:
            plan.leave_out(tree.display(path), f"no mask {cat}/{want} in the sources")
            continue
        split = splits.get((cat, iid), "all")
        group = f"{sub}_{split}"
        name = f"{cat}_{file_stem(path)}".replace(" ", "_")
        plan.pairs.append(Pair(path, gt, name, decoder, mask_rule=SOFT,
                               notes=[(SOFT, name)] if not gt.endswith("_ps_mask.png") else []))
        plan.groups[name] = group
        orig = origs.get((cat, iid, crop))
        if orig is not None:
            stem = f"{cat}_{file_stem(orig)}".replace(" ", "_")
            if stem in authentic and authentic[stem][1] != group:
                stem = f"{stem}__{group}"  # the same authentic image listed in two splits: one copy each
            authentic.setdefault(stem, (orig, group))
    for stem, (path, group) in sorted(authentic.items()):
        plan.authentic.append((path, stem))
        plan.groups[stem] = group
    plan.found = {f"{k} images": v for k, v in sorted(counts.items())}
    plan.found.update({"masks": len(masks), "Photoshop masks": len(ps_masks), "authentic images": len(origs)})
    plan.corrections.append(Correction(SOFT, "the Photoshop masks have soft edges; pixels above 0.1 of white are "
                                       "manipulated, as in TGIF's training code", routine=True))
    if not splits:
        plan.notes.append("No splits/{train,val,test}.csv of the TGIF repository found: every image is in split 'all'.")
    return plan


LAYOUT = """\
  TGIF (IDLabMedia/tgif-dataset: fake images, real images and masks per generator, and the repository's splits/):
    <category>/<id>_mask_<bbox|segm>.png_<sd2|sdxl>-<crop>_<k>.png, ..._ps_mask.png_<sd2|sdxl>_<k>.png,
    ..._ps_<k>.png (fakes); <category>/<id>_orig[_<crop>].png; <category>/<id>_mask_<t>[_<crop>].png,
    <category>/<id>_mask_<t>.png_ps_mask.png (masks); splits/{train,val,test}.csv (optional)
  e.g. benco data prepare tgif TGIF-SD2 TGIF-real TGIF-masks tgif-dataset/splits --out data/TGIF"""

SPEC = DatasetSpec(
    "tgif", "TGIF (text-guided inpainting)", ("tgif-dataset",), LAYOUT,
    ("spliced images (SD2-sp, SDXL-sp, PS-sp) with the Photoshop mask; fully regenerated crops (SD2-fr, SDXL-fr) "
     "with the crop's inpainting mask; masks binarised at 0.1 of white (TGIF's training code)",
     "SD2 crops pasted back as a rectangle (no mask of the changed pixels) are left out and reported",
     "splits from splits/{train,val,test}.csv: splits/<sub-dataset>_<split>.json with their authentic images",
     SIZE_RULE),
    ("the file names follow the dataset's generation script; the folders around them (per download, per "
     "category) are not verified: every file is found by its name",
     "the 0.1 threshold is TGIF's training code's; whether every published mask has soft edges was not seen"),
    {}, "TGIF", (), collect)
