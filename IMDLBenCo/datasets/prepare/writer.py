"""Writing a preparer's plan: copies, masks, the manifest, the summary, and the final check.

:func:`prepare_dataset` owns the output folder: it refuses a folder it may not write into, removes
on failure or interruption only what the run wrote (never a folder it did not create), and marks the
output complete as its very last write (rule 4 of :mod:`.base`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image

from ...errors import UsageError
from ..check import check_dataset, check_pairs, pair_folders
from ..io import NEGATIVE, DatasetError
from ..utils import write_json_dataset
from .archive import ExtractBudget
from .base import (
    MANIFEST_FILE,
    OUTPUTS,
    SUMMARY_FILE,
    TMP_PREFIX,
    Correction,
    DatasetSpec,
    Pair,
    Plan,
    PrepareOptions,
    PrepareResult,
    file_stem,
    inside,
)
from .registry import FLAGS, PREPARERS, get_spec
from .sources import SourceTree

__all__ = ["prepare_dataset", "format_summary", "verify_image"]

#: how many files of one correction the printed summary names (the JSON summary names all)
_SHOWN = 20
_T = TypeVar("_T")
_R = TypeVar("_R")


def verify_image(path: str) -> tuple[Image.Image | None, str]:
    """``(image, "")`` with the image decoded in full, or ``(None, reason)``.

    The declared size is checked against Pillow's decompression-bomb limit before decoding; a PNG is
    also verified chunk by chunk (CRCs, the closing IEND), which catches a file cut short after its
    last pixel row that decoding alone lets through.
    """
    try:
        img = Image.open(path)
        limit = Image.MAX_IMAGE_PIXELS
        if limit and img.width * img.height > limit:
            return None, (f"declares {img.width}x{img.height} pixels, more than the {limit:,} Pillow decodes safely "
                          f"(not an image of this dataset, or a decompression bomb)")
        img.load()
        if img.format == "PNG":
            with Image.open(path) as again:
                again.verify()
    except FileNotFoundError:
        return None, "file not found"
    except Exception as err:  # UnidentifiedImageError, truncated data, decoder errors, bad CRC
        return None, f"cannot be decoded as an image ({type(err).__name__}: {err})"
    return img, ""


def _map(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """``[fn(x) for x in items]`` in a thread pool (Pillow decodes and encodes without the GIL).

    An exception or Ctrl-C stops it at once: queued items are cancelled, running ones finish.
    """
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures: list[Future] = [pool.submit(fn, x) for x in items]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy(src: str, dst: str) -> str:
    """Copy ``src`` to ``dst``; the sha256 of the bytes (the same for both)."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def _save_png(img: Image.Image, dst: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    with open(dst, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def _f1_maps(mask: np.ndarray, diff: np.ndarray) -> float:
    inter = float(np.count_nonzero(mask & diff))
    return 2 * inter / max(float(mask.sum() + diff.sum()), 1.0)


def _repair_size(mask: np.ndarray, image: Image.Image, original_path: str | None) -> tuple[np.ndarray | None, str]:
    """Fit a mask of the wrong size to its image using where the image differs from its original.

    Candidates: the mask resized (nearest) to the image, and every window of the image's size inside
    the mask (when the mask is larger). The one whose pixels best match the changed pixels (F1) wins,
    if that F1 is at least 0.5. Returns ``(mask or None, description)``.
    """
    import cv2

    if not original_path:
        return None, "no original image to align the mask with"
    orig, why = verify_image(original_path)
    if orig is None:
        return None, f"original {os.path.basename(original_path)} unreadable ({why})"
    if orig.size != image.size:
        return None, f"original {os.path.basename(original_path)} is {orig.size[0]}x{orig.size[1]}, not the image's size"
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    b = np.asarray(orig.convert("RGB"), dtype=np.int16)
    diff = np.abs(a - b).max(axis=2) > 8
    if not diff.any():
        return None, "the image does not differ from its original"
    h, w = diff.shape
    mh, mw = mask.shape
    resized = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    best = (_f1_maps(resized, diff), resized, f"resized from {mw}x{mh} to {w}x{h}")
    resize_f1 = best[0]
    if mh >= h and mw >= w:
        m32 = mask.astype(np.float32)
        inter = cv2.matchTemplate(m32, diff.astype(np.float32), cv2.TM_CCORR)  # overlap per window
        integral = cv2.integral(mask.astype(np.uint8))
        inside = integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]
        f1 = 2 * inter / np.maximum(inside + diff.sum(), 1)
        y, x = np.unravel_index(int(np.argmax(f1)), f1.shape)
        if f1[y, x] > best[0]:
            best = (float(f1[y, x]), mask[y:y + h, x:x + w].copy(), f"cropped {w}x{h} at x={x}, y={y} from {mw}x{mh}")
    score, fitted, how = best
    if score < 0.5:
        return None, f"no resize or crop of the {mw}x{mh} mask matches the changed pixels (best F1 {score:.2f})"
    return fitted, f"{how} (F1 {score:.2f} with the pixels changed from the original; resizing: {resize_f1:.2f})"


