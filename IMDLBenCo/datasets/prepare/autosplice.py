"""AutoSplice (Jia et al., CVPR workshops 2023): DALL-E 2 edits of real image-caption pairs.

Published layout (the download is by request; photoholmes' loader reads it so)::

    Authentic/*.jpg                  2,273 authentic images
    Forged_JPEG100/<id>_<k>.jpg      3,621 manipulated images, JPEG quality 100 (also Forged_JPEG90, _JPEG75)
    Mask/<id>_mask.png               one mask per source image, shared by its forged versions

A forged image's mask is ``Mask/<id>_mask.png`` with ``<id>`` its name before the first ``_``;
any non-zero mask value is manipulated (photoholmes' reading). ``--autosplice-quality`` picks the
JPEG version (100, 90, 75). Assumed, not verified on the real download: the folder and file names
(from photoholmes), and that a globally manipulated image has an all-white mask.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..io import list_images, mask_gray
from .base import SIZE_RULE, Correction, DatasetSpec, Pair, Plan, PrepareOptions, file_stem, not_found, subdir
from .sources import SourceTree

SHARED = "mask shared by the forged versions of one image"
NONZERO = "any non-zero mask value = manipulated"


def nonzero_decoder() -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        return np.asarray(mask_gray(img), dtype=np.float32) > 0

    return decode


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    quality = opts.autosplice_quality or "100"
    wanted = f"Forged_JPEG{quality}"
    forged_dirs = tree.find_dirs([wanted], lambda d: bool(list_images(d)))
    if not forged_dirs:
        others = [os.path.basename(d) for d in tree.find_dirs(["Forged_JPEG100", "Forged_JPEG90", "Forged_JPEG75"])]
        hint = f" (found {', '.join(sorted(set(others)))}: pass --autosplice-quality)" if others else ""
        raise not_found(SPEC, f"the '{wanted}' folder of forged images{hint}", tree)
    forged = forged_dirs[0]
    root = os.path.dirname(forged)
    mask_dir = subdir(root, "Mask")
    if mask_dir is None:
        raise not_found(SPEC, f"the 'Mask' folder next to {tree.display(forged)}", tree)
    masks: dict[str, str] = {}
    for n in list_images(mask_dir):
        stem = file_stem(n)
        if stem.lower().endswith("_mask"):
            masks[stem[: -len("_mask")]] = os.path.join(mask_dir, n)
    auth_dir = subdir(root, "Authentic")
    authentic = [os.path.join(auth_dir, n) for n in list_images(auth_dir)] if auth_dir else []
    images = list_images(forged)
    decoder = nonzero_decoder()
    used = set()
    for n in images:
        key = file_stem(n).split("_")[0]
        path = os.path.join(forged, n)
        if key not in masks:
            plan.leave_out(tree.display(path), f"no Mask/{key}_mask.png for this image")
            continue
        used.add(key)
        plan.pairs.append(Pair(path, masks[key], file_stem(n), decoder, mask_rule=NONZERO,
                               notes=[(SHARED, f"{file_stem(n)} <- {os.path.basename(masks[key])}")]))
    for key, path in sorted(masks.items()):
        if key not in used:
            plan.leave_out(tree.display(path), f"mask without a forged image in {wanted}/")
    plan.authentic = [(p, file_stem(p)) for p in authentic]
    plan.found = {"tampered images": len(images), "masks": len(masks), "authentic images": len(authentic)}
    plan.corrections.append(Correction(SHARED, f"the forged images <id>_<k>.jpg of one source share Mask/<id>_mask.png; "
                                       f"each gets its own copy under its name ({wanted}, JPEG quality {quality})",
                                       routine=True))
    if not auth_dir:
        plan.notes.append("No Authentic/ folder found: no authentic images written.")
    return plan


LAYOUT = """\
  AutoSplice (by request from its authors; pass the folder or its archive):
    Authentic/*.jpg, Forged_JPEG100/<id>_<k>.jpg (and Forged_JPEG90, Forged_JPEG75), Mask/<id>_mask.png
  e.g. benco data prepare autosplice AutoSplice --out data/AutoSplice100 [--autosplice-quality 100|90|75]"""

SPEC = DatasetSpec(
    "autosplice", "AutoSplice", ("auto-splice",), LAYOUT,
    ("forged <id>_<k>.jpg paired with Mask/<id>_mask.png (one mask per source image, shared by its versions)",
     "any non-zero mask value = manipulated (photoholmes reads the masks so)",
     "--autosplice-quality chooses the JPEG version (100 default, 90, 75)", SIZE_RULE),
    ("the folder and file names follow photoholmes' AutoSplice loader, not a copy of the download",
     "globally manipulated images are expected to come with an all-white mask"),
    {"tampered images": 3621, "authentic images": 2273}, "AutoSplice", ("autosplice_quality",), collect)
