"""The SOURCE folders and archives of one ``benco data prepare`` run, and finding files in them."""

from __future__ import annotations

import os
import re
import tempfile
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from ..io import DatasetError
from .archive import ARCHIVES, archive_ext, extract
from .base import inside

__all__ = ["SourceTree", "find_or_extract"]


class SourceTree:
    """The SOURCE folders and archives of one run; archives are extracted into a temporary folder."""

    def __init__(self, sources: Sequence[str], tmp: str) -> None:
        self.tmp = tmp
        self.roots: List[Tuple[str, str]] = []  # (folder, label shown in the manifest)
        self.sources = [str(s) for s in sources]
        for src in self.sources:
            if os.path.isdir(src):
                self.roots.append((os.path.abspath(src), os.path.basename(os.path.abspath(src)) or src))
            elif os.path.isfile(src) and archive_ext(src):
                self.roots.append((extract(src, self._fresh_dir()), os.path.basename(src)))
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
            self.roots.append((extract(archive, self._fresh_dir()), self.display(archive)))
        return bool(hits)

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
        return any(inside(path, root) for root, _ in self.roots)

    def describe(self) -> str:
        return ", ".join(self.sources)


def find_or_extract(tree: SourceTree, names: Sequence[str], archives: Sequence[str],
                    accept: Optional[Callable[[str], bool]] = None) -> List[str]:
    """Folders called ``names``; if there are none, extract the archives called ``archives`` and look again."""
    found = tree.find_dirs(names, accept)
    if not found and tree.extract_named(archives):
        found = tree.find_dirs(names, accept)
    return found
