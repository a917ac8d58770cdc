"""The published (reported) tables shipped in ``published/`` and how our names meet theirs.

``names.json`` is the mapping, as data: registered model (+ options) → published method names,
protocol names, test-set aliases, and the attack levels of the published robustness table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunFolderError

HERE = Path(__file__).resolve().parent
PUBLISHED_DIR = HERE / "published"
NAMES_FILE = HERE / "names.json"

_SUFFIX = re.compile(r"[_\-\s](\d{3,4})$")  # NIST16_1024, IMD_20_1024: a resized copy of the same set


def norm(text: Any) -> str:
    """Lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def norm_protocol(name: Any) -> str:
    """``Protocol-CAT``, ``protocol_cat``, ``cat`` → ``cat``."""
    key = norm(name)
    return key[len("protocol"):] if key.startswith("protocol") and len(key) > len("protocol") else key


def norm_set(name: Any) -> str:
    return norm(_SUFFIX.sub("", str(name).strip()))


@dataclass
class ReportedRow:
    method: str
    values: dict[str, float | None]  # canonical set name → value
    avg: float | None = None
    worst: dict[str, float | None] = field(default_factory=dict)


@dataclass
class ReportedTable:
    """One published table (a file of ``published/``)."""

    file: str
    protocol: str
    metric: str
    source: str
    note: str
    sets: list[str]  # canonical set names, in the source's column order
    rows: list[ReportedRow]
    protocols: list[str]  # normalised protocol names this table belongs to
    robustness: dict[str, Any] | None = None  # names.json "robustness" entry

    @property
    def is_robustness(self) -> bool:
        return self.robustness is not None

    def row(self, method: str) -> ReportedRow | None:
        return next((r for r in self.rows if norm(r.method) == norm(method)), None)


class Names:
    """The name mapping of ``names.json``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self._set_alias: dict[str, str] = {}
        for canonical, aliases in data.get("sets", {}).items():
            for alias in [canonical, *aliases]:
                self._set_alias[norm_set(alias)] = canonical

    def canonical_set(self, name: str) -> str:
        """The published name of a test set (``COVERAGE`` → ``Coverage``); unknown names stay as they are."""
        return self._set_alias.get(norm_set(name), name)

    def methods(self, model: str, options: dict[str, Any] | None = None) -> list[str]:
        """Published method names a registered model (with its options) may appear under."""
        options = options or {}
        defaults = self.data.get("model_defaults", {}).get(model, {})
        found: list[str] = []
        for entry in self.data.get("models", []):
            if entry.get("model") != model:
                continue
            wanted = entry.get("options") or {}
            if all(options.get(k, defaults.get(k)) == v for k, v in wanted.items()):
                found.append(entry["method"])
        if not any(e.get("model") == model for e in self.data.get("models", [])):
            found.append(model)  # a model outside the mapping still meets a method of the same name
        return found

    def larger_is_milder(self, attack: str) -> bool:
        """Whether a larger parameter of ``attack`` is a milder attack (JPEG quality): its axis runs high to low."""
        return norm(attack) in {norm(a) for a in self.data.get("larger_is_milder", [])}

    def attack_key(self, robustness: dict[str, Any], attack: str) -> str | None:
        for key, spec in robustness.get("attacks", {}).items():
            if norm(attack) in {norm(key), *(norm(n) for n in spec.get("names", []))}:
                return key
        return None


def load_names() -> Names:
    return Names(json.loads(NAMES_FILE.read_text(encoding="utf-8")))


def _read_table(path: Path, names: Names, protocols: Iterable[str] | None = None) -> ReportedTable:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sets = [names.canonical_set(s) for s in data["sets"]]
        rows = []
        for row in data["rows"]:
            values = list(row["values"])
            if len(values) != len(sets):
                raise ValueError(f"row {row.get('method')!r} has {len(values)} values for {len(sets)} sets")
            worst = row.get("worst") or []
            rows.append(ReportedRow(method=str(row["method"]), values=dict(zip(sets, values)),
                                    avg=row.get("avg"), worst=dict(zip(sets, worst))))
    except OSError as err:
        raise RunFolderError(f"{path}: cannot be read ({err.strerror or err}).") from None
    except (ValueError, KeyError, TypeError) as err:
        raise RunFolderError(f"{path}: not a published table ({err}); expected the format of "
                             "IMDLBenCo/leaderboard/published/README.md: protocol, metric, source, note, sets, "
                             "rows of {method, values, avg}.") from None
    listed = names.data.get("protocols", {}).get(path.name)
    wanted = list(protocols or listed or [data.get("protocol", path.stem)])
    return ReportedTable(
        file=path.name, protocol=str(data.get("protocol", path.stem)), metric=str(data.get("metric", "")),
        source=str(data.get("source", "")), note=str(data.get("note", "")), sets=sets, rows=rows,
        protocols=[norm_protocol(p) for p in wanted],
        robustness=names.data.get("robustness", {}).get(path.name),
    )


def load_published(names: Names, extra: Sequence[Path] = ()) -> list[ReportedTable]:
    """The shipped tables, then any extra files of the same format (``--reported FILE``)."""
    tables = [_read_table(p, names) for p in sorted(PUBLISHED_DIR.glob("*.json"))]
    for path in extra:
        tables.append(_read_table(Path(path), names))
    return tables
