"""CASIA v2.0: the corrected release (SunnyHaze) or Pham's ground truth (namtpham/casia2groundtruth)."""

from __future__ import annotations

import os

from ..io import list_images
from .base import (
    RENAMED,
    SIZE_RULE,
    Correction,
    DatasetSpec,
    Pair,
    Plan,
    PrepareOptions,
    decode_standard,
    file_stem,
    has_images,
    images_in,
    not_found,
    pair_by_name_then_id,
    strip_suffix,
)
from .sources import SourceTree

CASIA2_MISALIGNED = {
    "Tp_D_CNN_M_N_sec00011_cha00085_11227", "Tp_D_CRN_S_N_ani10191_ani10190_12437",
    "Tp_D_CRN_S_N_nat10130_pla00049_11524", "Tp_D_NND_M_B_nat20098_nat20073_01602",
    "Tp_D_NRN_M_N_nat10134_nat00095_11912", "Tp_D_NRN_M_N_nat10134_nat10124_11913",
    "Tp_S_CRN_S_N_art00059_art00059_10508", "Tp_S_NND_S_N_sec20064_sec20064_01654",
    "Tp_S_NNN_S_N_art20077_art20077_01883", "Tp_S_NNN_S_N_ind20037_ind20037_01778",
    "Tp_S_NNN_S_N_sec00012_sec00012_11230", "Tp_S_NNN_S_N_sec00074_sec00074_00751",
    "Tp_S_NRD_S_N_arc20079_arc20079_01719", "Tp_S_NRD_S_N_pla20071_pla20071_01971",
    "Tp_S_NRN_S_B_ind10002_ind10002_20010", "Tp_S_NRN_S_N_art20077_art20077_02316",
    "Tp_S_NRN_S_N_pla20080_pla20080_01980",
}
CASIA2_NO_MASK = {"Tp_D_NRD_S_N_cha10002_cha10001_20094", "Tp_D_NRN_M_N_cha00085_ani10104_10029"}


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    tp = tree.find_dirs(["Tp"], has_images("Tp_"))
    if not tp:
        raise not_found(SPEC, "a 'Tp' folder of tampered images named Tp_*", tree)
    corrected = tree.find_dirs(["Gt"], lambda d: any(file_stem(n).lower().endswith("_gt") for n in list_images(d)))
    pham = tree.find_dirs(["CASIA 2 Groundtruth", "CASIA2 Groundtruth", "CASIA 2.0 Groundtruth", "CASIA2.0_Groundtruth"],
                          has_images("Tp_"))
    if corrected:
        gt = corrected[0]
        if pham:
            plan.notes.append(f"Both the corrected ground truth ({tree.display(gt)}) and Pham's ({tree.display(pham[0])}) "
                              f"were found; the corrected one is used.")
    elif pham:
        gt = pham[0]
        plan.notes.append("Pham's original ground truth is used: its 17 misaligned masks are set aside (the corrected "
                          "ground truth, SunnyHaze/CASIA2.0-Corrected-Groundtruth, fixes them).")
    else:
        raise not_found(SPEC, "a ground-truth folder: 'Gt' (corrected release) or 'CASIA 2 Groundtruth' "
                         "(namtpham/casia2groundtruth) with Tp_*_gt.png masks", tree)
    au = tree.find_dirs(["Au"], has_images("Au_"))
    images = {file_stem(n): os.path.join(tp[0], n) for n in images_in(tp[0], "Tp_")}
    masks = {strip_suffix(file_stem(n), "_gt"): os.path.join(gt, n) for n in images_in(gt, "Tp_")}
    authentic = [os.path.join(au[0], n) for n in images_in(au[0], "Au_")] if au else []
    plan.found = {"tampered images": len(images), "masks": len(masks), "authentic images": len(authentic)}
    if not au:
        plan.notes.append("No Au/ folder found: no authentic images written.")
    pairs, renamed, lonely_img, lonely_mask = pair_by_name_then_id(images, masks)
    plan.corrections.append(Correction(
        RENAMED, "the image's name differs from its mask's (casia2groundtruth renamed 99 misclassified images, "
        "Tp_S_ <-> Tp_D_); matched by the tampered-image ID and given the ground truth's name"))
    old_name = {new: old for old, new in renamed}
    for img, mask, name in pairs:
        note = ""
        if name in CASIA2_MISALIGNED:
            note = ("documented erratum: one of the 17 masks misaligned in Pham's ground truth; the corrected "
                    "ground truth (SunnyHaze/CASIA2.0-Corrected-Groundtruth) fixes it")
        elif name in CASIA2_NO_MASK:
            note = "documented erratum: cropped from an authentic image, so no mask could be derived (cannotDetect.txt)"
        notes = [(RENAMED, f"{old_name[name]} -> {name}")] if name in old_name else []
        plan.pairs.append(Pair(img, mask, name, decode_standard, errata_note=note, notes=notes))
    for stem, path in sorted(lonely_img.items()):
        documented = stem in CASIA2_NO_MASK
        plan.leave_out(tree.display(path), "documented erratum: no mask could be derived (cannotDetect.txt)"
                       if documented else "no mask with this name or tampered-image ID", documented=documented)
    for path in sorted(lonely_mask.values()):
        plan.leave_out(tree.display(path), "mask without a tampered image")
    plan.authentic = [(p, file_stem(p)) for p in authentic]
    return plan


LAYOUT = """\
  the corrected release (SunnyHaze/CASIA2.0-Corrected-Groundtruth, a ZIP: pass it or its folder):
    Au/Au_*.jpg|bmp, Tp/Tp_*.jpg|tif, Gt/Tp_*_gt.png
  or Pham's: CASIA2.0_revised/{Au,Tp} and 'CASIA 2 Groundtruth'/Tp_*_gt.png (namtpham/casia2groundtruth)
  e.g. benco data prepare casia2 CASIA2.0.zip --out data/CASIA2.0"""

SPEC = DatasetSpec(
    "casia2", "CASIA v2.0", ("casiav2", "casia2.0", "casia-v2"), LAYOUT,
    ("the corrected ground truth (Gt/) is preferred over Pham's (CASIA 2 Groundtruth/)",
     "with Pham's ground truth the 17 documented misaligned masks are set aside (set_aside/) and reported",
     "images renamed by casia2groundtruth (99 Tp_S_/Tp_D_ reclassifications) are matched by ID and renamed",
     "the 2 images cropped from authentic ones (cannotDetect.txt) are left out if their mask is missing or empty",
     SIZE_RULE),
    ("the layout of the corrected ZIP is taken from its README (Au/, Tp/, Gt/), not from a downloaded copy",
     "duplicate authentic images (pastebin list) are not removed"),
    {"tampered images": 5123, "masks": 5123, "authentic images": 7491}, "CASIA2.0", (), collect)
