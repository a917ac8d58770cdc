"""The SOURCE folders and archives of one ``benco data prepare`` run, and finding files in them.

:class:`SourceTree` applies rule 1 of :mod:`.base` (paths stay inside their source): every folder
and file it finds, every path a listing file names, and every file of a plan before it is copied is
resolved (``os.path.realpath``: symbolic links followed) and must lie inside a SOURCE folder the user
passed or inside the extraction folder of an archive the user passed.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence

from ..io import DatasetError
from .archive import ARCHIVES, ExtractBudget, archive_ext, extract, format_bytes
from .base import MAX_LISTING_BYTES, inside

__all__ = ["SourceTree", "find_or_extract"]


class SourceTree:
    """The SOURCE folders and archives of one run; archives are extracted into a temporary folder."""

    def __init__(self, sources: Sequence[str], tmp: str, budget: ExtractBudget | None = None) -> None:
        self.tmp = tmp
        self.budget = budget or ExtractBudget()
        self.roots: list[tuple[str, str]] = []  # (folder, label shown in the manifest)
        self.sources = [str(s) for s in sources]
        for src in self.sources:
            if os.path.isdir(src):
                self.roots.append((os.path.abspath(src), os.path.basename(os.path.abspath(src)) or src))
            elif os.path.isfile(src) and archive_ext(src):
                self.roots.append((extract(src, self._fresh_dir(), self.budget), os.path.basename(src)))
            elif os.path.isfile(src):
                raise DatasetError(f"{src}: not a folder and not an archive this command can read "
                                   f"({', '.join(ARCHIVES)}); pass the downloaded archive or the folder it extracts to.")
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

    def find_dirs(self, names: Sequence[str], accept: Callable[[str], bool] | None = None) -> list[str]:
        """Folders whose name is one of ``names`` (case-insensitive) and that ``accept``, shallowest first."""
        wanted = {n.lower() for n in names}
        found = [d for d in self.walk_dirs() if os.path.basename(d).lower() in wanted and (accept is None or accept(d))]
        return sorted(found, key=lambda d: (d.count(os.sep), d))

    def find_files(self, pattern: str) -> list[str]:
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
            self.roots.append((extract(archive, self._fresh_dir(), self.budget), self.display(archive)))
        return bool(hits)

    def add_root(self, folder: str, label: str) -> None:
        """A folder this run wrote from the sources (e.g. images unpacked from a parquet file): its files
        count as inside the sources, shown as ``label/...``."""
        self.roots.append((folder, label))

    def scratch_dir(self) -> str:
        """A new empty folder in the run's temporary folder."""
        return self._fresh_dir()

    def display(self, path: str) -> str:
        """``path`` as the user knows it: relative to the SOURCE (or archive) it came from."""
        best = None
        for root, label in self.roots:
            if inside(path, root) and (best is None or len(root) > len(best[0])):
                best = (root, label)
        if best is None:
            return path
        rel = os.path.relpath(path, best[0])
        return best[1] if rel == "." else f"{best[1]}/{rel.replace(os.sep, '/')}"

    def contains(self, path: str) -> bool:
        """True when ``path``, symbolic links resolved, lies inside a SOURCE folder or an extracted archive."""
        return any(inside(path, root) for root, _ in self.roots)

    def admit(self, path: str) -> str:
        """Why the file ``path`` may not be read (``""`` when it may): it must resolve inside the sources and
        be a regular file. Every file of a plan passes here before it is copied."""
        if not self.contains(path):
            target = os.path.realpath(path)
            return (f"refused: resolves to {target}, outside the sources given"
                    + (" (a symbolic link pointing out)" if os.path.islink(path) or target != os.path.abspath(path)
                       else ""))
        if not os.path.isfile(path):
            return "not a regular file"
        return ""

    def resolve_listed(self, base: str, listed: str) -> tuple[str | None, str]:
        """A path named inside a file of the dataset (a CSV or JSON listing), relative to ``base``.

        Returns ``(path, "")``, or ``(None, reason)`` for an absolute path, a ``..`` component, or a path
        that resolves (links followed) outside the sources.
        """
        text = listed.strip()
        parts = text.replace("\\", "/").split("/")
        if not text:
            return None, "empty path"
        if text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":"):
            return None, f"refused: {text!r} is an absolute path; paths in the dataset's files must be relative"
        if ".." in parts:
            return None, f"refused: {text!r} climbs out with '..'; paths in the dataset's files must stay inside it"
        path = os.path.join(base, *[p for p in parts if p not in ("", ".")])
        if not self.contains(path):
            return None, f"refused: {text!r} resolves to {os.path.realpath(path)}, outside the sources given"
        return path, ""

    def read_listing(self, path: str, what: str) -> str:
        """The text of a listing file of the dataset (CSV, JSON, TXT), after checking where it lies and its size."""
        why = self.admit(path)
        if why:
            raise DatasetError(f"{self.display(path)}: {what} {why}.")
        size = os.path.getsize(path)
        if size > MAX_LISTING_BYTES:
            raise DatasetError(f"{self.display(path)}: {what} is {format_bytes(size)}, more than the "
                               f"{format_bytes(MAX_LISTING_BYTES)} such a file can hold; it is not the file expected.")
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            return f.read()

    def describe(self) -> str:
        return ", ".join(self.sources)


def find_or_extract(tree: SourceTree, names: Sequence[str], archives: Sequence[str],
                    accept: Callable[[str], bool] | None = None) -> list[str]:
    """Folders called ``names``; if there are none, extract the archives called ``archives`` and look again."""
    found = tree.find_dirs(names, accept)
    if not found and tree.extract_named(archives):
        found = tree.find_dirs(names, accept)
    return found