@dataclass
class _Outcome:
    name: str
    ok: bool
    rows: list[tuple[str, str, str, str, str]]  # manifest rows
    corrections: list[tuple[str, str, bool]]  # (kind, detail, routine)
    reason: str = ""
    documented: bool = False
    error: bool = False  # a broken or refused source file (not a dataset erratum)
    file: str = ""  # the source file the reason is about


def _mask_conversion(img: Image.Image, path: str) -> str | None:
    """How the source mask differs from a single-channel 0/255 PNG, or None."""
    parts = []
    if img.mode != "L":
        parts.append(f"mode {img.mode}")
    else:
        values = np.unique(np.asarray(img))
        if not set(values.tolist()) <= {0, 255}:
            parts.append(f"{len(values)} grey levels")
    if not path.lower().endswith(".png"):
        parts.append(os.path.splitext(path)[1].lower() or "no extension")
    return ", ".join(parts) or None


def _write_pair(p: Pair, out: str, long_side: int | None, display: Callable[[str], str]) -> _Outcome:
    img_src, mask_src = display(p.image), display(p.mask)

    def set_aside(reason: str) -> _Outcome:
        documented = bool(p.errata_note)
        if p.errata_note:
            reason = f"{reason}; {p.errata_note}"
        rows = []
        for src, sub in ((p.image, "Tp"), (p.mask, "Gt")):
            if os.path.isfile(src):  # named by the pair's unique output name, with the file's own extension
                dst = os.path.join(out, "set_aside", sub, p.name + os.path.splitext(src)[1])
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                sha = _copy(src, dst)
                rel = os.path.relpath(dst, out).replace(os.sep, "/")
                rows.append((rel, display(src), sha, sha, f"set aside: {reason}"))
        return _Outcome(p.name, False, rows, [], reason, documented)

    def broken(path: str, what: str, why: str) -> _Outcome:
        # not copied anywhere: the file is not an image (or not a whole one); the manifest names it
        return _Outcome(p.name, False, [], [], f"{what} {why}", error=True, file=display(path))

    image, why = verify_image(p.image)
    if image is None:
        return broken(p.image, "image", why)
    mask_img, why = verify_image(p.mask)
    if mask_img is None:
        return broken(p.mask, "mask", why)
    try:
        mask = p.decode(mask_img, p.mask)
    except DatasetError as err:
        return set_aside(f"unclear mask: {str(err).split(': ', 1)[-1]}")
    notes: list[tuple[str, str, bool]] = [(kind, detail, False) for kind, detail in p.notes]
    mask_changes = [p.mask_rule] if p.mask_rule else []
    if mask.shape != (image.height, image.width):
        size = f"image {image.width}x{image.height}, mask {mask.shape[1]}x{mask.shape[0]}"
        if not p.repair:
            return set_aside(f"size mismatch ({size})")
        fitted, how = _repair_size(mask, image, p.original)
        if fitted is None:
            return set_aside(f"size mismatch ({size}) not repaired: {how}")
        mask = fitted
        notes.append((_REPAIRED, f"{p.name}: {how}", False))
        mask_changes.append(f"size repaired: {how}")
    if not mask.any():
        return set_aside("empty mask (no manipulated pixel)")
    conversion = None if p.synthetic_mask else _mask_conversion(mask_img, p.mask)
    if conversion:
        notes.append((_REENCODED, f"{p.name} ({conversion})", True))
        mask_changes.append(f"re-encoded as single-channel 0/255 PNG (was {conversion})")
    mask_out = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    rows = []
    if long_side is not None and max(image.size) > long_side:
        scale = long_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        # the mask by area then > 0.5, so that thin regions neither vanish nor grow as with nearest
        small = np.asarray(mask_out.resize(size, Image.Resampling.BOX)) > 127
        if not small.any():
            return set_aside(f"the manipulated region vanishes when resized to a long side of {long_side}")
        mask_out = Image.fromarray(small.astype(np.uint8) * 255, "L")
        mask_changes.append(f"resized to {size[0]}x{size[1]} (area, > 0.5)")
        notes.append((_RESIZED, f"{p.name}: {image.width}x{image.height} -> {size[0]}x{size[1]}", True))
        small_image = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        sha = _save_png(small_image, os.path.join(out, "Tp", p.name + ".png"))
        rows.append((f"Tp/{p.name}.png", img_src, sha, _sha256_file(p.image),
                     f"resized to {size[0]}x{size[1]} (bicubic), saved as PNG"))
    else:
        ext = os.path.splitext(p.image)[1]
        sha = _copy(p.image, os.path.join(out, "Tp", p.name + ext))
        renamed = f"renamed (was {file_stem(p.image)})" if file_stem(p.image) != p.name else ""
        rows.append((f"Tp/{p.name}{ext}", img_src, sha, sha, renamed))
    sha = _save_png(mask_out, os.path.join(out, "Gt", p.name + ".png"))
    rows.append((f"Gt/{p.name}.png", mask_src, sha, _sha256_file(p.mask), "; ".join(mask_changes)))
    return _Outcome(p.name, True, rows, notes)


