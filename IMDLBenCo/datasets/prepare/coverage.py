"""COVERAGE (Wen et al. 2016): copy-move with similar-but-genuine objects; size-mismatched masks repaired."""

from __future__ import annotations

import os
import re

from ..io import list_images
from .base import DatasetSpec, Pair, Plan, PrepareOptions, decode_standard, file_stem, not_found, subdir
from .sources import SourceTree

COVERAGE_MISMATCHED = {"41", "48", "55", "56", "57", "58", "59", "61", "95"}


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    tampered_rx = re.compile(r"^(\d+)t$", re.IGNORECASE)
    image_dirs = tree.find_dirs(["image"], lambda d: any(tampered_rx.match(file_stem(n)) for n in list_images(d)))
    if not image_dirs:
        raise not_found(SPEC, "the 'image' folder with {i}.tif originals and {i}t.tif tampered images", tree)
    image_dir = image_dirs[0]
    mask_dir = subdir(os.path.dirname(image_dir), "mask")
    if mask_dir is None:
        raise not_found(SPEC, f"the 'mask' folder next to {tree.display(image_dir)} with {{i}}forged.tif "
                         "masks", tree)
    mode = opts.mismatch or "repair"
    names = list_images(image_dir)
    by_stem = {file_stem(n).lower(): os.path.join(image_dir, n) for n in names}
    masks = {file_stem(n).lower(): os.path.join(mask_dir, n) for n in list_images(mask_dir)}
    tampered = sorted((m.group(1), n) for n in names if (m := tampered_rx.match(file_stem(n))))
    originals = sorted((int(s), p) for s, p in by_stem.items() if s.isdigit())
    plan.found = {"tampered images": len(tampered), "forged masks": sum(k.endswith("forged") for k in masks),
                  "authentic images": len(originals)}
    for i, n in sorted(tampered, key=lambda t: int(t[0])):
        mask = masks.get(f"{i}forged")
        if mask is None:
            plan.leave_out(tree.display(os.path.join(image_dir, n)), f"no mask/{i}forged.tif")
            continue
        note = ("documented erratum: one of the 9 COVERAGE pairs whose masks differ in size from the image "
                "(IML-Dataset-Corrections)") if i in COVERAGE_MISMATCHED else ""
        plan.pairs.append(Pair(os.path.join(image_dir, n), mask, file_stem(n), decode_standard, errata_note=note,
                                original=by_stem.get(i), repair=mode == "repair"))
    plan.authentic = [(p, file_stem(p)) for _, p in originals]
    plan.notes.append("Ground truth = mask/{i}forged.tif (the pasted copy); the copy and paste masks are not used.")
    return plan


LAYOUT = """\
  COVERAGE (github.com/wenbihan/coverage points to the download):
    image/{i}.tif (originals), image/{i}t.tif (tampered), mask/{i}forged.tif (+ copy/paste masks), label/*.mat
  e.g. benco data prepare coverage COVERAGE --out data/COVERAGE [--mismatch repair|set-aside]"""

SPEC = DatasetSpec(
    "coverage", "COVERAGE", ("cover",), LAYOUT,
    ("ground truth = mask/{i}forged.tif",
     "9 pairs (41, 48, 55, 56, 57, 58, 59, 61, 95) have masks of another size: --mismatch repair (default) "
     "aligns each mask with the pixels that differ from the original {i}.tif (resize when both sides "
     "scale alike, else the crop window that fits best) and reports how; --mismatch set-aside keeps them "
     "apart in set_aside/"),
    ("the repair was checked on real COVERAGE pairs (F1 0.72-0.97 against the "
     "changed pixels); SunnyHaze's hand-corrected masks were not available to compare",),
    {"tampered images": 100, "authentic images": 100}, "COVERAGE", ("mismatch",), collect)
