"""``benco data prepare`` and ``benco data protocol``: downloaded public datasets → checked ManiDataset folders.

Nothing is downloaded here. The user downloads a dataset's archives (or extracts them) and passes
the files or folders as SOURCE; one preparer per dataset (:data:`PREPARERS`) finds the files it
expects in them, applies the documented corrections (errata) and writes::

    OUT/Tp/<name>.<ext>      tampered images, byte-identical copies (re-encoded as PNG only when resized)
    OUT/Gt/<name>.png        masks, single-channel 0/255 PNG, white = manipulated
    OUT/Au/<name>.<ext>      authentic images, where the dataset has them
    OUT/authentic.json       JsonDataset of the authentic images ("Negative")
    OUT/with_authentic.json  JsonDataset of Tp/Gt pairs and authentic images
    OUT/set_aside/           pairs that could not be used as they are (raw copies, see the summary)
    OUT/manifest.csv         per written file: output, source, sha256 of both, correction applied
    OUT/prepare_summary.json counts before and after, every correction with its files, check result

and then runs :func:`~IMDLBenCo.datasets.check.check_dataset` on OUT. Every correction is written
down with the files it touched; nothing is changed silently. What we could not verify against a
real copy of an archive is listed per dataset in ``unverified`` and printed with the summary.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..errors import UsageError
from .check import CheckReport, check_dataset, pair_folders
from .io import NEGATIVE, DatasetError, decode_mask, is_image_file, list_images, mask_gray, try_open_image
from .utils import write_json_dataset

__all__ = [
    "PrepareOptions", "Correction", "PrepareResult", "DatasetSpec", "PREPARERS", "get_spec",
    "prepare_dataset", "format_summary", "find_prepared", "write_protocol", "PROTOCOLS",
]

SUMMARY_FILE = "prepare_summary.json"
MANIFEST_FILE = "manifest.csv"
#: what ``--force`` may delete in OUT: only what a previous run wrote
_OUTPUTS = ("Tp", "Gt", "Au", "set_aside", MANIFEST_FILE, SUMMARY_FILE, "authentic.json", "with_authentic.json")
_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz")
_UNREADABLE_ARCHIVES = (".rar", ".7z")
#: how many files of one correction the printed summary names (the JSON summary names all)
_SHOWN = 20


# ---------------------------------------------------------------------------------------------
# records


@dataclass
class PrepareOptions:
    """Choices a user makes; each applies to the datasets named in its help."""

    long_side: Optional[int] = None  # resize so that the longer side is at most this (docs: 1024 for NIST16, IMD2020)
    mismatch: Optional[str] = None  # COVERAGE size-mismatched pairs: "repair" (default) or "set-aside"
    columbia_tampered: Optional[str] = None  # Columbia: colour of the spliced region, "green" (default) or "red"
    korus_collateral: Optional[str] = None  # Korus grey "collateral damage": "tampered" (default) or "authentic"
    nist_polarity: Optional[str] = None  # NIST16 masks: "nist" (black = manipulated, default) or "inverted"
    force: bool = False  # replace a previous prepare output in OUT
    workers: Optional[int] = None


@dataclass
class Correction:
    """One kind of change, why it was made, and the files it touched."""

    kind: str
    reason: str
    files: List[str] = field(default_factory=list)
    routine: bool = False  # a format conversion (summarised in one line), not an erratum


@dataclass
class PrepareResult:
    dataset: str
    title: str
    out: str
    sources: List[str]
    found: Dict[str, int]
    expected: Dict[str, int]
    written: Dict[str, int]
    left_out: List[Dict[str, object]]
    corrections: List[Correction]
    notes: List[str]
    unverified: List[str]
    check: CheckReport

    @property
    def ok(self) -> bool:
        return not self.check.errors and self.written.get("pairs", 0) > 0

    def to_json(self) -> Dict[str, object]:
        return {
            "dataset": self.dataset, "title": self.title, "status": "complete", "sources": self.sources,
            "found": self.found, "expected": self.expected, "written": self.written, "left_out": self.left_out,
            "corrections": [asdict(c) for c in self.corrections], "notes": self.notes, "unverified": self.unverified,
            "check": {
                "summary": self.check.summary(), "errors": [p.line(self.out) for p in self.check.errors],
                "warnings": [p.line(self.out) for p in self.check.warnings],
            },
        }


@dataclass
class _Pair:
    """A tampered image and its mask, to be written as ``Tp/<name>`` and ``Gt/<name>.png``."""

    image: str
    mask: str
    name: str
    decode: Callable[[Image.Image, str], np.ndarray]  # mask image → bool H×W (True = manipulated)
    errata_note: str = ""  # appended to the reason when the pair is set aside (a documented erratum)
    original: Optional[str] = None  # the authentic counterpart, for the COVERAGE size repair
    repair: bool = False
    mask_rule: str = ""  # how the source mask was read, when not the standard rule (manifest)
    notes: List[Tuple[str, str]] = field(default_factory=list)  # (correction kind, detail) if written


@dataclass
class _Plan:
    """What a preparer found and decided before any file is written."""

    pairs: List[_Pair] = field(default_factory=list)
    authentic: List[Tuple[str, str]] = field(default_factory=list)  # (source path, output stem)
    left_out: List[Dict[str, object]] = field(default_factory=list)
    found: Dict[str, int] = field(default_factory=dict)
    corrections: List[Correction] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def leave_out(self, path: str, reason: str, documented: bool = False) -> None:
        self.left_out.append({"file": path, "reason": reason, "documented": documented})


@dataclass
class DatasetSpec:
    """A preparer and what it documents: expected input, errata, unverified assumptions."""

    name: str
    title: str
    aliases: Tuple[str, ...]
    layout: str
    errata: Tuple[str, ...]
    unverified: Tuple[str, ...]
    expected: Dict[str, int]
    default_dir: str
    options: Tuple[str, ...]
    collect: Callable[["_Tree", PrepareOptions], _Plan]


# ---------------------------------------------------------------------------------------------
# finding things in what the user downloaded


def _archive_ext(path: str) -> str:
    low = path.lower()
    for ext in sorted(_ARCHIVES + _UNREADABLE_ARCHIVES, key=len, reverse=True):
        if low.endswith(ext):
            return ext
    return ""


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _extract(archive: str, dest: str) -> str:
    """Extract ``archive`` into ``dest/<archive stem>``; refuses members that leave that folder."""
    ext = _archive_ext(archive)
    if ext in _UNREADABLE_ARCHIVES:
        raise DatasetError(
            f"{archive}: {ext} archives cannot be read with Python's standard library; extract it first "
            f"(e.g. `unrar x` or `7z x`) and pass the extracted folder."
        )
    target = os.path.join(dest, os.path.basename(archive)[: -len(ext)] or "archive")
    os.makedirs(target, exist_ok=True)
    try:
        if ext == ".zip":
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if not _inside(os.path.join(target, member), target):
                        raise DatasetError(f"{archive}: member {member!r} would be written outside the extraction "
                                           f"folder; refusing to extract this archive.")
                zf.extractall(target)
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(target, filter="data")
                else:  # pragma: no cover - Python without PEP 706 filters
                    for member in tf.getmembers():
                        if not _inside(os.path.join(target, member.name), target) or member.issym() or member.islnk():
                            raise DatasetError(f"{archive}: member {member.name!r} is a link or leaves the "
                                               f"extraction folder; refusing to extract this archive.")
                    tf.extractall(target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DatasetError(f"{archive}: cannot be extracted ({type(err).__name__}: {err}); the download may be "
                           f"incomplete. Download it again or extract it yourself and pass the folder.") from None
    return target


class _Tree:
    """The SOURCE folders and archives of one run; archives are extracted into a temporary folder."""

    def __init__(self, sources: Sequence[str], tmp: str) -> None:
        self.tmp = tmp
        self.roots: List[Tuple[str, str]] = []  # (folder, label shown in the manifest)
        self.sources = [str(s) for s in sources]
        for src in self.sources:
            if os.path.isdir(src):
                self.roots.append((os.path.abspath(src), os.path.basename(os.path.abspath(src)) or src))
            elif os.path.isfile(src) and _archive_ext(src):
                self.roots.append((_extract(src, self._fresh_dir()), os.path.basename(src)))
            elif os.path.isfile(src):
                raise DatasetError(f"{src}: not a folder and not an archive this command can read "
                                   f"({', '.join(_ARCHIVES)}); pass the downloaded archive or the folder it extracts to.")
            else:
                raise DatasetError(f"{src}: no such file or folder.")
        self._extracted: set = set()

    def _fresh_dir(self) -> str:
        return tempfile.mkdtemp(dir=self.tmp)

    def walk_dirs(self) -> Iterable[str]:
        for root, _label in list(self.roots):
            for folder, dirs, _files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
                yield folder

    def find_dirs(self, names: Sequence[str], accept: Optional[Callable[[str], bool]] = None) -> List[str]:
        """Folders whose name is one of ``names`` (case-insensitive) and that ``accept``, shallowest first."""
        wanted = {n.lower() for n in names}
        found = [d for d in self.walk_dirs() if os.path.basename(d).lower() in wanted and (accept is None or accept(d))]
        return sorted(found, key=lambda d: (d.count(os.sep), d))

    def find_files(self, pattern: str) -> List[str]:
        """Files whose name matches the regular expression ``pattern`` (case-insensitive), sorted."""
        rx = re.compile(pattern, re.IGNORECASE)
        out = []
        for folder in self.walk_dirs():
            out += [os.path.join(folder, f) for f in os.listdir(folder)
                    if rx.search(f) and os.path.isfile(os.path.join(folder, f))]
        return sorted(out)

    def extract_named(self, names: Sequence[str]) -> bool:
        """Extract archives with one of these file names found in the sources; True if any was."""
        wanted = {n.lower() for n in names}
        hits = [p for p in self.find_files(r".") if os.path.basename(p).lower() in wanted and p not in self._extracted]
        for archive in hits:
            self._extracted.add(archive)
            self.roots.append((_extract(archive, self._fresh_dir()), self.display(archive)))
        return bool(hits)

    def display(self, path: str) -> str:
        """``path`` as the user knows it: relative to the SOURCE (or archive) it came from."""
        best = None
        for root, label in self.roots:
            if _inside(path, root) and (best is None or len(root) > len(best[0])):
                best = (root, label)
        if best is None:
            return path
        rel = os.path.relpath(path, best[0])
        return best[1] if rel == "." else f"{best[1]}/{rel.replace(os.sep, '/')}"

    def contains(self, path: str) -> bool:
        return any(_inside(path, root) for root, _ in self.roots)

    def describe(self) -> str:
        return ", ".join(self.sources)


def _find_or_extract(tree: _Tree, names: Sequence[str], archives: Sequence[str],
                     accept: Optional[Callable[[str], bool]] = None) -> List[str]:
    """Folders called ``names``; if there are none, extract the archives called ``archives`` and look again."""
    found = tree.find_dirs(names, accept)
    if not found and tree.extract_named(archives):
        found = tree.find_dirs(names, accept)
    return found


def _images_in(folder: str, prefix: str = "") -> List[str]:
    return [n for n in list_images(folder) if n.lower().startswith(prefix.lower())]


def _has_images(prefix: str = "") -> Callable[[str], bool]:
    return lambda d: any(True for _ in _images_in(d, prefix))


def _subdir(folder: str, name: str) -> Optional[str]:
    """The direct sub-folder of ``folder`` called ``name`` (case-insensitive), if any."""
    for d in sorted(os.listdir(folder)):
        if d.lower() == name.lower() and os.path.isdir(os.path.join(folder, d)):
            return os.path.join(folder, d)
    return None


def _category_root(start: str) -> Optional[str]:
    """The shallowest folder under ``start`` with both a ``CM`` and an ``Sp`` sub-folder (CASIA v1)."""
    for folder, dirs, _files in os.walk(start):
        dirs.sort()
        if _subdir(folder, "CM") and _subdir(folder, "Sp"):
            return folder
    return None


def _not_found(spec_name: str, what: str, tree: _Tree) -> DatasetError:
    spec = get_spec(spec_name)
    return DatasetError(
        f"{spec.title}: expected {what}; not found in {tree.describe()}.\n"
        f"Expected input for `benco data prepare {spec.name}`:\n{spec.layout}"
    )


# ---------------------------------------------------------------------------------------------
# mask decoders (source mask image → bool H×W, True = manipulated)


def _decode_standard(img: Image.Image, path: str) -> np.ndarray:
    return decode_mask(img, path).astype(bool)


def _nist_decoder(polarity: str) -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        gray = np.asarray(mask_gray(img), dtype=np.float32)
        # NIST reference masks are black (0) where manipulated, on white
        return gray < 127.5 if polarity == "nist" else gray > 127.5

    return decode


def _columbia_decoder(tampered: str) -> Callable[[Image.Image, str], np.ndarray]:
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


def _korus_decoder(collateral: str) -> Callable[[Image.Image, str], np.ndarray]:
    def decode(img: Image.Image, path: str) -> np.ndarray:
        gray = np.asarray(mask_gray(img), dtype=np.float32)
        # 3-level maps: black authentic, grey collateral damage, white semantic change
        return gray > 10 if collateral == "tampered" else gray > 250

    return decode


# ---------------------------------------------------------------------------------------------
# pairing helpers shared by the CASIA preparers


def _trailing_id(stem: str) -> str:
    m = re.search(r"_(\d+)$", stem)
    return m.group(1) if m else ""


def _pair_by_name_then_id(
    images: Dict[str, str], masks: Dict[str, str]
) -> Tuple[List[Tuple[str, str, str]], List[Tuple[str, str]], Dict[str, str], Dict[str, str]]:
    """Pair image stems with mask keys: by equal name first, then by the trailing tampered-image ID.

    Returns ``(pairs (image, mask, output stem), renamed (old stem, new stem), lonely images, lonely masks)``.
    An ID match is used only when exactly one unpaired image and one unpaired mask carry that ID;
    the output takes the mask's (corrected) name.
    """
    pairs = [(images[s], masks[s], s) for s in sorted(images) if s in masks]
    lonely_img = {s: p for s, p in images.items() if s not in masks}
    lonely_mask = {s: p for s, p in masks.items() if s not in images}
    by_id_img: Dict[str, List[str]] = {}
    for s in lonely_img:
        by_id_img.setdefault(_trailing_id(s), []).append(s)
    by_id_mask: Dict[str, List[str]] = {}
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


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def _strip_suffix(stem: str, suffix: str) -> str:
    return stem[: -len(suffix)] if stem.lower().endswith(suffix.lower()) else stem


# ---------------------------------------------------------------------------------------------
# the preparers


_RENAMED = "renamed to its ground truth's name (file-name erratum)"
_RENAMED_UNIQUE = "renamed (the name is used twice)"
_COLUMBIA = "colour edge mask turned into a binary mask"
_INVERTED = "mask inverted (white = manipulated)"
_NIST_PAIRED = "paired through the reference CSV"
_KORUS = "3-level map made binary"

_CASIA1_EXTRA = {"Sp_D_NRN_A_cha0011_sec0011_0542"}


def _collect_casia1(tree: _Tree, opts: PrepareOptions) -> _Plan:
    plan = _Plan()
    modified = _find_or_extract(tree, ["Modified Tp"], ["Modified Tp.zip"])
    tp_root = next((r for r in map(_category_root, modified) if r), None)
    if tp_root is None:
        tp_root = next((d for d in tree.find_dirs(["Tp"], lambda d: bool(_subdir(d, "CM") and _subdir(d, "Sp")))
                        if "groundtruth" not in d.lower()), None)
    if tp_root is None:
        original = _find_or_extract(tree, ["Original Tp"], ["Original Tp.zip"])
        tp_root = next((r for r in map(_category_root, original) if r), None)
        if tp_root is not None:
            plan.notes.append("Used 'Original Tp' (the uncorrected names): images whose name differs from their "
                              "ground truth's are matched by their tampered-image ID and renamed.")
    if tp_root is None:
        raise _not_found("casia1", "the 'Modified Tp' folder (from 'Modified Tp.zip' in the CASIA 1.0 dataset "
                         "download linked from namtpham/casia1groundtruth), holding Tp/CM and Tp/Sp", tree)
    gt_dirs = _find_or_extract(tree, ["CASIA 1.0 groundtruth"], ["CASIA 1.0 groundtruth.zip"])
    gt_root = next((r for r in map(_category_root, gt_dirs) if r), None)
    if gt_root is None:
        raise _not_found("casia1", "the 'CASIA 1.0 groundtruth' folder (CM/ and Sp/ with *_gt.png; the zip of that "
                         "name in a clone of github.com/namtpham/casia1groundtruth)", tree)
    au_dirs = _find_or_extract(tree, ["Au"], ["Au.zip"], _has_images("Au_"))

    images: Dict[str, str] = {}
    masks: Dict[str, str] = {}
    for cat in ("CM", "Sp"):
        for n in list_images(_subdir(tp_root, cat)):
            images[_stem(n)] = os.path.join(_subdir(tp_root, cat), n)
        for n in list_images(_subdir(gt_root, cat)):
            masks[_strip_suffix(_stem(n), "_gt")] = os.path.join(_subdir(gt_root, cat), n)
    authentic = [os.path.join(au_dirs[0], n) for n in _images_in(au_dirs[0], "Au_")] if au_dirs else []
    plan.found = {"tampered images": len(images), "masks": len(masks), "authentic images": len(authentic)}
    if not au_dirs:
        plan.notes.append("No Au/ folder found (Au.zip of the CASIA 1.0 download): no authentic images written.")

    pairs, renamed, lonely_img, lonely_mask = _pair_by_name_then_id(images, masks)
    plan.corrections.append(Correction(
        _RENAMED, "the image's name differs from its mask's; matched by the tampered-image ID (the trailing number) "
        "and given the ground truth's corrected name, as casia1groundtruth's FileNameCorrection.xlsx renames them"))
    old_name = {new: old for old, new in renamed}
    for img, mask, name in pairs:
        notes = [(_RENAMED, f"{old_name[name]} -> {name}")] if name in old_name else []
        plan.pairs.append(_Pair(img, mask, name, _decode_standard, notes=notes))
    for stem, path in sorted(lonely_img.items()):
        if stem in _CASIA1_EXTRA:
            plan.leave_out(tree.display(path), "documented erratum: extra image without a mask "
                           "(IML-Dataset-Corrections and the tutorial remove it)", documented=True)
        else:
            plan.leave_out(tree.display(path), "no mask with this name or tampered-image ID in the ground truth "
                           "(not in the documented errata)")
    for path in sorted(lonely_mask.values()):
        plan.leave_out(tree.display(path), "mask without a tampered image (not in the documented errata)")
    plan.authentic = [(p, _stem(p)) for p in authentic]
    return plan


_CASIA2_MISALIGNED = {
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
_CASIA2_NO_MASK = {"Tp_D_NRD_S_N_cha10002_cha10001_20094", "Tp_D_NRN_M_N_cha00085_ani10104_10029"}


def _collect_casia2(tree: _Tree, opts: PrepareOptions) -> _Plan:
    plan = _Plan()
    tp = tree.find_dirs(["Tp"], _has_images("Tp_"))
    if not tp:
        raise _not_found("casia2", "a 'Tp' folder of tampered images named Tp_*", tree)
    corrected = tree.find_dirs(["Gt"], lambda d: any(_stem(n).lower().endswith("_gt") for n in list_images(d)))
    pham = tree.find_dirs(["CASIA 2 Groundtruth", "CASIA2 Groundtruth", "CASIA 2.0 Groundtruth", "CASIA2.0_Groundtruth"],
                          _has_images("Tp_"))
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
        raise _not_found("casia2", "a ground-truth folder: 'Gt' (corrected release) or 'CASIA 2 Groundtruth' "
                         "(namtpham/casia2groundtruth) with Tp_*_gt.png masks", tree)
    au = tree.find_dirs(["Au"], _has_images("Au_"))
    images = {_stem(n): os.path.join(tp[0], n) for n in _images_in(tp[0], "Tp_")}
    masks = {_strip_suffix(_stem(n), "_gt"): os.path.join(gt, n) for n in _images_in(gt, "Tp_")}
    authentic = [os.path.join(au[0], n) for n in _images_in(au[0], "Au_")] if au else []
    plan.found = {"tampered images": len(images), "masks": len(masks), "authentic images": len(authentic)}
    if not au:
        plan.notes.append("No Au/ folder found: no authentic images written.")
    pairs, renamed, lonely_img, lonely_mask = _pair_by_name_then_id(images, masks)
    plan.corrections.append(Correction(
        _RENAMED, "the image's name differs from its mask's (casia2groundtruth renamed 99 misclassified images, "
        "Tp_S_ <-> Tp_D_); matched by the tampered-image ID and given the ground truth's name"))
    old_name = {new: old for old, new in renamed}
    for img, mask, name in pairs:
        note = ""
        if name in _CASIA2_MISALIGNED:
            note = ("documented erratum: one of the 17 masks misaligned in Pham's ground truth; the corrected "
                    "ground truth (SunnyHaze/CASIA2.0-Corrected-Groundtruth) fixes it")
        elif name in _CASIA2_NO_MASK:
            note = "documented erratum: cropped from an authentic image, so no mask could be derived (cannotDetect.txt)"
        notes = [(_RENAMED, f"{old_name[name]} -> {name}")] if name in old_name else []
        plan.pairs.append(_Pair(img, mask, name, _decode_standard, errata_note=note, notes=notes))
    for stem, path in sorted(lonely_img.items()):
        documented = stem in _CASIA2_NO_MASK
        plan.leave_out(tree.display(path), "documented erratum: no mask could be derived (cannotDetect.txt)"
                       if documented else "no mask with this name or tampered-image ID", documented=documented)
    for path in sorted(lonely_mask.values()):
        plan.leave_out(tree.display(path), "mask without a tampered image")
    plan.authentic = [(p, _stem(p)) for p in authentic]
    return plan


def _collect_columbia(tree: _Tree, opts: PrepareOptions) -> _Plan:
    plan = _Plan()
    tif = _has_images("")
    splc = _find_or_extract(tree, ["4cam_splc"], [f"4cam_splc{e}" for e in _ARCHIVES], tif)
    if not splc:
        raise _not_found("columbia", "the '4cam_splc' folder (spliced .tif images, with edgemask/)", tree)
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
        raise _not_found("columbia", "the 'edgemask' folder of colour-coded masks "
                         "(4cam_splc/edgemask/*_edgemask.jpg)", tree)
    auth = _find_or_extract(tree, ["4cam_auth"], [f"4cam_auth{e}" for e in _ARCHIVES], tif)
    tampered = opts.columbia_tampered or "green"
    decoder = _columbia_decoder(tampered)
    mask_names = list_images(edge)
    images = list_images(splc_dir)
    authentic = [os.path.join(auth[0], n) for n in list_images(auth[0])] if auth else []
    plan.found = {"tampered images": len(images), "edge masks": len(mask_names), "authentic images": len(authentic)}
    used = set()
    ambiguous = []
    for n in images:
        stem = _stem(n)
        cands = [m for m in mask_names if _stem(m).lower().startswith(f"{stem.lower()}_edgemask")]
        exact = [m for m in cands if _stem(m).lower() == f"{stem.lower()}_edgemask"]
        pick = (exact or cands or [None])[0]
        if pick is None:
            plan.leave_out(tree.display(os.path.join(splc_dir, n)), "no <name>_edgemask mask in edgemask/")
            continue
        if len(cands) > 1:
            ambiguous.append(f"{stem}: used {pick} of {', '.join(cands)}")
        used.update(cands)
        plan.pairs.append(_Pair(os.path.join(splc_dir, n), os.path.join(edge, pick), stem, decoder,
                                mask_rule=f"colour edge map decoded ({tampered} = spliced)",
                                notes=[(_COLUMBIA, stem)]))
    plan.corrections.insert(0, Correction(
        _COLUMBIA, f"Columbia marks one camera's region red and the other's green (light shades near the boundary); "
        f"the {tampered} region is the spliced one (white), the other is authentic (black), and pixels of neither "
        f"colour join the nearer region", routine=True))
    if ambiguous:
        plan.corrections.append(Correction("one of several masks for an image chosen", "several files in edgemask/ "
                                           "start with the image's name; the exact <name>_edgemask file is used",
                                           ambiguous))
    for m in mask_names:
        if m not in used:
            plan.leave_out(tree.display(os.path.join(edge, m)), "edge mask without a spliced image")
    plan.authentic = [(p, _stem(p)) for p in authentic]
    if not auth:
        plan.notes.append("No 4cam_auth/ folder found: no authentic images written.")
    return plan


_COVERAGE_MISMATCHED = {"41", "48", "55", "56", "57", "58", "59", "61", "95"}


def _collect_coverage(tree: _Tree, opts: PrepareOptions) -> _Plan:
    plan = _Plan()
    tampered_rx = re.compile(r"^(\d+)t$", re.IGNORECASE)
    image_dirs = tree.find_dirs(["image"], lambda d: any(tampered_rx.match(_stem(n)) for n in list_images(d)))
    if not image_dirs:
        raise _not_found("coverage", "the 'image' folder with {i}.tif originals and {i}t.tif tampered images", tree)
    image_dir = image_dirs[0]
    mask_dir = _subdir(os.path.dirname(image_dir), "mask")
    if mask_dir is None:
        raise _not_found("coverage", f"the 'mask' folder next to {tree.display(image_dir)} with {{i}}forged.tif "
                         "masks", tree)
    mode = opts.mismatch or "repair"
    names = list_images(image_dir)
    by_stem = {_stem(n).lower(): os.path.join(image_dir, n) for n in names}
    masks = {_stem(n).lower(): os.path.join(mask_dir, n) for n in list_images(mask_dir)}
    tampered = sorted((m.group(1), n) for n in names if (m := tampered_rx.match(_stem(n))))
    originals = sorted((int(s), p) for s, p in by_stem.items() if s.isdigit())
    plan.found = {"tampered images": len(tampered), "forged masks": sum(k.endswith("forged") for k in masks),
                  "authentic images": len(originals)}
    for i, n in sorted(tampered, key=lambda t: int(t[0])):
        mask = masks.get(f"{i}forged")
        if mask is None:
            plan.leave_out(tree.display(os.path.join(image_dir, n)), f"no mask/{i}forged.tif")
            continue
        note = ("documented erratum: one of the 9 COVERAGE pairs whose masks differ in size from the image "
                "(IML-Dataset-Corrections)") if i in _COVERAGE_MISMATCHED else ""
        plan.pairs.append(_Pair(os.path.join(image_dir, n), mask, _stem(n), _decode_standard, errata_note=note,
                                original=by_stem.get(i), repair=mode == "repair"))
    plan.authentic = [(p, _stem(p)) for _, p in originals]
    plan.notes.append("Ground truth = mask/{i}forged.tif (the pasted copy); the copy and paste masks are not used.")
    return plan


def _collect_nist16(tree: _Tree, opts: PrepareOptions) -> _Plan:
    plan = _Plan()
    refs = [p for p in tree.find_files(r"^NC2016.*-manipulation-ref\.csv$")]
    if not refs:
        raise _not_found("nist16", "reference/manipulation/NC2016-manipulation-ref.csv (NC2016_Test0613)", tree)
    ref = refs[0]
    if len(refs) > 1:
        plan.notes.append(f"Several reference files found; used {tree.display(ref)} (not "
                          f"{', '.join(tree.display(r) for r in refs[1:])}).")
    root = os.path.dirname(os.path.dirname(os.path.dirname(ref)))  # <root>/reference/manipulation/<csv>
    with open(ref, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="|")
        rows = list(reader)
        columns = reader.fieldnames or []
    needed = ("ProbeFileName", "ProbeMaskFileName", "IsTarget")
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DatasetError(f"{ref}: columns {', '.join(missing)} missing (found: {', '.join(columns[:12])}...); "
                           f"expected NIST's pipe-separated reference file with {', '.join(needed)}.")
    polarity = opts.nist_polarity or "nist"
    decoder = _nist_decoder(polarity)
    seen: Dict[str, int] = {}
    duplicates, targets, non_targets = [], 0, 0
    for i, row in enumerate(rows, start=2):
        probe = (row.get("ProbeFileName") or "").strip()
        if not probe:
            continue
        if probe in seen:
            duplicates.append(f"{probe} (CSV lines {seen[probe]} and {i})")
            continue
        seen[probe] = i
        path = os.path.join(root, probe)
        target = (row.get("IsTarget") or "").strip().upper() == "Y"
        targets += target
        non_targets += not target
        if not os.path.isfile(path):
            plan.leave_out(f"{tree.display(ref)} line {i}: {probe}", "listed in the reference CSV but not found")
            continue
        if not target:
            plan.authentic.append((path, _stem(probe)))
            continue
        mask_rel = (row.get("ProbeMaskFileName") or "").strip()
        if not mask_rel or not os.path.isfile(os.path.join(root, mask_rel)):
            plan.leave_out(tree.display(path), f"manipulated (IsTarget=Y) but its mask {mask_rel or '(empty)'} is "
                           f"not on disk")
            continue
        notes = [(_NIST_PAIRED, f"{_stem(probe)} <- {os.path.basename(mask_rel)}")]
        if polarity == "nist":
            notes.append((_INVERTED, _stem(probe)))
        plan.pairs.append(_Pair(path, os.path.join(root, mask_rel), _stem(probe), decoder, notes=notes,
                                mask_rule="inverted (NIST: black = manipulated)" if polarity == "nist" else ""))
    plan.found = {"manipulated probes (IsTarget=Y)": targets, "other probes (IsTarget=N)": non_targets,
                  "CSV rows": len(rows)}
    plan.corrections.append(Correction(
        _INVERTED, "NIST reference masks are black where manipulated; ours are white where manipulated", routine=True))
    plan.corrections.append(Correction(
        _NIST_PAIRED, "probe and mask names differ (NC2016_xxxx.jpg <-> reference/manipulation/mask/NC2016_yyyy.png); "
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


def _collect_imd2020(tree: _Tree, opts: PrepareOptions) -> _Plan:
    plan = _Plan()
    masks = [p for p in tree.find_files(r"_mask\.[a-z0-9]+$") if is_image_file(p)]
    if not masks:
        raise _not_found("imd2020", "folders of <name>.<ext> images with <name>_mask.png masks and <id>_orig.<ext> "
                         "originals (IMD2020.zip, real-life set)", tree)
    originals = [p for p in tree.find_files(r"_orig\.[a-z0-9]+$") if is_image_file(p)]
    plan.found = {"masks": len(masks), "authentic images": len(originals)}
    taken: Dict[str, str] = {}
    n_images = 0
    for mask in masks:
        folder = os.path.dirname(mask)
        key = _strip_suffix(_stem(mask), "_mask")
        cands = [n for n in list_images(folder) if _stem(n) == key]
        if not cands:
            plan.leave_out(tree.display(mask), "mask without an image of the same name")
            continue
        n_images += 1
        name = key
        notes = []
        if name in taken:  # same name in two folders: keep both, apart
            name = f"{os.path.basename(folder)}_{key}"
            notes.append((_RENAMED_UNIQUE, f"{tree.display(os.path.join(folder, cands[0]))} -> {name}"))
        taken[name] = mask
        note = ("documented erratum: mask size differs from the image (IML-Dataset-Corrections)"
                if key == "00030_fake" else "")
        plan.pairs.append(_Pair(os.path.join(folder, cands[0]), mask, name, _decode_standard, errata_note=note,
                                notes=notes))
    paired = {p.image for p in plan.pairs}
    for folder in sorted({os.path.dirname(m) for m in masks}):
        for n in list_images(folder):
            stem = _stem(n).lower()
            path = os.path.join(folder, n)
            if path not in paired and not stem.endswith(("_mask", "_orig")):
                n_images += 1
                plan.leave_out(tree.display(path), "image without a <name>_mask file")
    plan.found["tampered images"] = n_images
    plan.corrections.append(Correction(_RENAMED_UNIQUE, "output names must be unique; the folder name is prefixed"))
    names: Dict[str, int] = {}
    for p in originals:
        stem = _stem(p)
        names[stem] = names.get(stem, 0) + 1
        plan.authentic.append((p, stem if names[stem] == 1 else f"{os.path.basename(os.path.dirname(p))}_{stem}"))
    if not opts.long_side:
        plan.notes.append("IMDL-BenCo's protocols use IMD2020 resized to a long side of 1024 (IMD_20_1024): "
                          "--long-side 1024.")
    return plan


def _collect_korus(tree: _Tree, opts: PrepareOptions) -> _Plan:
    plan = _Plan()
    tampered_dirs = tree.find_dirs(["tampered-realistic"], _has_images(""))
    if not tampered_dirs:
        raise _not_found("korus", "camera folders with tampered-realistic/ (TIFF), ground-truth/ (PNG) and pristine/", tree)
    collateral = opts.korus_collateral or "tampered"
    decoder = _korus_decoder(collateral)
    stems: Dict[str, int] = {}
    for d in tampered_dirs:
        for n in list_images(d):
            stems[_stem(n)] = stems.get(_stem(n), 0) + 1
    n_masks = n_images = 0
    rule = "3-level map: grey and white = tampered" if collateral == "tampered" else "3-level map: white = tampered"
    for d in tampered_dirs:
        camera = os.path.basename(os.path.dirname(d))
        gt_dir = _subdir(os.path.dirname(d), "ground-truth")
        pristine = _subdir(os.path.dirname(d), "pristine")
        gt = {_stem(n).lower(): os.path.join(gt_dir, n) for n in list_images(gt_dir)} if gt_dir else {}
        n_masks += len(gt)
        for n in list_images(d):
            n_images += 1
            stem = _stem(n)
            name = stem if stems[stem] == 1 else f"{camera}_{stem}"
            notes = [(_KORUS, name)] + ([(_RENAMED_UNIQUE, f"{camera}/{n} -> {name}")] if name != stem else [])
            mask = gt.get(stem.lower()) or gt.get(f"{stem.lower()}_mask")
            if mask is None:
                plan.leave_out(tree.display(os.path.join(d, n)), "no mask of the same name in ground-truth/")
                continue
            plan.pairs.append(_Pair(os.path.join(d, n), mask, name, decoder, mask_rule=rule, notes=notes))
        if pristine:
            for n in list_images(pristine):
                stem = _stem(n)
                plan.authentic.append((os.path.join(pristine, n), stem if stems.get(stem, 0) <= 1 else f"{camera}_{stem}"))
    plan.found = {"tampered images": n_images, "masks": n_masks, "authentic images": len(plan.authentic)}
    plan.corrections.append(Correction(
        _KORUS, "black = authentic, white = semantic change, grey = collateral damage; grey counts as "
        + ("tampered, as the dataset readme advises for standard evaluation" if collateral == "tampered"
           else "authentic (--korus-collateral authentic)"), routine=True))
    plan.corrections.append(Correction(_RENAMED_UNIQUE, "output names must be unique; the camera folder is prefixed"))
    return plan


_LAYOUT_CASIA1 = """\
  CASIA 1.0 dataset (linked from github.com/namtpham/casia1groundtruth; extract the .rar yourself):
    Modified Tp/Tp/CM/*.jpg, Modified Tp/Tp/Sp/*.jpg   (or the 'Modified Tp.zip' itself)
    Au/Au_*.jpg                                        (or 'Au.zip'; optional)
  CASIA 1.0 groundtruth/CM/*_gt.png, CASIA 1.0 groundtruth/Sp/*_gt.png
                                                       (or a clone of casia1groundtruth with its zip)
  e.g. benco data prepare casia1 "CASIA 1.0 dataset" casia1groundtruth --out data/CASIA1.0"""

_LAYOUT_CASIA2 = """\
  the corrected release (SunnyHaze/CASIA2.0-Corrected-Groundtruth, a ZIP: pass it or its folder):
    Au/Au_*.jpg|bmp, Tp/Tp_*.jpg|tif, Gt/Tp_*_gt.png
  or Pham's: CASIA2.0_revised/{Au,Tp} and 'CASIA 2 Groundtruth'/Tp_*_gt.png (namtpham/casia2groundtruth)
  e.g. benco data prepare casia2 CASIA2.0.zip --out data/CASIA2.0"""

_LAYOUT_COLUMBIA = """\
  Columbia Uncompressed Image Splicing Detection Evaluation Dataset (authsplcuncmp):
    4cam_splc/*.tif, 4cam_splc/edgemask/*_edgemask.jpg, 4cam_auth/*.tif
    (folders or their archives, e.g. 4cam_splc.tar.bz2 and 4cam_auth.tar.bz2)
  e.g. benco data prepare columbia 4cam_splc.tar.bz2 4cam_auth.tar.bz2 --out data/Columbia"""

_LAYOUT_COVERAGE = """\
  COVERAGE (github.com/wenbihan/coverage points to the download):
    image/{i}.tif (originals), image/{i}t.tif (tampered), mask/{i}forged.tif (+ copy/paste masks), label/*.mat
  e.g. benco data prepare coverage COVERAGE --out data/COVERAGE [--mismatch repair|set-aside]"""

_LAYOUT_NIST16 = """\
  NC2016_Test0613 (NIST MFC, after registration):
    reference/manipulation/NC2016-manipulation-ref.csv, probe/NC2016_*.jpg, reference/manipulation/mask/*.png
  e.g. benco data prepare nist16 NC2016_Test0613 --out data/NIST16_1024 --long-side 1024"""

_LAYOUT_IMD2020 = """\
  IMD2020 real-life set (IMD2020.zip from staff.utia.cas.cz/novozada/db/):
    <id>/<id>_orig.<ext>, <id>/<name>.<ext>, <id>/<name>_mask.png
  e.g. benco data prepare imd2020 IMD2020.zip --out data/IMD_20_1024 --long-side 1024"""

_LAYOUT_KORUS = """\
  Realistic Tampering Dataset (Korus & Huang), data-images/:
    <camera>/tampered-realistic/*.TIF, <camera>/ground-truth/*.PNG, <camera>/pristine/*.TIF
    (cameras Canon_60D, Nikon_D90, Nikon_D7000, Sony_A57)
  e.g. benco data prepare korus data-images --out data/Korus"""

_SIZE_RULE = "a mask whose size differs from its image is set aside (not resized silently)"

PREPARERS: Dict[str, DatasetSpec] = {
    s.name: s for s in (
        DatasetSpec(
            "casia1", "CASIA v1.0", ("casiav1", "casia1.0", "casia-v1"), _LAYOUT_CASIA1,
            ("921 tampered images, 920 masks (casia1groundtruth): Sp_D_NRN_A_cha0011_sec0011_0542.jpg has no mask; it "
             "is left out and reported",
             "file-name errors of the official release: 'Modified Tp' carries the corrected names; an image whose "
             "name still differs from its mask's is matched by its tampered-image ID and renamed",
             "masks (RGB 0/255) re-encoded as single-channel 0/255 PNG named like the image", _SIZE_RULE),
            ("FileNameCorrection.xlsx (binary) was not read: renames are inferred from the tampered-image ID",
             "the counts 921/920/800 are from the documentation, not from a copy of the archive"),
            {"tampered images": 921, "masks": 920, "authentic images": 800}, "CASIA1.0", (), _collect_casia1),
        DatasetSpec(
            "casia2", "CASIA v2.0", ("casiav2", "casia2.0", "casia-v2"), _LAYOUT_CASIA2,
            ("the corrected ground truth (Gt/) is preferred over Pham's (CASIA 2 Groundtruth/)",
             "with Pham's ground truth the 17 documented misaligned masks are set aside (set_aside/) and reported",
             "images renamed by casia2groundtruth (99 Tp_S_/Tp_D_ reclassifications) are matched by ID and renamed",
             "the 2 images cropped from authentic ones (cannotDetect.txt) are left out if their mask is missing or empty",
             _SIZE_RULE),
            ("the layout of the corrected ZIP is taken from its README (Au/, Tp/, Gt/), not from a downloaded copy",
             "duplicate authentic images (pastebin list) are not removed"),
            {"tampered images": 5123, "masks": 5123, "authentic images": 7491}, "CASIA2.0", (), _collect_casia2),
        DatasetSpec(
            "columbia", "Columbia (uncompressed, colour)", ("columbia-uncompressed", "authsplcuncmp"), _LAYOUT_COLUMBIA,
            ("edgemask/*_edgemask.jpg colour maps turned into binary masks: green (dark and light) = spliced, "
             "red = authentic, other pixels join the nearer region (--columbia-tampered red to swap)", _SIZE_RULE),
            ("which colour marks the spliced region follows photoholmes and IML-ViT's users (green); the dataset's "
             "README was not available to confirm it",
             "the colour thresholds were tested on generated maps, not on the real JPEG edge masks"),
            {"tampered images": 180, "authentic images": 183}, "Columbia", ("columbia_tampered",), _collect_columbia),
        DatasetSpec(
            "coverage", "COVERAGE", ("cover",), _LAYOUT_COVERAGE,
            ("ground truth = mask/{i}forged.tif",
             "9 pairs (41, 48, 55, 56, 57, 58, 59, 61, 95) have masks of another size: --mismatch repair (default) "
             "aligns each mask with the pixels that differ from the original {i}.tif (resize when both sides "
             "scale alike, else the crop window that fits best) and reports how; --mismatch set-aside keeps them "
             "apart in set_aside/"),
            ("the repair was checked on the real COVERAGE files in ../shared/datasets (F1 0.72-0.97 against the "
             "changed pixels); SunnyHaze's hand-corrected masks were not available to compare",),
            {"tampered images": 100, "authentic images": 100}, "COVERAGE", ("mismatch",), _collect_coverage),
        DatasetSpec(
            "nist16", "NIST16 (NC2016)", ("nist", "nc2016", "nist2016"), _LAYOUT_NIST16,
            ("pairs from reference/manipulation/NC2016-manipulation-ref.csv (IsTarget=Y; 564 documented)",
             "masks inverted: NIST marks manipulated pixels black",
             "optional --long-side 1024 as the documentation advises (image bicubic, mask by area then > 0.5; "
             "resized images are saved as PNG)", _SIZE_RULE),
            ("the CSV columns and paths follow NIST's MediScore examples, not a copy of NC2016_Test0613",
             "IsTarget=N probes are taken as authentic",
             "pixels darker than 127.5 count as manipulated (NIST's scorer treats every non-white pixel so)"),
            {"manipulated probes (IsTarget=Y)": 564}, "NIST16", ("nist_polarity",), _collect_nist16),
        DatasetSpec(
            "imd2020", "IMD2020 (real-life)", ("imd", "imd20", "imd-2020"), _LAYOUT_IMD2020,
            ("<name>_mask.png pairs with <name>.<ext> in the same folder; <id>_orig.* are the authentic images",
             "z14/00030_fake.jpg's mask differs in size (documented) and is set aside", _SIZE_RULE),
            ("the layout follows loaders of the real-life set (folders with _orig and _mask files), not a copy of "
             "IMD2020.zip",),
            {"tampered images": 2010, "authentic images": 414}, "IMD2020", (), _collect_imd2020),
        DatasetSpec(
            "korus", "Korus Realistic Tampering", ("realistic-tampering", "rt", "korus-rt"), _LAYOUT_KORUS,
            ("3-level maps made binary: white and grey (collateral damage) = tampered, as the readme advises for "
             "standard evaluation (--korus-collateral authentic keeps only white)", _SIZE_RULE),
            ("the grey level of the maps was not seen: pixels above 10 count as tampered, above 250 as white",),
            {"tampered images": 220, "authentic images": 220}, "Korus", ("korus_collateral",), _collect_korus),
    )
}

#: option attribute → the command-line flag that sets it
_FLAGS = {"columbia_tampered": "--columbia-tampered", "mismatch": "--mismatch", "nist_polarity": "--nist-polarity",
          "korus_collateral": "--korus-collateral"}


def get_spec(name: str) -> DatasetSpec:
    """The preparer for ``name`` or one of its aliases (case-insensitive)."""
    key = name.lower().replace("_", "-").replace(" ", "")
    for spec in PREPARERS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise UsageError(f"unknown dataset {name!r}; `benco data prepare` knows: {', '.join(PREPARERS)} "
                     f"(run it without arguments for their expected input)")


# ---------------------------------------------------------------------------------------------
# writing


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


def _repair_size(mask: np.ndarray, image: Image.Image, original_path: Optional[str]) -> Tuple[Optional[np.ndarray], str]:
    """Fit a mask of the wrong size to its image using where the image differs from its original.

    Candidates: the mask resized (nearest) to the image, and every window of the image's size inside
    the mask (when the mask is larger). The one whose pixels best match the changed pixels (F1) wins,
    if that F1 is at least 0.5. Returns ``(mask or None, description)``.
    """
    import cv2

    if not original_path:
        return None, "no original image to align the mask with"
    orig, why = try_open_image(original_path)
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
    rows: List[Tuple[str, str, str, str, str]]  # manifest rows
    corrections: List[Tuple[str, str, bool]]  # (kind, detail, routine)
    reason: str = ""
    documented: bool = False


def _mask_conversion(img: Image.Image, path: str) -> Optional[str]:
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


def _write_pair(p: _Pair, out: str, long_side: Optional[int], display: Callable[[str], str]) -> _Outcome:
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

    image, why = try_open_image(p.image)
    if image is None:
        return set_aside(f"image {why}")
    mask_img, why = try_open_image(p.mask)
    if mask_img is None:
        return set_aside(f"mask {why}")
    try:
        mask = p.decode(mask_img, p.mask)
    except DatasetError as err:
        return set_aside(f"unclear mask: {str(err).split(': ', 1)[-1]}")
    notes: List[Tuple[str, str, bool]] = [(kind, detail, False) for kind, detail in p.notes]
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
    conversion = _mask_conversion(mask_img, p.mask)
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
        renamed = f"renamed (was {_stem(p.image)})" if _stem(p.image) != p.name else ""
        rows.append((f"Tp/{p.name}{ext}", img_src, sha, sha, renamed))
    sha = _save_png(mask_out, os.path.join(out, "Gt", p.name + ".png"))
    rows.append((f"Gt/{p.name}.png", mask_src, sha, _sha256_file(p.mask), "; ".join(mask_changes)))
    return _Outcome(p.name, True, rows, notes)


def _prepare_out(out: str, sources: Sequence[str], force: bool) -> None:
    for src in sources:
        if os.path.isdir(src) and _inside(out, src):
            raise UsageError(f"--out {out} lies inside the SOURCE {src}; choose a folder outside what you downloaded.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: a file of that name exists; choose a folder.")
    if os.path.isdir(out) and os.listdir(out):
        ours = os.path.isfile(os.path.join(out, SUMMARY_FILE))
        if not force or not ours:
            hint = ("pass --force to replace the previous `benco data prepare` output there" if ours else
                    "it is not a `benco data prepare` output, so nothing in it is deleted")
            raise UsageError(f"--out {out}: folder exists and is not empty; choose a new folder or {hint}.")
        for name in _OUTPUTS:
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.isfile(path):
                os.remove(path)
    for sub in ("Tp", "Gt"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    # written first, so that --force recognises a run that stopped half-way
    with open(os.path.join(out, SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump({"status": "incomplete"}, f)


def _check_options(spec: DatasetSpec, opts: PrepareOptions) -> None:
    for attr, flag in _FLAGS.items():
        if getattr(opts, attr) is not None and attr not in spec.options:
            users = [s.name for s in PREPARERS.values() if attr in s.options]
            raise UsageError(f"{flag} applies to {', '.join(users)} only, not to {spec.name}.")
    choices = {"mismatch": ("repair", "set-aside"), "columbia_tampered": ("green", "red"),
               "korus_collateral": ("tampered", "authentic"), "nist_polarity": ("nist", "inverted")}
    for attr, allowed in choices.items():
        value = getattr(opts, attr)
        if value is not None and value not in allowed:
            raise UsageError(f"{_FLAGS[attr]} {value!r}: expected one of {', '.join(allowed)}.")
    if opts.long_side is not None and opts.long_side < 16:
        raise UsageError(f"--long-side {opts.long_side}: expected a side of at least 16 pixels (e.g. 1024).")


def prepare_dataset(name: str, sources: Sequence[str], out: str, options: Optional[PrepareOptions] = None) -> PrepareResult:
    """Turn what the user downloaded for dataset ``name`` into a checked ManiDataset folder ``out``.

    Raises :class:`~IMDLBenCo.errors.DatasetError` (input not as expected) or
    :class:`~IMDLBenCo.errors.UsageError` (options); the message names what was expected.
    """
    opts = options or PrepareOptions()
    spec = get_spec(name)
    _check_options(spec, opts)
    if not sources:
        raise UsageError(f"no SOURCE given. Expected input for `benco data prepare {spec.name}`:\n{spec.layout}")
    out = os.path.abspath(str(out))
    fresh = not os.path.isdir(out) or not os.listdir(out)
    _prepare_out(out, sources, opts.force)
    tmp = tempfile.mkdtemp(prefix=".prepare-", dir=out)
    try:
        return _run(spec, sources, out, tmp, opts)
    except BaseException:
        if fresh:  # the folder was made by this run: leave nothing half-written behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(spec: DatasetSpec, sources: Sequence[str], out: str, tmp: str, opts: PrepareOptions) -> PrepareResult:
    """Collect, write, check; ``prepare_dataset`` owns the output folder and the temporary one."""
    tree = _Tree(sources, tmp)
    plan = spec.collect(tree, opts)
    seen: Dict[str, str] = {}
    unique = []
    for pair in plan.pairs:
        if pair.name in seen:  # two files would be written under one name: keep the first, say so
            plan.leave_out(tree.display(pair.image), f"same output name as {seen[pair.name]}")
            continue
        seen[pair.name] = tree.display(pair.image)
        unique.append(pair)
    plan.pairs = unique
    workers = opts.workers or min(4, (os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes and encodes without the GIL
        outcomes = list(pool.map(lambda p: _write_pair(p, out, opts.long_side, tree.display), plan.pairs))
    rows: List[Tuple[str, str, str, str, str]] = []
    kinds: Dict[str, Correction] = {c.kind: c for c in plan.corrections}
    order = [c.kind for c in plan.corrections]
    written_names = set()
    for pair, o in zip(plan.pairs, outcomes):
        rows += o.rows
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
    au_paths = []
    for src, stem in plan.authentic:
        ext = os.path.splitext(src)[1]
        dst = os.path.join(out, "Au", stem + ext)
        if os.path.exists(dst):  # a second file with this stem: keep it apart, say so
            stem = f"{stem}_{len(au_paths)}"
            dst = os.path.join(out, "Au", stem + ext)
        sha = _copy(src, dst)
        rows.append((f"Au/{stem}{ext}", tree.display(src), sha, sha, ""))
        au_paths.append(dst)
    for item in plan.left_out:
        if "copied_to" not in item:
            rows.append(("", str(item["file"]), "", "", f"left out: {item['reason']}"))
    _write_manifest(out, rows)
    written = {"pairs": len(written_names), "authentic images": len(au_paths),
               "left out": len(plan.left_out)}
    if au_paths:
        pairs, _ = pair_folders(os.path.join(out, "Tp"), os.path.join(out, "Gt"))
        write_json_dataset([(p, NEGATIVE) for p in sorted(au_paths)], os.path.join(out, "authentic.json"), relative=True)
        write_json_dataset(pairs + [(p, NEGATIVE) for p in sorted(au_paths)],
                           os.path.join(out, "with_authentic.json"), relative=True)
    shutil.rmtree(tmp, ignore_errors=True)  # extracted archives: not part of the dataset
    report = check_dataset(out)
    result = PrepareResult(
        dataset=spec.name, title=spec.title, out=out, sources=[str(x) for x in sources],
        found=plan.found, expected=dict(spec.expected), written=written, left_out=plan.left_out,
        corrections=[kinds[k] for k in order if kinds[k].files], notes=plan.notes,
        unverified=list(spec.unverified), check=report,
    )
    with open(os.path.join(out, SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump(result.to_json(), f, indent=1, ensure_ascii=False)
    return result


_REENCODED = "mask re-encoded as single-channel 0/255 PNG"
_RESIZED = "resized (--long-side)"
_REPAIRED = "mask size repaired (--mismatch repair)"
_ROUTINE_REASONS = {
    _REENCODED: "the framework's mask format; values binarised with the dataset's rule",
    _RESIZED: "image bicubic (saved as PNG), mask by area then > 0.5",
    _REPAIRED: "aligned with the pixels that differ from the original (COVERAGE erratum)",
}


def _write_manifest(out: str, rows: Sequence[Tuple[str, str, str, str, str]]) -> None:
    with open(os.path.join(out, MANIFEST_FILE), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["output", "source", "sha256", "source_sha256", "correction"])
        w.writerows(rows)


def _counts(d: Dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in d.items())


def format_summary(result: PrepareResult) -> str:
    """The printed summary: counts, every left-out file and correction, unverified points, check."""
    lines = [f"{result.title} -> {result.out}", f"  found: {_counts(result.found)}"]
    differs = {k: v for k, v in result.expected.items() if result.found.get(k) not in (None, v)}
    if differs:
        lines.append(f"  the documentation says: {_counts(differs)} (a partial download or another release?)")
    lines.append(f"  wrote: {result.written['pairs']} pairs (Tp/ + Gt/), {result.written['authentic images']} "
                 f"authentic images (Au/)")
    if result.left_out:
        lines.append(f"  left out ({len(result.left_out)}):")
        for item in result.left_out[:_SHOWN]:
            where = " -> set_aside/" if item.get("copied_to") else ""
            lines.append(f"    - {item['file']}{where}: {item['reason']}")
        if len(result.left_out) > _SHOWN:
            lines.append(f"    ... {len(result.left_out) - _SHOWN} more in {SUMMARY_FILE}")
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


# ---------------------------------------------------------------------------------------------
# protocols: training and test lists over the prepared folders


def find_prepared(root: str) -> Dict[str, List[str]]:
    """``{dataset name: [folders]}`` for every completed prepare output in ``root`` or one level below."""
    found: Dict[str, List[str]] = {}
    candidates = [root] + [os.path.join(root, d) for d in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, d))]
    for folder in candidates:
        path = os.path.join(folder, SUMMARY_FILE)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(info, dict) and info.get("status") == "complete" and info.get("dataset") in PREPARERS:
            found.setdefault(str(info["dataset"]), []).append(folder)
    return found


#: Protocol-CAT entries we cannot prepare (FantasticReality, tampCOCO, compRAISE): JsonDataset files the
#: user provides at these places under --root (the layout of IMDL-BenCo's balanced_dataset.json)
_CAT_EXTERNAL = (
    ("FantasticReality", "FantasticReality_v1/FantasticReality.json"),
    ("tampCOCO sp", "tampCOCO/sp_COCO_list.json"),
    ("tampCOCO cm", "tampCOCO/cm_COCO_list.json"),
    ("tampCOCO bcm", "tampCOCO/bcm_COCO_list.json"),
    ("tampCOCO bcmc", "tampCOCO/bcmc_COCO_list.json"),
    ("compRAISE", "compRAISE/compRAISE_list_1024.json"),
)
_CAT_EXTERNAL_AUTHENTIC = (("FantasticReality authentic", "FantasticReality_v1/FantasticReality_auth.json"),)

#: protocol → (training datasets, test datasets); see write_protocol
PROTOCOLS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "cat": {"train": ("casia2", "imd2020"), "test": ("casia1", "columbia", "coverage", "nist16")},
    "mvss": {"train": ("casia2",), "test": ("casia1", "columbia", "coverage", "nist16", "imd2020")},
    "casia": {"train": ("casia2",), "test": ("casia1",)},
}


def _count_entries(kind: str, path: str) -> int:
    if kind == "ManiDataset":
        return len(pair_folders(os.path.join(path, "Tp"), os.path.join(path, "Gt"))[0])
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return len(data) if isinstance(data, list) else 0
    except (OSError, json.JSONDecodeError):
        return 0


def write_protocol(protocol: str, root: str, out: Optional[str] = None, with_authentic: bool = False,
                   absolute: bool = False) -> Dict[str, object]:
    """Write the training list and ``test_datasets.json`` of ``protocol`` for the folders prepared in ``root``.

    * ``cat``: ``balanced_dataset.json`` (BalancedDataset: ``[[class, path], ...]``) in IMDL-BenCo's order,
      CASIA v2 and IMD2020 from ``root`` plus the FantasticReality/tampCOCO/compRAISE JsonDataset files
      found at their usual places; ``with_authentic`` adds CAT-Net's authentic lists (CASIA v2 Au,
      FantasticReality authentic) as their own entries, as CAT-Net's data_core.py samples them.
    * ``mvss`` / ``casia``: ``train_<protocol>.json`` (JsonDataset of CASIA v2's pairs; with
      ``with_authentic`` also its authentic images as Negative).

    Returns ``{"files": [...], "train": [(name, class, path, count)], "test": {...}, "missing": [...]}``.
    """
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}.")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise UsageError(f"--root {root}: not a folder; expected the folder holding the `benco data prepare` outputs.")
    out = os.path.abspath(out or root)
    os.makedirs(out, exist_ok=True)
    prepared = find_prepared(root)

    def ref(path: str) -> str:
        return path if absolute else os.path.relpath(path, out)

    missing: List[str] = []
    train: List[Tuple[str, str, str, int]] = []
    files: List[str] = []
    spec = PROTOCOLS[protocol]
    for ds in spec["train"]:
        if ds not in prepared:
            missing.append(f"{ds} (run `benco data prepare {ds} ... --out {os.path.join(root, get_spec(ds).default_dir)}`)")
    if protocol == "cat":
        # IMDL-BenCo's balanced_dataset.json order: CASIA v2, FantasticReality, IMD2020, tampCOCO x4, compRAISE
        wanted: List[Tuple[str, str, Optional[str], str]] = [
            ("CASIA v2.0", "ManiDataset", (prepared.get("casia2") or [None])[0], "casia2"),
            ("FantasticReality", "JsonDataset", None, _CAT_EXTERNAL[0][1]),
            ("IMD2020", "ManiDataset", (prepared.get("imd2020") or [None])[0], "imd2020"),
        ] + [(label, "JsonDataset", None, rel) for label, rel in _CAT_EXTERNAL[1:]]
        if with_authentic:
            casia2 = (prepared.get("casia2") or [None])[0]
            au = os.path.join(casia2, "authentic.json") if casia2 else None
            wanted.append(("CASIA v2.0 authentic", "JsonDataset", au if au and os.path.isfile(au) else None,
                           "the prepared CASIA v2.0's authentic.json (needs its Au/ images)"))
            wanted += [(label, "JsonDataset", None, rel) for label, rel in _CAT_EXTERNAL_AUTHENTIC]
        order: List[Tuple[str, str, str]] = []
        for label, cls, path, where in wanted:
            if path is None and cls == "JsonDataset" and where.endswith(".json"):
                candidate = os.path.join(root, where)
                path = candidate if os.path.isfile(candidate) else None
            if path is None:
                if where not in PROTOCOLS["cat"]["train"]:  # prepared datasets are reported above
                    missing.append(f"{label} (a JsonDataset file at {where})" if where.endswith(".json") else
                                   f"{label} ({where})")
                continue
            order.append((label, cls, path))
        if order:
            target = os.path.join(out, "balanced_dataset.json")
            with open(target, "w", encoding="utf-8") as f:
                f.write("[\n" + ",\n".join(" " + json.dumps([cls, ref(p)]) for _, cls, p in order) + "\n]\n")
            files.append(target)
            train = [(label, cls, p, _count_entries(cls, p)) for label, cls, p in order]
    elif "casia2" in prepared:
        folder = prepared["casia2"][0]
        entries, _ = pair_folders(os.path.join(folder, "Tp"), os.path.join(folder, "Gt"))
        au = os.path.join(folder, "Au")
        if with_authentic and os.path.isdir(au):
            entries += [(os.path.join(au, n), NEGATIVE) for n in list_images(au)]
        target = os.path.join(out, f"train_{protocol}.json")
        write_json_dataset(entries, target, relative=not absolute)
        files.append(target)
        train = [("CASIA v2.0" + (" + authentic" if with_authentic else ""), "JsonDataset", target, len(entries))]
    test: Dict[str, str] = {}
    test_counts: Dict[str, int] = {}
    for ds in spec["test"]:
        for folder in prepared.get(ds, []):
            key = os.path.basename(folder.rstrip(os.sep))
            test[key] = ref(folder)
            test_counts[key] = _count_entries("ManiDataset", folder)
        if ds not in prepared:
            target = os.path.join(root, get_spec(ds).default_dir)
            missing.append(f"{ds} (test set; `benco data prepare {ds} ... --out {target}`)")
    if test:
        target = os.path.join(out, "test_datasets.json")
        with open(target, "w", encoding="utf-8") as f:
            json.dump(test, f, indent=4)
            f.write("\n")
        files.append(target)
    if not files:
        raise DatasetError(f"{root}: no prepared dataset of protocol {protocol!r} found; missing: " + "; ".join(missing))
    return {"files": files, "train": train, "test": test_counts, "missing": missing}