def _write_authentic(src: str, dst: str, display: Callable[[str], str]) -> tuple[tuple[str, ...] | None, str]:
    """Verify then copy one authentic image: ``(manifest row, "")`` or ``(None, why it is broken)``."""
    img, why = verify_image(src)
    if img is None:
        return None, why
    img.close()
    sha = _copy(src, dst)
    return (f"Au/{os.path.basename(dst)}", display(src), sha, sha, ""), ""


# ---------------------------------------------------------------------------------------------
# the output folder


def _tmp_dirs(out: str) -> list[str]:
    return sorted(os.path.join(out, n) for n in os.listdir(out)
                  if n.startswith(TMP_PREFIX) and os.path.isdir(os.path.join(out, n)))


def _summary_status(out: str) -> str | None:
    """The status in OUT's summary: "complete", "incomplete", "unreadable", or None when there is none."""
    path = os.path.join(out, SUMMARY_FILE)
    if not os.path.isfile(path):
        return None
    try:
        if os.path.getsize(path) > (64 << 20):
            return "unreadable"
        with open(path, encoding="utf-8") as f:
            status = json.load(f).get("status")
    except (OSError, ValueError, AttributeError):
        return "unreadable"
    return status if status == "complete" else "incomplete"


def _check_out(out: str, sources: Sequence[str], force: bool) -> None:
    """Refuse an OUT this run may not write into; writes nothing."""
    for src in sources:
        if os.path.isdir(src) and inside(out, src):
            raise UsageError(f"--out {out} lies inside the SOURCE {src}; choose a folder outside what you downloaded.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: a file of that name exists; choose a folder.")
    if os.path.isdir(out) and os.listdir(out):
        status = _summary_status(out)
        ours = status is not None or bool(_tmp_dirs(out))
        if not force or not ours:
            if not ours:
                hint = "it is not a `benco data prepare` output, so nothing in it is deleted"
            elif status == "complete":
                hint = "pass --force to replace the previous `benco data prepare` output there"
            else:
                hint = ("it holds an incomplete `benco data prepare` output (a run that was stopped); pass --force "
                        "to replace it")
            raise UsageError(f"--out {out}: folder exists and is not empty; choose a new folder or {hint}.")


def _remove_outputs(out: str) -> None:
    """Remove what a prepare run writes in OUT (and only that): its outputs and its temporary folders."""
    if not os.path.isdir(out):
        return
    for path in [os.path.join(out, n) for n in OUTPUTS + (_SUMMARY_TMP,)] + _tmp_dirs(out):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


