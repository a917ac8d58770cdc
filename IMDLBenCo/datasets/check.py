"""``benco data check`` and ``benco data json``: find bad pairs before training; folders → JSON.

:func:`check_dataset` reads every image and mask of a ManiDataset folder, JsonDataset file or
BalancedDataset file (in a thread pool: Pillow decodes without holding the GIL) and returns a
:class:`CheckReport` listing per file what is wrong. Originals are never modified.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import UsageError
from .io import (
    MASK_THRESHOLD,
    NEGATIVE,
    DatasetError,
    check_hint,
    decode_mask,
    list_images,
    mask_gray,
    pair_by_stem,
    try_open_image,
)
from .utils import detect_format, read_balanced_entries, read_json_pairs

__all__ = ["Problem", "CheckReport", "check_dataset", "check_pairs", "mani_structure", "json_structure",
           "raise_for_structure", "pair_folders", "prepare_status", "PREPARE_SUMMARY_FILE"]

ERROR, WARNING = "error", "warning"

#: the summary ``benco data prepare`` writes into its output folder: ``"status": "incomplete"`` from its
#: first write, replaced by the full summary with ``"status": "complete"`` as the run's very last write
PREPARE_SUMMARY_FILE = "prepare_summary.json"
#: what else marks a folder as written by ``benco data prepare`` (its manifest, its temporary folders)
_PREPARE_MANIFEST = "manifest.csv"
_PREPARE_MANIFEST_HEADER = "output,source,sha256,source_sha256,correction"
_PREPARE_TMP_PREFIX = ".prepare-"


@dataclass
class Problem:
    severity: str  # "error" (the pair is unusable) or "warning" (usable, but look at it)
    kind: str  # short category, e.g. "size mismatch"
    path: str  # the file concerned
    detail: str

    def line(self, root: str = "") -> str:
        """The problem as one line; paths relative to ``root`` when it is a folder (a JSON file's
        entries are shown resolved, as the reader opens them)."""
        relative = root and os.path.isdir(root) and os.path.isabs(self.path) == os.path.isabs(root)
        shown = os.path.relpath(self.path, root) if relative else self.path
        return f"{self.severity.upper():7s} {self.kind}: {shown}: {self.detail}"


@dataclass
class CheckReport:
    path: str
    pairs: list[tuple[str, str]] = field(default_factory=list)  # every pair that was read
    good: list[tuple[str, str]] = field(default_factory=list)  # pairs without errors
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def counts(self, severity: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            if p.severity == severity:
                out[p.kind] = out.get(p.kind, 0) + 1
        return out

    def summary(self) -> str:
        def fmt(c: dict[str, int]) -> str:
            return " (" + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) + ")" if c else ""

        n_err, n_warn = len(self.errors), len(self.warnings)
        return (
            f"{self.path}: {len(self.pairs)} pairs read, {len(self.good)} good; "
            f"{n_err} error(s){fmt(self.counts(ERROR))}, {n_warn} warning(s){fmt(self.counts(WARNING))}"
        )


def pair_folders(image_dir: str, mask_dir: str | None) -> tuple[list[tuple[str, str]], list[Problem]]:
    """Pairs of paths from an image folder and a mask folder, by stem; problems for the rest."""
    images = list_images(image_dir)
    masks = list_images(mask_dir) if mask_dir else []
    pairs, lonely_images, lonely_masks, duplicates = pair_by_stem(images, masks)
    problems = [
        Problem(ERROR, "missing mask", os.path.join(image_dir, n), f"no mask with this stem in {mask_dir}")
        for n in lonely_images
    ]
    problems += [
        Problem(ERROR, "mask without image", os.path.join(mask_dir, n), f"no image with this stem in {image_dir}")
        for n in lonely_masks
    ]
    for stem, names in sorted(duplicates.items()):
        for n in names:
            folder = image_dir if n in images else mask_dir
            others = ", ".join(x for x in names if x != n)
            problems.append(Problem(ERROR, "duplicate stem", os.path.join(folder, n), f"stem {stem!r} is also used by {others}"))
    return [(os.path.join(image_dir, i), os.path.join(mask_dir, m)) for i, m in pairs], problems


def mani_structure(path: str, notes: list[str] | None = None) -> tuple[list[tuple[str, str]], list[Problem]]:
    """The pairs of a ManiDataset folder (``Tp/`` and ``Gt/`` paired by stem) and the structural
    problems (missing masks, masks without an image, duplicate stems). The one implementation
    behind :class:`~IMDLBenCo.datasets.ManiDataset` and ``benco data check``."""
    if not os.path.isdir(path):
        raise DatasetError(
            f"{path}: not a folder. A ManiDataset is a folder with Tp/ (images) and Gt/ (masks); "
            f"a JSON file is a JsonDataset or BalancedDataset."
        )
    tp, gt = os.path.join(path, "Tp"), os.path.join(path, "Gt")
    for sub in (tp, gt):
        if not os.path.isdir(sub):
            raise DatasetError(f"{sub}: folder missing. A ManiDataset folder holds Tp/ (images) and Gt/ (masks with the same stems).")
    pairs, problems = pair_folders(tp, gt)
    if notes is not None:
        au = os.path.join(path, "Au")
        if os.path.isdir(au):
            n_au = len(list_images(au))
            notes.append(
                f"Au/ holds {n_au} authentic images; ManiDataset reads only Tp/+Gt/ (pass include_authentic=True, "
                f"or list them as Negative with `benco data json {tp} {gt} --authentic {au} -o OUT.json`)"
            )
        others = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and d not in ("Tp", "Gt", "Au"))
        if others:
            notes.append(f"sub-folders not read by ManiDataset: {', '.join(others)}")
    return pairs, problems


def json_structure(path: str, check_files: bool = True) -> tuple[list[tuple[str, str]], list[Problem]]:
    """The pairs a JsonDataset file lists (relative paths resolved against its folder) and the
    structural problems (listed files that do not exist, an image listed twice). The one
    implementation behind :class:`~IMDLBenCo.datasets.JsonDataset` and ``benco data check``."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    usable = []
    for i, (tp, gt) in enumerate(read_json_pairs(path)):
        missing = [p for p in (tp, gt) if check_files and p != NEGATIVE and not os.path.isfile(p)]
        for p in missing:
            kind = "missing image" if p == tp else "missing mask"
            problems.append(Problem(ERROR, kind, p, f"listed in entry {i} of {path} but not found"))
        if tp in seen:
            problems.append(Problem(ERROR, "duplicate entry", tp, f"entries {seen[tp]} and {i} list the same image"))
            continue
        seen[tp] = i
        if not missing:
            usable.append((tp, gt))
    return usable, problems


