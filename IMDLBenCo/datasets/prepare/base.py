"""What every preparer shares: the records, the rules, path helpers, mask decoding and pairing.

A preparer (one module per dataset) is a function ``collect(tree, options) -> Plan`` that finds the
files it expects in the :class:`~.sources.SourceTree` of what the user passed and decides, before
anything is written, which pairs and authentic images to write and what to correct; :mod:`.writer`
writes the plan, the manifest and the summary.

The rules every preparer follows. They are written here once and enforced by the shared code
(:mod:`.sources`, :mod:`.archive`, :mod:`.writer`), not by each preparer:

1. **Paths stay inside their source.** A preparer reads only files that lie inside a SOURCE folder
   the user passed or inside the extraction folder of an archive the user passed, once symbolic links
   are resolved (``os.path.realpath``). A path read from a file of the dataset (a CSV or JSON listing)
   goes through :meth:`~.sources.SourceTree.resolve_listed`, which refuses absolute paths, ``..`` and
   paths resolving outside; a listing file itself is read through
   :meth:`~.sources.SourceTree.read_listing`; and every file of a plan is checked again by
   :meth:`~.sources.SourceTree.admit` just before it is read. A refused file is left out and reported
   as an error.
2. **Every size read from a file is checked before memory or disk is spent on it.** An archive's
   declared member sizes, compression ratios and member count are checked before extraction, and the
   bytes actually written are counted (:mod:`.archive`, ``--max-extract-bytes``); an image's declared
   pixel count is checked against Pillow's limit before it is decoded; a listing file's size before it is
   read (:data:`MAX_LISTING_BYTES`).
3. **Every written image and mask is decoded in full first.** A file that does not decode (a text file
   named .jpg, a truncated PNG) is left out, counted and reported as an error (exit status 1); the final
   check reads the written authentic images too.
4. **A partial output is never reported as complete.** ``prepare_summary.json`` says
   ``"status": "incomplete"`` from the run's first write until its very last one, which replaces it
   atomically by the full summary (``"status": "complete"``, with the manifest's sha256);
   ``benco data check`` reports a prepare output without it as an error. A run that fails or is
   interrupted removes what it wrote, and only that: never a folder it did not create.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from ..check import PREPARE_SUMMARY_FILE, CheckReport
from ..io import DatasetError, decode_mask, list_images

__all__ = [
    "SUMMARY_FILE", "MANIFEST_FILE", "OUTPUTS", "PrepareOptions", "Correction", "PrepareResult", "Pair", "Plan",
    "DatasetSpec", "inside", "images_in", "has_images", "subdir", "not_found", "decode_standard", "file_stem",
    "strip_suffix", "pair_by_name_then_id", "RENAMED", "RENAMED_UNIQUE", "SIZE_RULE",
]

SUMMARY_FILE = PREPARE_SUMMARY_FILE  # "prepare_summary.json"; benco data check reads it too
MANIFEST_FILE = "manifest.csv"
#: largest listing file (CSV, JSON, TXT of file names) a preparer reads into memory
MAX_LISTING_BYTES = 256 << 20
#: prefix of the temporary folder a run makes in OUT (extracted archives)
TMP_PREFIX = ".prepare-"
#: what ``--force`` may delete in OUT: only what a previous run wrote
OUTPUTS = ("Tp", "Gt", "Au", "set_aside", "splits", MANIFEST_FILE, SUMMARY_FILE, "authentic.json", "with_authentic.json")


# ---------------------------------------------------------------------------------------------
# records


@dataclass
class PrepareOptions:
    """Choices a user makes; each applies to the datasets named in its help."""

    long_side: int | None = None  # resize so that the longer side is at most this (docs: 1024 for NIST16, IMD2020)
    mismatch: str | None = None  # COVERAGE size-mismatched pairs: "repair" (default) or "set-aside"
    columbia_tampered: str | None = None  # Columbia: colour of the spliced region, "green" (default) or "red"
    korus_collateral: str | None = None  # Korus grey "collateral damage": "tampered" (default) or "authentic"
    nist_polarity: str | None = None  # NIST16 masks: "nist" (black = manipulated, default) or "inverted"
    autosplice_quality: str | None = None  # AutoSplice JPEG version: "100" (default), "90" or "75"
    opensdid_entire: str | None = None  # OpenSDID fully generated images: "full-mask" (default) or "leave-out"
    force: bool = False  # replace a previous prepare output in OUT
    workers: int | None = None
    max_extract_bytes: int | None = None  # everything one run may extract (default: archive.DEFAULT_MAX_EXTRACT_BYTES)


@dataclass
class Correction:
    """One kind of change, why it was made, and the files it touched."""

    kind: str
    reason: str
    files: list[str] = field(default_factory=list)
    routine: bool = False  # a format conversion (summarised in one line), not an erratum


@dataclass
class PrepareResult:
    dataset: str
    title: str
    out: str
    sources: list[str]
    found: dict[str, int]
    expected: dict[str, int]
    written: dict[str, int]
    left_out: list[dict[str, object]]
    corrections: list[Correction]
    notes: list[str]
    unverified: list[str]
    check: CheckReport
    splits: dict[str, int] = field(default_factory=dict)  # splits/<name>.json → entries

    @property
    def errors(self) -> list[dict[str, object]]:
        """Source files that could not be used (broken, or refused by the containment rule): left out."""
        return [x for x in self.left_out if x.get("error")]

    @property
    def ok(self) -> bool:
        return not self.check.errors and not self.errors and self.written.get("pairs", 0) > 0

    def to_json(self) -> dict[str, object]:
        return {
            "dataset": self.dataset, "title": self.title, "status": "complete", "sources": self.sources,
            "found": self.found, "expected": self.expected, "written": self.written, "errors": self.errors,
            "left_out": self.left_out,
            "corrections": [asdict(c) for c in self.corrections], "notes": self.notes, "unverified": self.unverified,
            "splits": {f"splits/{k}.json": v for k, v in self.splits.items()},
            "check": {
                "summary": self.check.summary(), "errors": [p.line(self.out) for p in self.check.errors],
                "warnings": [p.line(self.out) for p in self.check.warnings],
            },
        }


@dataclass
class Pair:
    """A tampered image and its mask, to be written as ``Tp/<name>`` and ``Gt/<name>.png``."""

    image: str
    mask: str
    name: str
    decode: Callable[[Image.Image, str], np.ndarray]  # mask image → bool H×W (True = manipulated)
    errata_note: str = ""  # appended to the reason when the pair is set aside (a documented erratum)
    original: str | None = None  # the authentic counterpart, for the COVERAGE size repair
    repair: bool = False
    mask_rule: str = ""  # how the source mask was read, when not the standard rule (manifest)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (correction kind, detail) if written
    synthetic_mask: bool = False  # the mask is derived by ``decode`` alone (e.g. a fully generated image)


@dataclass
class Plan:
    """What a preparer found and decided before any file is written."""

    pairs: list[Pair] = field(default_factory=list)
    authentic: list[tuple[str, str]] = field(default_factory=list)  # (source path, output stem)
    left_out: list[dict[str, object]] = field(default_factory=list)
    found: dict[str, int] = field(default_factory=dict)
    corrections: list[Correction] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: output name (pair name or authentic stem) → split; the writer lists each split in ``splits/<split>.json``
    groups: dict[str, str] = field(default_factory=dict)

    def leave_out(self, path: str, reason: str, documented: bool = False, error: bool = False) -> None:
        """Record a file that is not written; ``error``: a broken or refused file (exit status 1)."""
        item: dict[str, object] = {"file": path, "reason": reason, "documented": documented}
        if error:
            item["error"] = True
        self.left_out.append(item)


@dataclass
class DatasetSpec:
    """A preparer and what it documents: expected input, errata, unverified assumptions."""

    name: str
    title: str
    aliases: tuple[str, ...]
    layout: str
    errata: tuple[str, ...]
    unverified: tuple[str, ...]
    expected: dict[str, int]
    default_dir: str
    options: tuple[str, ...]
    collect: Callable[..., Plan]  # (SourceTree, PrepareOptions) -> Plan


# ---------------------------------------------------------------------------------------------
# paths


def inside(path: str, root: str) -> bool:
    """True when ``path`` lies in ``root`` once both are resolved (symbolic links followed)."""
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def images_in(folder: str, prefix: str = "") -> list[str]:
    return [n for n in list_images(folder) if n.lower().startswith(prefix.lower())]


def has_images(prefix: str = "") -> Callable[[str], bool]:
    return lambda d: any(True for _ in images_in(d, prefix))


def subdir(folder: str, name: str) -> str | None:
    """The direct sub-folder of ``folder`` called ``name`` (case-insensitive), if any."""
    for d in sorted(os.listdir(folder)):
        if d.lower() == name.lower() and os.path.isdir(os.path.join(folder, d)):
            return os.path.join(folder, d)
    return None


def not_found(spec: DatasetSpec, what: str, tree) -> DatasetError:
    """The error of a preparer that did not find ``what`` in the sources: names the expected layout."""
    return DatasetError(
        f"{spec.title}: expected {what}; not found in {tree.describe()}.\n"
        f"Expected input for `benco data prepare {spec.name}`:\n{spec.layout}"
    )


def file_stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def strip_suffix(name: str, suffix: str) -> str:
    return name[: -len(suffix)] if name.lower().endswith(suffix.lower()) else name


# ---------------------------------------------------------------------------------------------
# masks and pairing


def decode_standard(img: Image.Image, path: str) -> np.ndarray:
    """The framework's mask rule (:func:`~IMDLBenCo.datasets.io.decode_mask`) as a bool H×W array."""
    return decode_mask(img, path).astype(bool)