def _missing_dirs(path: str) -> list[str]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _start_out(out: str) -> None:
    for sub in ("Tp", "Gt"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    # written first, so that --force and `benco data check` recognise a run that stopped half-way
    with open(os.path.join(out, SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump({"status": "incomplete"}, f)


_SUMMARY_TMP = f".{SUMMARY_FILE}.writing"


def _write_summary_last(out: str, payload: dict[str, object]) -> None:
    """Replace the "incomplete" summary by the final one in one step (rename), so that a kill leaves either."""
    tmp = os.path.join(out, _SUMMARY_TMP)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(out, SUMMARY_FILE))


def _check_options(spec: DatasetSpec, opts: PrepareOptions) -> None:
    for attr, flag in FLAGS.items():
        if getattr(opts, attr) is not None and attr not in spec.options:
            users = [s.name for s in PREPARERS.values() if attr in s.options]
            raise UsageError(f"{flag} applies to {', '.join(users)} only, not to {spec.name}.")
    choices = {"mismatch": ("repair", "set-aside"), "columbia_tampered": ("green", "red"),
               "korus_collateral": ("tampered", "authentic"), "nist_polarity": ("nist", "inverted"),
               "autosplice_quality": ("100", "90", "75"), "opensdid_entire": ("full-mask", "leave-out")}
    for attr, allowed in choices.items():
        value = getattr(opts, attr)
        if value is not None and value not in allowed:
            raise UsageError(f"{FLAGS[attr]} {value!r}: expected one of {', '.join(allowed)}.")
    numbers = (("long_side", "--long-side", 16, "a side of at least 16 pixels (e.g. 1024)"),
               ("workers", "--workers", 1, "a number of threads, at least 1"),
               ("max_extract_bytes", "--max-extract-bytes", 1, "a size of at least 1 byte (e.g. 64G)"))
    for attr, flag, least, words in numbers:
        value = getattr(opts, attr)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise UsageError(f"{flag} {value!r}: expected {words}.")


def prepare_dataset(name: str, sources: Sequence[str], out: str, options: PrepareOptions | None = None) -> PrepareResult:
    """Turn what the user downloaded for dataset ``name`` into a checked ManiDataset folder ``out``.

    Raises :class:`~IMDLBenCo.errors.DatasetError` (input not as expected) or
    :class:`~IMDLBenCo.errors.UsageError` (options); the message names what was expected. On any
    failure or interruption, what the run wrote is removed, and ``out`` itself only if the run created it.
    """
    opts = options or PrepareOptions()
    spec = get_spec(name)
    _check_options(spec, opts)
    if not sources:
        raise UsageError(f"no SOURCE given. Expected input for `benco data prepare {spec.name}`:\n{spec.layout}")
    out = os.path.abspath(str(out))
    _check_out(out, sources, opts.force)
    created = _missing_dirs(out)  # removed again (when empty) if the run fails
    tmp = None
    try:
        _remove_outputs(out)  # --force: the previous output, stale temporary folders of killed runs
        _start_out(out)
        tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out)
        return _run(spec, sources, out, tmp, opts)
    except BaseException:
        _remove_outputs(out)
        for folder in created:  # deepest first; stops at the first that is not empty (not ours alone)
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _admit(plan: Plan, tree: SourceTree) -> None:
    """Rule 1, once more before any file is read: every file of the plan must resolve inside the sources."""
    refused: list[dict[str, object]] = []

    def ok(path: str | None, what: str) -> bool:
        if path is None:
            return True
        why = tree.admit(path)
        if why:
            refused.append({"file": tree.display(path), "reason": f"{what} {why}", "documented": False, "error": True})
        return not why

    kept = []
    for pair in plan.pairs:
        if ok(pair.image, "image") & ok(pair.mask, "mask"):
            if pair.original is not None and tree.admit(pair.original):
                ok(pair.original, "original")
                pair.original = None  # the size repair then says it has no original
            kept.append(pair)
    plan.pairs = kept
    plan.authentic = [(src, stem) for src, stem in plan.authentic if ok(src, "authentic image")]
    plan.left_out += refused


def _run(spec: DatasetSpec, sources: Sequence[str], out: str, tmp: str, opts: PrepareOptions) -> PrepareResult:
    """Collect, write, check; ``prepare_dataset`` owns the output folder and the temporary one."""
    budget = ExtractBudget(opts.max_extract_bytes) if opts.max_extract_bytes else ExtractBudget()
    tree = SourceTree(sources, tmp, budget)
    plan = spec.collect(tree, opts)
    _admit(plan, tree)
    seen: dict[str, str] = {}
    unique = []
    for pair in plan.pairs:
        if pair.name in seen:  # two files would be written under one name: keep the first, say so
            plan.leave_out(tree.display(pair.image), f"same output name as {seen[pair.name]}")
            continue
        seen[pair.name] = tree.display(pair.image)
        unique.append(pair)
    plan.pairs = unique
    workers = opts.workers or min(4, (os.cpu_count() or 2))
    outcomes = _map(lambda p: _write_pair(p, out, opts.long_side, tree.display), plan.pairs, workers)
    rows: list[tuple[str, str, str, str, str]] = []
    kinds: dict[str, Correction] = {c.kind: c for c in plan.corrections}
    order = [c.kind for c in plan.corrections]
    written_names = set()
    for pair, o in zip(plan.pairs, outcomes):
        rows += o.rows
        if o.error:
            plan.left_out.append({"file": o.file, "reason": o.reason, "documented": False, "error": True})
            continue
        if not o.ok:
            plan.left_out.append({"file": tree.display(pair.image), "reason": o.reason, "documented": o.documented,
                                  "copied_to": "set_aside/"})
            continue
        written_names.add(o.name)
        for kind, detail, routine in o.corrections:
            if kind not in kinds:
                kinds[kind] = Correction(kind, _ROUTINE_REASONS.get(kind, ""), [], routine)
                order.append(kind)
            kinds[kind].files.append(detail)
    if plan.authentic:
        os.makedirs(os.path.join(out, "Au"), exist_ok=True)
    targets, taken = [], set()
    au_group: dict[str, str] = {}
    for i, (src, stem) in enumerate(plan.authentic):
        ext = os.path.splitext(src)[1]
        group = plan.groups.get(stem)
        if stem + ext in taken:  # a second file with this stem: keep it apart, say so
            stem = f"{stem}_{i}"
        taken.add(stem + ext)
        targets.append((src, os.path.join(out, "Au", stem + ext)))
        if group:
            au_group[targets[-1][1]] = group
    au_paths = []
    for (src, dst), (row, why) in zip(targets, _map(lambda t: _write_authentic(t[0], t[1], tree.display),
                                                    targets, workers)):
        if row is not None:
            rows.append(row)
            au_paths.append(dst)
        else:
            plan.left_out.append({"file": tree.display(src), "reason": f"authentic image {why}", "documented": False,
                                  "error": True})
    for item in plan.left_out:
        if "copied_to" not in item:
            label = "left out (error)" if item.get("error") else "left out"
            rows.append(("", str(item["file"]), "", "", f"{label}: {item['reason']}"))
    _write_manifest(out, rows)
    errors = [x for x in plan.left_out if x.get("error")]
    written = {"pairs": len(written_names), "authentic images": len(au_paths),
               "left out": len(plan.left_out), "errors": len(errors)}
    if au_paths:
        pairs, _ = pair_folders(os.path.join(out, "Tp"), os.path.join(out, "Gt"))
        write_json_dataset([(p, NEGATIVE) for p in sorted(au_paths)], os.path.join(out, "authentic.json"), relative=True)
        write_json_dataset(pairs + [(p, NEGATIVE) for p in sorted(au_paths)],
                           os.path.join(out, "with_authentic.json"), relative=True)
    splits = _write_splits(out, plan.groups, written_names, au_paths, au_group)
    shutil.rmtree(tmp, ignore_errors=True)  # extracted archives: not part of the dataset
    # the final check reads every written file again: pairs and the authentic images
    report = check_dataset(out, workers=opts.workers, prepare_marker=False)
    report.problems += check_pairs([(p, NEGATIVE) for p in sorted(au_paths)], workers=opts.workers)
    result = PrepareResult(
        dataset=spec.name, title=spec.title, out=out, sources=[str(x) for x in sources],
        found=plan.found, expected=dict(spec.expected), written=written, left_out=plan.left_out,
        corrections=[kinds[k] for k in order if kinds[k].files], notes=plan.notes,
        unverified=list(spec.unverified), check=report, splits=splits,
    )
    payload = result.to_json()
    payload["manifest_sha256"] = _sha256_file(os.path.join(out, MANIFEST_FILE))
    _write_summary_last(out, payload)  # the completion marker: the run's last write
    return result


_REENCODED = "mask re-encoded as single-channel 0/255 PNG"
_RESIZED = "resized (--long-side)"
_REPAIRED = "mask size repaired (--mismatch repair)"
_ROUTINE_REASONS = {
    _REENCODED: "the framework's mask format; values binarised with the dataset's rule",
    _RESIZED: "image bicubic (saved as PNG), mask by area then > 0.5",
    _REPAIRED: "aligned with the pixels that differ from the original (COVERAGE erratum)",
}


def _write_splits(out: str, groups: dict[str, str], written: set, au_paths: Sequence[str],
                  au_group: dict[str, str]) -> dict[str, int]:
    """``OUT/splits/<split>.json``: a JsonDataset per split (its pairs and its authentic images as Negative)."""
    if not groups:
        return {}
    pairs, _ = pair_folders(os.path.join(out, "Tp"), os.path.join(out, "Gt"))
    entries: dict[str, list[tuple[str, str]]] = {}
    for tp, gt in pairs:
        name = file_stem(tp)
        if name in written and groups.get(name):
            entries.setdefault(groups[name], []).append((tp, gt))
    for path in sorted(au_paths):
        if au_group.get(path):
            entries.setdefault(au_group[path], []).append((path, NEGATIVE))
    os.makedirs(os.path.join(out, "splits"), exist_ok=True)
    for group, items in sorted(entries.items()):
        write_json_dataset(items, os.path.join(out, "splits", f"{group}.json"), relative=True)
    return {g: len(v) for g, v in sorted(entries.items())}


def _write_manifest(out: str, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
    with open(os.path.join(out, MANIFEST_FILE), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["output", "source", "sha256", "source_sha256", "correction"])
        w.writerows(rows)


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in d.items())


def format_summary(result: PrepareResult) -> str:
    """The printed summary: counts, every error, left-out file and correction, unverified points, check."""
    lines = [f"{result.title} -> {result.out}", f"  found: {_counts(result.found)}"]
    differs = {k: v for k, v in result.expected.items() if result.found.get(k) not in (None, v)}
    if differs:
        lines.append(f"  the documentation says: {_counts(differs)} (a partial download or another release?)")
    lines.append(f"  wrote: {result.written['pairs']} pairs (Tp/ + Gt/), {result.written['authentic images']} "
                 f"authentic images (Au/)")
    errors = result.errors
    if errors:
        lines.append(f"  errors ({len(errors)}): source files that could not be used (broken or refused), left out:")
        for item in errors[:_SHOWN]:
            lines.append(f"    - {item['file']}: {item['reason']}")
        if len(errors) > _SHOWN:
            lines.append(f"    ... {len(errors) - _SHOWN} more in {SUMMARY_FILE}")
    others = [x for x in result.left_out if not x.get("error")]
    if others:
        lines.append(f"  left out ({len(others)}):")
        for item in others[:_SHOWN]:
            where = " -> set_aside/" if item.get("copied_to") else ""
            lines.append(f"    - {item['file']}{where}: {item['reason']}")
        if len(others) > _SHOWN:
            lines.append(f"    ... {len(others) - _SHOWN} more in {SUMMARY_FILE}")
    if result.corrections:
        lines.append("  corrections:")
    for c in result.corrections:
        if not c.files:
            continue
        lines.append(f"    - {c.kind} [{len(c.files)}]: {c.reason}" if c.reason else f"    - {c.kind} [{len(c.files)}]")
        if not c.routine:
            lines += [f"        {f}" for f in c.files[:_SHOWN]]
            if len(c.files) > _SHOWN:
                lines.append(f"        ... {len(c.files) - _SHOWN} more in {SUMMARY_FILE}")
    if result.splits:
        lines.append("  splits (JsonDataset files, authentic images as Negative): "
                     + ", ".join(f"splits/{k}.json ({v})" for k, v in result.splits.items()))
    for note in result.notes:
        lines.append(f"  note: {note}")
    for item in result.unverified:
        lines.append(f"  not verified: {item}")
    lines.append(f"  check: {result.check.summary()}")
    for problem in result.check.errors[:_SHOWN]:
        lines.append(f"    {problem.line(result.out)}")
    lines.append(f"  manifest: {os.path.join(result.out, MANIFEST_FILE)}; "
                 f"summary: {os.path.join(result.out, SUMMARY_FILE)}")
    return "\n".join(lines)