def raise_for_structure(path: str, problems: Sequence[Problem]) -> None:
    """One :class:`DatasetError` listing the structural errors of the dataset at ``path``."""
    errors = [p for p in problems if p.severity == ERROR]
    if not errors:
        return
    by_kind: dict[str, list[Problem]] = {}
    for p in errors:
        by_kind.setdefault(p.kind, []).append(p)
    parts = []
    for kind, items in by_kind.items():
        shown = ", ".join(os.path.basename(p.path) if os.path.isdir(path) else p.path for p in items[:5])
        more = f", ... ({len(items) - 5} more)" if len(items) > 5 else ""
        parts.append(f"{len(items)} {_KIND_WORDS.get(kind, kind)}: {shown}{more} ({items[0].detail})")
    raise DatasetError(f"{path}: " + "; ".join(parts) + ". " + check_hint(path))


#: how raise_for_structure names each kind of structural problem
_KIND_WORDS = {
    "missing mask": "image(s) without a mask in Gt/",
    "mask without image": "mask(s) without an image in Tp/",
    "duplicate stem": "file(s) sharing a stem with another file",
    "missing image": "listed image(s) that do not exist",
    "duplicate entry": "image(s) listed twice",
}


def _structure(path: str, notes: list[str]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """All pairs a dataset lists, and the structural problems (missing files, duplicates)."""
    fmt = detect_format(path)
    if fmt == "ManiDataset":
        return mani_structure(path, notes)
    if fmt == "JsonDataset":
        return json_structure(path)
    if fmt == "ShardDataset":  # benco data pack: checked when written, checksummed on every read
        raise DatasetError(f"{path}: shards (benco data pack) hold no image files to check; each stored image and "
                           f"mask was read back when packed, and every read verifies its checksum. Check the dataset "
                           f"they were packed from (its path is in {path}/shards.json, \"source\").")
    # BalancedDataset: every sub-dataset
    pairs, problems = [], []
    for _name, sub in read_balanced_entries(path):
        try:
            sub_pairs, sub_problems = _structure(sub, notes)
        except DatasetError as err:
            problems.append(Problem(ERROR, "bad sub-dataset", sub, str(err)))
            continue
        pairs += sub_pairs
        problems += sub_problems
    return pairs, problems


def _short(path: str) -> str:
    """``Gt/x.png``: enough of a path to find the file next to the one a line names."""
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


def _check_pair(pair: tuple[str, str]) -> list[Problem]:
    """Read one pair completely and list what is wrong with it."""
    tp, gt = pair
    problems: list[Problem] = []
    image, reason = try_open_image(tp)
    if image is None:
        problems.append(Problem(ERROR, "unreadable image", tp, reason))
    if gt == NEGATIVE:
        return problems
    mask, reason = try_open_image(gt)
    if mask is None:
        problems.append(Problem(ERROR, "unreadable mask", gt, reason))
        return problems
    if image is not None and image.size != mask.size:
        problems.append(Problem(
            ERROR, "size mismatch", tp,
            f"image is {image.size[0]}x{image.size[1]} (WxH) but its mask {_short(gt)} is {mask.size[0]}x{mask.size[1]}",
        ))
    try:
        binary = decode_mask(mask, gt)
    except DatasetError as err:
        problems.append(Problem(ERROR, "unclear mask", gt, str(err).split(": ", 1)[-1].split(" Run `benco")[0]))
        return problems
    gray = np.asarray(mask_gray(mask), dtype=np.float32)
    grey_fraction = float(np.mean((gray > 0.5) & (gray < 254.5))) if gray.size else 0.0
    if grey_fraction > 0 and float(gray.max()) > MASK_THRESHOLD:
        problems.append(Problem(
            WARNING, "non-binary mask", gt,
            f"{grey_fraction:.2%} of pixels are neither black nor white (mode {mask.mode}); "
            f"they are read as manipulated when above {MASK_THRESHOLD} on the 8-bit scale",
        ))
    elif gray.max() > 0 and float(gray.max()) <= MASK_THRESHOLD:
        problems.append(Problem(
            WARNING, "two-valued mask", gt,
            f"values 0 and {int(np.asarray(mask).max())} (mode {mask.mode}); read with the non-zero value as "
            f"manipulated (IMDL-BenCo would read this mask as empty)",
        ))
    if not binary.any():
        problems.append(Problem(
            ERROR, "empty mask", gt,
            f"no manipulated pixel, yet {os.path.basename(tp)} is listed as tampered; "
            f'list it with mask "Negative" if it is authentic',
        ))
    return problems


def _check_pair_headers(pair: tuple[str, str], max_pixels: int | None = None) -> list[Problem]:
    """The cheap part of :func:`_check_pair`: files exist, are images, sizes agree and stay within
    ``max_pixels`` (headers only)."""
    import warnings

    from .io import too_large

    tp, gt = pair
    sizes = []
    for path, what in ((tp, "image"), (gt, "mask")):
        if path == NEGATIVE:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(path)  # reads the header only
            with img:
                reason = too_large(img, max_pixels)
                if reason:
                    return [Problem(ERROR, f"oversized {what}", path, reason)]
                sizes.append(img.size)
        except FileNotFoundError:
            return [Problem(ERROR, f"missing {what}", path, "file not found")]
        except Exception as err:  # UnidentifiedImageError and friends
            return [Problem(ERROR, f"unreadable {what}", path, f"cannot be read as an image ({type(err).__name__}: {err})")]
    if len(sizes) == 2 and sizes[0] != sizes[1]:
        (iw, ih), (mw, mh) = sizes
        return [Problem(ERROR, "size mismatch", tp,
                        f"image is {iw}x{ih} (WxH) but its mask {_short(gt)} is {mw}x{mh}")]
    return []


def _per_pair(pairs: Sequence[tuple[str, str]], quick: bool, workers: int | None,
              max_pixels: int | None = None) -> list[list[Problem]]:
    import functools

    workers = workers or min(16, (os.cpu_count() or 2) * 2)
    check = functools.partial(_check_pair_headers, max_pixels=max_pixels) if quick else _check_pair
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without holding the GIL
        return list(pool.map(check, pairs))


def check_pairs(pairs: Sequence[tuple[str, str]], quick: bool = False, workers: int | None = None,
                max_pixels: int | None = None) -> list[Problem]:
    """The problems of every pair, read in a thread pool.

    ``quick=True`` reads only the file headers (existence, format, image/mask sizes), which is
    what the scripts run before training or testing; the full check also decodes every file
    (truncation) and reads the mask values (non-binary, two-valued, unclear, empty).
    """
    return [p for problems in _per_pair(pairs, quick, workers, max_pixels) for p in problems]


def _is_prepare_manifest(path: str) -> bool:
    """True for a ``manifest.csv`` with the header ``benco data prepare`` writes (not any user's manifest)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline(200).strip() == _PREPARE_MANIFEST_HEADER
    except (OSError, UnicodeDecodeError):
        return False


def prepare_status(folder: str) -> Problem | None:
    """An error when ``folder`` was written by ``benco data prepare`` and that run did not finish.

    A prepare output is recognised by its summary, its manifest or a leftover ``.prepare-*``
    temporary folder; it is complete only when the summary parses and says ``"status": "complete"``.
    """
    if not os.path.isdir(folder):
        return None
    summary = os.path.join(folder, PREPARE_SUMMARY_FILE)
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    leftovers = sorted(n for n in names if n.startswith(_PREPARE_TMP_PREFIX))
    if not (os.path.isfile(summary) or leftovers or _is_prepare_manifest(os.path.join(folder, _PREPARE_MANIFEST))):
        return None
    why = ""
    try:
        if os.path.getsize(summary) > (64 << 20):  # a summary is a few MB at most; never read a huge file
            why = f"{PREPARE_SUMMARY_FILE} is too large to be a prepare summary"
        else:
            with open(summary, encoding="utf-8") as f:
                status = json.load(f).get("status")
            if status != "complete":
                why = f"{PREPARE_SUMMARY_FILE} says status {status!r}, not 'complete'"
    except FileNotFoundError:
        why = f"{PREPARE_SUMMARY_FILE} is missing"
    except (OSError, ValueError, AttributeError) as err:
        why = f"{PREPARE_SUMMARY_FILE} cannot be read ({type(err).__name__})"
    if not why:
        return None
    left = f"; its temporary folder {leftovers[0]} is still there" if leftovers else ""
    return Problem(
        ERROR, "incomplete prepare output", folder,
        f"this folder was written by `benco data prepare` and the run did not finish ({why}{left}), so files may "
        f"be missing or half-written; run the same `benco data prepare` command again with --force",
    )


def check_dataset(path: str, workers: int | None = None, quick: bool = False,
                  prepare_marker: bool = True) -> CheckReport:
    """Read every pair of the dataset at ``path`` and report what is wrong, per file (see
    :func:`check_pairs` for ``quick``).

    ``prepare_marker``: report an error when ``path`` (or the folder of a JSON file) is a
    ``benco data prepare`` output whose run did not finish (:func:`prepare_status`); prepare's own
    final check, run before it marks the output complete, turns it off.
    """
    path = str(path)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UsageError(f"workers={workers!r}: expected a whole number of reader threads, at least 1.")
    report = CheckReport(path=path)
    unfinished = None
    if prepare_marker:
        unfinished = prepare_status(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))
    try:
        pairs, report.problems = _structure(path, report.notes)
    except DatasetError:
        if unfinished is None:
            raise
        report.problems = [unfinished]  # the structure is broken because the run stopped: say that
        return report
    if unfinished is not None:
        report.problems.insert(0, unfinished)
    report.pairs = pairs
    for pair, problems in zip(pairs, _per_pair(pairs, quick, workers)):
        report.problems += problems
        if not any(p.severity == ERROR for p in problems):
            report.good.append(pair)
    return report
