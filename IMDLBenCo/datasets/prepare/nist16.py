"""NIST16 (NC2016_Test0613): pairs from the reference CSV, black-on-white masks inverted."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..io import DatasetError, mask_gray
from .base import SIZE_RULE, Correction, DatasetSpec, Pair, Plan, PrepareOptions, file_stem, not_found
from .sources import SourceTree

INVERTED = "mask inverted (white = manipulated)"
NIST_PAIRED = "paired through the reference CSV"


def nist_decoder(polarity: str) -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        gray = np.asarray(mask_gray(img), dtype=np.float32)
        # NIST reference masks are black (0) where manipulated, on white
        return gray < 127.5 if polarity == "nist" else gray > 127.5

    return decode


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    refs = [p for p in tree.find_files(r"^NC2016.*-manipulation-ref\.csv$")]
    if not refs:
        raise not_found(SPEC, "reference/manipulation/NC2016-manipulation-ref.csv (NC2016_Test0613)", tree)
    ref = refs[0]
    if len(refs) > 1:
        plan.notes.append(f"Several reference files found; used {tree.display(ref)} (not "
                          f"{', '.join(tree.display(r) for r in refs[1:])}).")
    root = os.path.dirname(os.path.dirname(os.path.dirname(ref)))  # <root>/reference/manipulation/<csv>
    try:
        reader = csv.DictReader(io.StringIO(tree.read_listing(ref, "the reference CSV"), newline=""), delimiter="|")
        rows = list(reader)
    except csv.Error as err:
        raise DatasetError(f"{tree.display(ref)}: not a readable reference CSV ({err}); expected NIST's "
                           f"pipe-separated NC2016-manipulation-ref.csv.") from None
    columns = reader.fieldnames or []
    needed = ("ProbeFileName", "ProbeMaskFileName", "IsTarget")
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DatasetError(f"{tree.display(ref)}: columns {', '.join(missing)} missing (found: {', '.join(columns[:12])}...); "
                           f"expected NIST's pipe-separated reference file with {', '.join(needed)}.")
    polarity = opts.nist_polarity or "nist"
    decoder = nist_decoder(polarity)
    seen: dict[str, int] = {}
    duplicates, targets, non_targets = [], 0, 0
    for i, row in enumerate(rows, start=2):
        probe = (row.get("ProbeFileName") or "").strip()
        if not probe:
            continue
        if probe in seen:
            duplicates.append(f"{probe} (CSV lines {seen[probe]} and {i})")
            continue
        seen[probe] = i
        where = f"{tree.display(ref)} line {i}: {probe}"
        target = (row.get("IsTarget") or "").strip().upper() == "Y"
        targets += target
        non_targets += not target
        path, why = tree.resolve_listed(root, probe)  # rule 1: a listed path stays inside the source
        if path is None:
            plan.leave_out(where, f"ProbeFileName {why}", error=True)
            continue
        if not os.path.isfile(path):
            plan.leave_out(where, "listed in the reference CSV but not found")
            continue
        if not target:
            plan.authentic.append((path, file_stem(probe)))
            continue
        mask_rel = (row.get("ProbeMaskFileName") or "").strip()
        mask, why = tree.resolve_listed(root, mask_rel) if mask_rel else (None, "")
        if why:
            plan.leave_out(where, f"ProbeMaskFileName {why}", error=True)
            continue
        if mask is None or not os.path.isfile(mask):
            plan.leave_out(tree.display(path), f"manipulated (IsTarget=Y) but its mask {mask_rel or '(empty)'} is "
                           f"not on disk")
            continue
        notes = [(NIST_PAIRED, f"{file_stem(probe)} <- {os.path.basename(mask_rel)}")]
        if polarity == "nist":
            notes.append((INVERTED, file_stem(probe)))
        plan.pairs.append(Pair(path, mask, file_stem(probe), decoder, notes=notes,
                               mask_rule="inverted (NIST: black = manipulated)" if polarity == "nist" else ""))
    plan.found = {"manipulated probes (IsTarget=Y)": targets, "other probes (IsTarget=N)": non_targets,
                  "CSV rows": len(rows)}
    plan.corrections.append(Correction(
        INVERTED, "NIST reference masks are black where manipulated; ours are white where manipulated", routine=True))
    plan.corrections.append(Correction(
        NIST_PAIRED, "probe and mask names differ (NC2016_xxxx.jpg <-> reference/manipulation/mask/NC2016_yyyy.png); "
        "the mask is written under the probe's name", routine=True))
    if duplicates:
        plan.corrections.append(Correction("duplicate CSV row ignored", "a probe listed twice is written once",
                                           duplicates))
    if plan.authentic:
        plan.notes.append(f"{len(plan.authentic)} probe(s) with IsTarget=N written to Au/ (IMDL-BenCo's index lists 0 "
                          f"authentic images for NIST16; they are in with_authentic.json only).")
    if not opts.long_side:
        plan.notes.append("The documentation advises resizing NIST16 to a long side of 1024 (--long-side 1024).")
    return plan


LAYOUT = """\
  NC2016_Test0613 (NIST MFC, after registration):
    reference/manipulation/NC2016-manipulation-ref.csv, probe/NC2016_*.jpg, reference/manipulation/mask/*.png
  e.g. benco data prepare nist16 NC2016_Test0613 --out data/NIST16_1024 --long-side 1024"""

SPEC = DatasetSpec(
    "nist16", "NIST16 (NC2016)", ("nist", "nc2016", "nist2016"), LAYOUT,
    ("pairs from reference/manipulation/NC2016-manipulation-ref.csv (IsTarget=Y; 564 documented)",
     "masks inverted: NIST marks manipulated pixels black",
     "optional --long-side 1024 as the documentation advises (image bicubic, mask by area then > 0.5; "
     "resized images are saved as PNG)", SIZE_RULE),
    ("the CSV columns and paths follow NIST's MediScore examples, not a copy of NC2016_Test0613",
     "IsTarget=N probes are taken as authentic",
     "pixels darker than 127.5 count as manipulated (NIST's scorer treats every non-white pixel so)"),
    {"manipulated probes (IsTarget=Y)": 564}, "NIST16", ("nist_polarity",), collect)
