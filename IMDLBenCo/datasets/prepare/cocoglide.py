"""CocoGlide (Guillaro et al., TruFor, CVPR 2023): 512 COCO val2017 crops inpainted by GLIDE, 256x256.

Published layout (CocoGlide.zip from grip.unina.it, as its users' loaders read it)::

    real/<category>_<coco id>.png                      the authentic crops
    fake/glide_inpainting_val2017_<coco id>_up.png     the inpainted crops
    mask/<category>_<coco id>_mask.png                 single-channel 0/255 masks, white = inpainted
    table.csv                                          columns real, fake, mask, prompt (UTF-8 with BOM)

The three folders name the same sample differently, so pairs come from ``table.csv`` (its paths
relative to its own folder); without it, from the COCO image id in every name. Assumed, not verified
on the archive itself: whether the zip wraps these in a ``CocoGlide/`` folder (either is found), and
the CSV's column names (taken from loaders of the archive).
"""

from __future__ import annotations

import csv
import io
import os
import re

from ..io import DatasetError, list_images
from .base import SIZE_RULE, Correction, DatasetSpec, Pair, Plan, PrepareOptions, decode_standard, file_stem, not_found
from .sources import SourceTree

PAIRED = "paired through table.csv (the three folders name a sample differently)"
PAIRED_BY_ID = "paired by the COCO image id (no table.csv)"
_FAKE_ID = re.compile(r"val2017_(\d+)_up$", re.IGNORECASE)
_MASK_ID = re.compile(r"_(\d+)_mask$", re.IGNORECASE)
_REAL_ID = re.compile(r"_(\d+)$")


def _from_table(tree: SourceTree, table: str, plan: Plan) -> None:
    base = os.path.dirname(table)
    try:
        rows = list(csv.DictReader(io.StringIO(tree.read_listing(table, "CocoGlide's table.csv"), newline="")))
    except csv.Error as err:
        raise DatasetError(f"{tree.display(table)}: not a readable CSV ({err}).") from None
    columns = set(rows[0]) if rows else set()
    missing = [c for c in ("real", "fake", "mask") if c not in columns]
    if missing:
        raise DatasetError(f"{tree.display(table)}: columns {', '.join(missing)} missing (found: "
                           f"{', '.join(sorted(columns)) or 'none'}); expected CocoGlide's table.csv with real, fake, "
                           f"mask and prompt.")
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=2):
        where = f"{tree.display(table)} line {i}"
        paths = {}
        for col in ("fake", "mask", "real"):
            path, why = tree.resolve_listed(base, row.get(col) or "")
            if why:
                plan.leave_out(where, f"{col} {why}", error=True)
                break
            paths[col] = path
        else:
            fake, mask, real = paths["fake"], paths["mask"], paths["real"]
            name = file_stem(fake)
            if name in seen:
                plan.leave_out(where, f"lists {row['fake']} again (line {seen[name]})")
                continue
            seen[name] = i
            if not os.path.isfile(fake) or not os.path.isfile(mask):
                plan.leave_out(where, f"{row['fake'] if not os.path.isfile(fake) else row['mask']} is not on disk")
                continue
            plan.pairs.append(Pair(fake, mask, name, decode_standard, notes=[(PAIRED, f"{name} <- {row['mask']}")]))
            if os.path.isfile(real):
                plan.authentic.append((real, file_stem(real)))
            else:
                plan.leave_out(where, f"authentic image {row['real']} is not on disk")
    plan.found = {"table rows": len(rows), "tampered images": len(seen)}


def _by_id(tree: SourceTree, fake_dir: str, plan: Plan) -> None:
    parent = os.path.dirname(fake_dir)
    folders = {n.lower(): os.path.join(parent, n) for n in os.listdir(parent) if os.path.isdir(os.path.join(parent, n))}
    if "mask" not in folders:
        raise not_found(SPEC, f"the 'mask' folder next to {tree.display(fake_dir)}", tree)
    masks: dict[str, str] = {}
    for n in list_images(folders["mask"]):
        m = _MASK_ID.search(file_stem(n))
        if m:
            masks[m.group(1)] = os.path.join(folders["mask"], n)
    reals: dict[str, str] = {}
    for n in list_images(folders["real"]) if "real" in folders else []:
        m = _REAL_ID.search(file_stem(n))
        if m:
            reals[m.group(1)] = os.path.join(folders["real"], n)
    fakes = list_images(fake_dir)
    for n in fakes:
        m = _FAKE_ID.search(file_stem(n))
        path = os.path.join(fake_dir, n)
        if not m or m.group(1) not in masks:
            plan.leave_out(tree.display(path), "no mask/<category>_<id>_mask.png with this image's COCO id")
            continue
        plan.pairs.append(Pair(path, masks[m.group(1)], file_stem(n), decode_standard,
                               notes=[(PAIRED_BY_ID, f"{file_stem(n)} <- {os.path.basename(masks[m.group(1)])}")]))
        if m.group(1) in reals:
            plan.authentic.append((reals[m.group(1)], file_stem(reals[m.group(1)])))
    plan.found = {"tampered images": len(fakes), "masks": len(masks), "authentic images": len(reals)}
    plan.notes.append("No table.csv found: fake, mask and real images were paired by the COCO image id in their names.")


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    tables: list[str] = [p for p in tree.find_files(r"^table\.csv$")]
    if tables:
        if len(tables) > 1:
            plan.notes.append(f"Several table.csv files found; used {tree.display(tables[0])}.")
        _from_table(tree, tables[0], plan)
        plan.corrections.append(Correction(PAIRED, "real/, fake/ and mask/ name a sample differently "
                                           "(glide_inpainting_val2017_<id>_up.png <-> <category>_<id>_mask.png); the "
                                           "mask is written under the inpainted image's name", routine=True))
        return plan
    fake_dirs = tree.find_dirs(["fake"], lambda d: any(_FAKE_ID.search(file_stem(n)) for n in list_images(d)))
    if not fake_dirs:
        raise not_found(SPEC, "table.csv, or the folders real/, fake/ (glide_inpainting_val2017_<id>_up.png) and "
                        "mask/ of CocoGlide.zip", tree)
    _by_id(tree, fake_dirs[0], plan)
    plan.corrections.append(Correction(PAIRED_BY_ID, "matched by the COCO image id in the names", routine=True))
    return plan


LAYOUT = """\
  CocoGlide.zip (grip.unina.it, TruFor): pass the zip or the folder it extracts to
    real/<category>_<id>.png, fake/glide_inpainting_val2017_<id>_up.png, mask/<category>_<id>_mask.png, table.csv
  e.g. benco data prepare cocoglide CocoGlide.zip --out data/CocoGlide"""

SPEC = DatasetSpec(
    "cocoglide", "CocoGlide", ("coco-glide", "glide"), LAYOUT,
    ("pairs from table.csv (real, fake, mask): the three folders name a sample differently; without table.csv, "
     "by the COCO image id", "masks are 0/255, white = inpainted (read with the standard rule)", SIZE_RULE),
    ("the layout (real/, fake/, mask/, table.csv and its columns) follows loaders of CocoGlide.zip, not a copy of "
     "the archive; whether the zip wraps it in a CocoGlide/ folder does not matter (table.csv is found anywhere)",),
    {"tampered images": 512, "authentic images": 512}, "CocoGlide", (), collect)