def _trailing_id(name: str) -> str:
    m = re.search(r"_(\d+)$", name)
    return m.group(1) if m else ""


def pair_by_name_then_id(
    images: dict[str, str], masks: dict[str, str]
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]], dict[str, str], dict[str, str]]:
    """Pair image stems with mask keys: by equal name first, then by the trailing tampered-image ID.

    Returns ``(pairs (image, mask, output stem), renamed (old stem, new stem), lonely images, lonely masks)``.
    An ID match is used only when exactly one unpaired image and one unpaired mask carry that ID;
    the output takes the mask's (corrected) name.
    """
    pairs = [(images[s], masks[s], s) for s in sorted(images) if s in masks]
    lonely_img = {s: p for s, p in images.items() if s not in masks}
    lonely_mask = {s: p for s, p in masks.items() if s not in images}
    by_id_img: dict[str, list[str]] = {}
    for s in lonely_img:
        by_id_img.setdefault(_trailing_id(s), []).append(s)
    by_id_mask: dict[str, list[str]] = {}
    for s in lonely_mask:
        by_id_mask.setdefault(_trailing_id(s), []).append(s)
    renamed = []
    for tid, stems in sorted(by_id_img.items()):
        cands = by_id_mask.get(tid, [])
        if tid and len(stems) == 1 and len(cands) == 1:
            old, new = stems[0], cands[0]
            pairs.append((lonely_img.pop(old), lonely_mask.pop(new), new))
            renamed.append((old, new))
    return pairs, renamed, lonely_img, lonely_mask


RENAMED = "renamed to its ground truth's name (file-name erratum)"
RENAMED_UNIQUE = "renamed (the name is used twice)"
SIZE_RULE = "a mask whose size differs from its image is set aside (not resized silently)"

