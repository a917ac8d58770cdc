"""Instruction-guided edits with a mask per edit: MagicBrush (Zhang et al., NeurIPS 2023) and GIM-style triplets.

Two layouts are read; every edit becomes a Tp/Gt pair (the edited image and its mask) and every
first-turn source image an authentic image:

1. MagicBrush's release: ``<split>/edit_sessions.json`` (``{img_id: [turn, ...]}``, each turn with
   ``input``, ``mask``, ``output``, ``instruction``) and ``<split>/images/<img_id>/`` holding
   ``<img_id>-input.png``, ``<img_id>-mask<k>.png``, ``<img_id>-output<k>.png``. The input of turn
   k > 1 is the output of turn k - 1 (generated), so only turn 1's input is authentic.
2. Per-sample folders (MagicBrush exported from its Hugging Face release, and GIM-style datasets that
   keep one folder per edit): ``<split>/<sample>/source_img.*``, ``mask_img.*``, ``target_img.*``
   (``instructions.txt`` optional).

Masks: a mask with transparency marks the edited region transparent (DALL-E 2's editor, which
MagicBrush used); an opaque mask is read white = edited. Each pair's manifest row says which rule
read it. Assumed, not verified on the real downloads: the transparency convention, the per-sample
folder names (from a third-party exporter) and GIM's folder names (not seen: only the triplet form
is supported).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..io import DatasetError, decode_mask, is_image_file, list_images
from .base import SIZE_RULE, Correction, DatasetSpec, Pair, Plan, PrepareOptions, file_stem, not_found
from .sources import SourceTree

ALPHA_RULE = "transparent = edited (the mask's alpha channel)"
WHITE_RULE = "white = edited"
TURNS = "later turns edit the previous turn's output"
_SPLITS = ("train", "dev", "val", "valid", "validation", "test")


def edit_mask_decoder() -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            alpha = np.asarray(img.convert("RGBA"))[..., 3]
            if alpha.min() < 128 <= alpha.max():  # both opaque and transparent pixels: the editor's erased region
                return alpha < 128
        return decode_mask(img.convert("RGB") if img.mode in ("RGBA", "LA", "PA") else img, path).astype(bool)

    return decode


def _rule(path: str) -> str:
    try:
        with Image.open(path) as img:
            transparent = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    except Exception:  # the writer reports an unreadable mask
        return ""
    return ALPHA_RULE if transparent else WHITE_RULE


def _split_of(path: str) -> str:
    parts = [p.lower() for p in path.replace("\\", "/").split("/")]
    return next((p for p in reversed(parts) if p in _SPLITS), "all")


def _sessions(tree: SourceTree, sessions_file: str, plan: Plan, decoder) -> int:
    base = os.path.dirname(sessions_file)
    split = _split_of(tree.display(sessions_file))
    try:
        data = json.loads(tree.read_listing(sessions_file, "MagicBrush's edit_sessions.json"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{tree.display(sessions_file)}: not valid JSON ({err}).") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{tree.display(sessions_file)}: expected an object {{img_id: [turns]}}, found "
                           f"{type(data).__name__}.")
    n = 0
    for img_id, turns in sorted(data.items()):
        if not isinstance(turns, list):
            plan.leave_out(f"{tree.display(sessions_file)} [{img_id}]", "not a list of turns", error=True)
            continue
        folder = os.path.join(base, "images", str(img_id))
        for k, turn in enumerate(turns, start=1):
            where = f"{tree.display(sessions_file)} [{img_id}] turn {k}"
            if not isinstance(turn, dict):
                plan.leave_out(where, "not an object with input, mask and output", error=True)
                continue
            paths: dict[str, str | None] = {}
            for field in ("input", "mask", "output"):
                path, why = tree.resolve_listed(folder, str(turn.get(field) or ""))
                if why:
                    plan.leave_out(where, f"{field} {why}", error=why != "empty path")
                    break
                paths[field] = path
            else:
                n += 1
                name = f"{split}_{img_id}_turn{k}"
                missing = [f for f in ("mask", "output") if not os.path.isfile(paths[f] or "")]
                if missing:
                    plan.leave_out(where, f"{', '.join(turn.get(f) for f in missing)} not on disk")
                    continue
                notes = [(TURNS, name)] if k > 1 else []
                plan.pairs.append(Pair(paths["output"], paths["mask"], name, decoder,
                                       mask_rule=_rule(paths["mask"]), notes=notes))
                plan.groups[name] = split
                if k == 1 and os.path.isfile(paths["input"] or ""):
                    stem = f"{split}_{img_id}_source"
                    plan.authentic.append((paths["input"], stem))
                    plan.groups[stem] = split
    return n


def _named(folder: str, base: str) -> str | None:
    hits = [n for n in list_images(folder) if file_stem(n).lower() == base]
    return os.path.join(folder, hits[0]) if hits else None


def _sample_folders(tree: SourceTree, plan: Plan, decoder) -> int:
    n = 0
    for folder in tree.walk_dirs():
        target = _named(folder, "target_img")
        if target is None:
            continue
        n += 1
        split = _split_of(tree.display(folder))
        sample = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(folder))
        name = f"{split}_{sample}"
        mask, source = _named(folder, "mask_img"), _named(folder, "source_img")
        if mask is None:
            plan.leave_out(tree.display(target), "no mask_img next to target_img")
            continue
        plan.pairs.append(Pair(target, mask, name, decoder, mask_rule=_rule(mask)))
        plan.groups[name] = split
        if source is not None:
            plan.authentic.append((source, f"{name}_source"))
            plan.groups[f"{name}_source"] = split
    return n


def collect(tree: SourceTree, opts: PrepareOptions) -> Plan:
    plan = Plan()
    decoder = edit_mask_decoder()
    sessions: list[str] = tree.find_files(r"^edit_sessions\.json$")
    edits = sum(_sessions(tree, f, plan, decoder) for f in sessions)
    if not sessions:
        edits = _sample_folders(tree, plan, decoder)
    if not edits and not plan.left_out:
        raise not_found(SPEC, "MagicBrush's <split>/edit_sessions.json with <split>/images/<img_id>/, or "
                        "per-sample folders holding source_img, mask_img and target_img", tree)
    plan.found = {"edits": edits, "authentic (first-turn source) images": len(plan.authentic)}
    plan.corrections.append(Correction(TURNS, "turn k > 1 edits turn k - 1's output: that input is generated, so only "
                                       "turn 1's source image is written to Au/", routine=True))
    if any(is_image_file(p.mask) and p.mask_rule == ALPHA_RULE for p in plan.pairs):
        plan.notes.append("Masks with transparency were read as DALL-E 2's editor writes them: transparent = edited.")
    return plan


LAYOUT = """\
  MagicBrush release: <split>/edit_sessions.json and <split>/images/<img_id>/<img_id>-{input,maskK,outputK}.png
  or per-sample folders (MagicBrush exported from Hugging Face, GIM-style triplets):
    <split>/<sample>/source_img.png, mask_img.png, target_img.png [instructions.txt]
  e.g. benco data prepare magicbrush MagicBrush/test --out data/MagicBrush_test"""

SPEC = DatasetSpec(
    "magicbrush", "MagicBrush / instruction-guided edits", ("instruct-edit", "instruction-edit", "gim"), LAYOUT,
    ("every edit -> Tp (edited image) + Gt (its mask); turn 1's source -> Au (later turns' inputs are generated)",
     "masks with transparency: transparent = edited; opaque masks: white = edited (each pair's rule in the manifest)",
     "one split per folder (train, dev, test): splits/<split>.json", SIZE_RULE),
    ("the transparency convention of MagicBrush's masks follows DALL-E 2's editor, not a check of the files",
     "the per-sample folder names follow a third-party exporter; GIM's own layout was not seen (only the triplet "
     "form is read)"),
    {}, "MagicBrush", (), collect)
