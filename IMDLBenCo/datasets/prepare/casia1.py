"""CASIA v1.0: the "Modified Tp" images with the casia1groundtruth masks (Pham et al. 2019)."""

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
    subdir,
)
from .sources import SourceTree, find_or_extract

CASIA1_EXTRA = {"Sp_D_NRN_A_cha0011_sec0011_0542"}


def category_root(start: str) -> str | None:
    """The shallowest folder under ``start`` with both a ``CM`` and an ``Sp`` sub-folder (CASIA v1)."""
    for folder, dirs, _files in os.walk(start):
        dirs.sort()
        if subdir(folder, "CM") and subdir(folder, "Sp"):
            return folder
    return None


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    modified = find_or_extract(tree, ["Modified Tp"], ["Modified Tp.zip"])
    tp_root = next((r for r in map(category_root, modified) if r), None)
    if tp_root is None:
        tp_root = next((d for d in tree.find_dirs(["Tp"], lambda d: bool(subdir(d, "CM") and subdir(d, "Sp")))
                        if "groundtruth" not in d.lower()), None)
    if tp_root is None:
        original = find_or_extract(tree, ["Original Tp"], ["Original Tp.zip"])
        tp_root = next((r for r in map(category_root, original) if r), None)
        if tp_root is not None:
            plan.notes.append("Used 'Original Tp' (the uncorrected names): images whose name differs from their "
                              "ground truth's are matched by their tampered-image ID and renamed.")
    if tp_root is None:
        raise not_found(SPEC, "the 'Modified Tp' folder (from 'Modified Tp.zip' in the CASIA 1.0 dataset "
                         "download linked from namtpham/casia1groundtruth), holding Tp/CM and Tp/Sp", tree)
    gt_dirs = find_or_extract(tree, ["CASIA 1.0 groundtruth"], ["CASIA 1.0 groundtruth.zip"])
    gt_root = next((r for r in map(category_root, gt_dirs) if r), None)
    if gt_root is None:
        raise not_found(SPEC, "the 'CASIA 1.0 groundtruth' folder (CM/ and Sp/ with *_gt.png; the zip of that "
                         "name in a clone of github.com/namtpham/casia1groundtruth)", tree)
    au_dirs = find_or_extract(tree, ["Au"], ["Au.zip"], has_images("Au_"))

    images: dict[str, str] = {}
    masks: dict[str, str] = {}
    for cat in ("CM", "Sp"):
        for n in list_images(subdir(tp_root, cat)):
            images[file_stem(n)] = os.path.join(subdir(tp_root, cat), n)
        for n in list_images(subdir(gt_root, cat)):
            masks[strip_suffix(file_stem(n), "_gt")] = os.path.join(subdir(gt_root, cat), n)
    authentic = [os.path.join(au_dirs[0], n) for n in images_in(au_dirs[0], "Au_")] if au_dirs else []
    plan.found = {"tampered images": len(images), "masks": len(masks), "authentic images": len(authentic)}
    if not au_dirs:
        plan.notes.append("No Au/ folder found (Au.zip of the CASIA 1.0 download): no authentic images written.")

    pairs, renamed, lonely_img, lonely_mask = pair_by_name_then_id(images, masks)
    plan.corrections.append(Correction(
        RENAMED, "the image's name differs from its mask's; matched by the tampered-image ID (the trailing number) "
        "and given the ground truth's corrected name, as casia1groundtruth's FileNameCorrection.xlsx renames them"))
    old_name = {new: old for old, new in renamed}
    for img, mask, name in pairs:
        notes = [(RENAMED, f"{old_name[name]} -> {name}")] if name in old_name else []
        plan.pairs.append(Pair(img, mask, name, decode_standard, notes=notes))
    for stem, path in sorted(lonely_img.items()):
        if stem in CASIA1_EXTRA:
            plan.leave_out(tree.display(path), "documented erratum: extra image without a mask "
                           "(IML-Dataset-Corrections and the tutorial remove it)", documented=True)
        else:
            plan.leave_out(tree.display(path), "no mask with this name or tampered-image ID in the ground truth "
                           "(not in the documented errata)")
    for path in sorted(lonely_mask.values()):
        plan.leave_out(tree.display(path), "mask without a tampered image (not in the documented errata)")
    plan.authentic = [(p, file_stem(p)) for p in authentic]
    return plan


LAYOUT = """\
  CASIA 1.0 dataset (linked from github.com/namtpham/casia1groundtruth; extract the .rar yourself):
    Modified Tp/Tp/CM/*.jpg, Modified Tp/Tp/Sp/*.jpg   (or the 'Modified Tp.zip' itself)
    Au/Au_*.jpg                                        (or 'Au.zip'; optional)
  CASIA 1.0 groundtruth/CM/*_gt.png, CASIA 1.0 groundtruth/Sp/*_gt.png
                                                       (or a clone of casia1groundtruth with its zip)
  e.g. benco data prepare casia1 "CASIA 1.0 dataset" casia1groundtruth --out data/CASIA1.0"""

SPEC = DatasetSpec(
    "casia1", "CASIA v1.0", ("casiav1", "casia1.0", "casia-v1"), LAYOUT,
    ("921 tampered images, 920 masks (casia1groundtruth): Sp_D_NRN_A_cha0011_sec0011_0542.jpg has no mask; it "
     "is left out and reported",
     "file-name errors of the official release: 'Modified Tp' carries the corrected names; an image whose "
     "name still differs from its mask's is matched by its tampered-image ID and renamed",
     "masks (RGB 0/255) re-encoded as single-channel 0/255 PNG named like the image", SIZE_RULE),
    ("FileNameCorrection.xlsx (binary) was not read: renames are inferred from the tampered-image ID",
     "the counts 921/920/800 are from the documentation, not from a copy of the archive"),
    {"tampered images": 921, "masks": 920, "authentic images": 800}, "CASIA1.0", (), collect)
