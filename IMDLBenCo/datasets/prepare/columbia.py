"""Columbia uncompressed image splicing (authsplcuncmp): colour-coded edge maps → binary masks."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..io import DatasetError, list_images
from .archive import ARCHIVES
from .base import SIZE_RULE, Correction, DatasetSpec, Pair, Plan, PrepareOptions, file_stem, has_images, not_found
from .sources import SourceTree, find_or_extract

COLUMBIA = "colour edge mask turned into a binary mask"


def columbia_decoder(tampered: str) -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        import cv2

        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
        r, g = rgb[..., 0], rgb[..., 1]
        # dark and light shades of one colour are one region; the JPEG edge maps blur the colours,
        # hence a margin between the two channels instead of exact values
        red = (r > 100) & (r - g > 40)
        green = (g > 100) & (g - r > 40)
        if not red.any() and not green.any():
            raise DatasetError(f"{path}: neither a red nor a green region found; expected a Columbia colour-coded "
                               f"edge mask (one camera's region red, the other's green).")
        target, other = (green, red) if tampered == "green" else (red, green)
        unknown = ~(red | green)
        if unknown.any() and target.any() and other.any():
            # pixels of neither colour (boundary band, compression fringes) join the nearer region
            to_target = cv2.distanceTransform((~target).astype(np.uint8), cv2.DIST_L2, 5)
            to_other = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 5)
            target = target | (unknown & (to_target < to_other))
        return target

    return decode


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    tif = has_images("")
    splc = find_or_extract(tree, ["4cam_splc"], [f"4cam_splc{e}" for e in ARCHIVES], tif)
    if not splc:
        raise not_found(SPEC, "the '4cam_splc' folder (spliced .tif images, with edgemask/)", tree)
    splc_dir = splc[0]
    edge = None
    for base in (splc_dir, os.path.dirname(splc_dir), os.path.dirname(os.path.dirname(splc_dir))):
        if not tree.contains(base):  # never search above what the user passed
            break
        edge = next((d for d in (os.path.join(f, x) for f, ds, _ in os.walk(base) for x in ds)
                     if os.path.basename(d).lower() == "edgemask"), None)
        if edge:
            break
    if edge is None:
        raise not_found(SPEC, "the 'edgemask' folder of colour-coded masks "
                         "(4cam_splc/edgemask/*_edgemask.jpg)", tree)
    auth = find_or_extract(tree, ["4cam_auth"], [f"4cam_auth{e}" for e in ARCHIVES], tif)
    tampered = opts.columbia_tampered or "green"
    decoder = columbia_decoder(tampered)
    mask_names = list_images(edge)
    images = list_images(splc_dir)
    authentic = [os.path.join(auth[0], n) for n in list_images(auth[0])] if auth else []
    plan.found = {"tampered images": len(images), "edge masks": len(mask_names), "authentic images": len(authentic)}
    used = set()
    ambiguous = []
    for n in images:
        stem = file_stem(n)
        cands = [m for m in mask_names if file_stem(m).lower().startswith(f"{stem.lower()}_edgemask")]
        exact = [m for m in cands if file_stem(m).lower() == f"{stem.lower()}_edgemask"]
        pick = (exact or cands or [None])[0]
        if pick is None:
            plan.leave_out(tree.display(os.path.join(splc_dir, n)), "no <name>_edgemask mask in edgemask/")
            continue
        if len(cands) > 1:
            ambiguous.append(f"{stem}: used {pick} of {', '.join(cands)}")
        used.update(cands)
        plan.pairs.append(Pair(os.path.join(splc_dir, n), os.path.join(edge, pick), stem, decoder,
                                mask_rule=f"colour edge map decoded ({tampered} = spliced)",
                                notes=[(COLUMBIA, stem)]))
    plan.corrections.insert(0, Correction(
        COLUMBIA, f"Columbia marks one camera's region red and the other's green (light shades near the boundary); "
        f"the {tampered} region is the spliced one (white), the other is authentic (black), and pixels of neither "
        f"colour join the nearer region", routine=True))
    if ambiguous:
        plan.corrections.append(Correction("one of several masks for an image chosen", "several files in edgemask/ "
                                           "start with the image's name; the exact <name>_edgemask file is used",
                                           ambiguous))
    for m in mask_names:
        if m not in used:
            plan.leave_out(tree.display(os.path.join(edge, m)), "edge mask without a spliced image")
    plan.authentic = [(p, file_stem(p)) for p in authentic]
    if not auth:
        plan.notes.append("No 4cam_auth/ folder found: no authentic images written.")
    return plan


LAYOUT = """\
  Columbia Uncompressed Image Splicing Detection Evaluation Dataset (authsplcuncmp):
    4cam_splc/*.tif, 4cam_splc/edgemask/*_edgemask.jpg, 4cam_auth/*.tif
    (folders or their archives, e.g. 4cam_splc.tar.bz2 and 4cam_auth.tar.bz2)
  e.g. benco data prepare columbia 4cam_splc.tar.bz2 4cam_auth.tar.bz2 --out data/Columbia"""

SPEC = DatasetSpec(
    "columbia", "Columbia (uncompressed, colour)", ("columbia-uncompressed", "authsplcuncmp"), LAYOUT,
    ("edgemask/*_edgemask.jpg colour maps turned into binary masks: green (dark and light) = spliced, "
     "red = authentic, other pixels join the nearer region (--columbia-tampered red to swap)", SIZE_RULE),
    ("which colour marks the spliced region follows photoholmes and IML-ViT's users (green); the dataset's "
     "README was not available to confirm it",
     "the colour thresholds were tested on generated maps, not on the real JPEG edge masks"),
    {"tampered images": 180, "authentic images": 183}, "Columbia", ("columbia_tampered",), collect)
