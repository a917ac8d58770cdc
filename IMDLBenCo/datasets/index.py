"""The dataset index: public IMDL datasets, their sizes, errata and where to download them.

The rows follow the "Tampering Detection Dataset Index" page of IMDL-BenCo's documentation
(scu-zjz/IMDLBenCo-doc, ``imdl_data_model_hub/data/IMDLdatasets``, last updated 2025-04-09), with
the years taken from the citations on that page and the errata from the correction repositories
it points to (SunnyHaze/IML-Dataset-Corrections, namtpham/casia1groundtruth, namtpham/casia2groundtruth).
Rows marked ``source: "added"`` are not on that page. The page's own numbers are kept as printed,
including the two it got backwards (NIST16's resolutions) and the ones it leaves empty (Defacto).

The rows live in ``dataset_index.json`` next to this module (package data); this module reads it
with the standard library only: ``benco data index`` must not import numpy or torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

__all__ = ["DATASET_INDEX", "AIGC_INDEX", "AIGC_NOTE", "find_entry", "format_table", "format_entry", "index_json"]

#: the data file (shipped as package data) holding both tables
INDEX_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dataset_index.json")


def _load() -> dict[str, object]:
    try:
        with open(INDEX_FILE, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:  # a broken installation, not the user's input
        raise RuntimeError(f"{INDEX_FILE}: the dataset index shipped with IMDLBenCo cannot be read ({err}); "
                           f"reinstall the package.") from None
    return data


_DATA = _load()

#: one dict per dataset; keys: name, year, authentic, tampered, min_resolution, max_resolution,
#: manipulation, summary, errata (list), download (list), prepare (``benco data prepare`` name or
#: None), source
DATASET_INDEX: list[dict[str, object]] = list(_DATA["datasets"])  # type: ignore[arg-type]

#: IMDL-BenCo's "AIGC Generated Content Dataset Index" page has a title and no entries (checked in
#: scu-zjz/IMDLBenCo-doc, English and Chinese pages, last updated 2025-03-30 and 2025-04-03)
AIGC_NOTE: str = str(_DATA["aigc_note"])

#: the generated-content rows (same keys)
AIGC_INDEX: list[dict[str, object]] = list(_DATA["aigc"])  # type: ignore[arg-type]


def _norm(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def find_entry(name: str, aigc: bool = False) -> dict[str, object] | None:
    """The index row whose name (or prepare name) matches ``name``, ignoring case and punctuation."""
    key = _norm(name)
    for row in AIGC_INDEX if aigc else DATASET_INDEX:
        names = [_norm(str(row["name"])), _norm(str(row["name"]).split("(")[0])]
        if row.get("prepare"):
            names.append(_norm(str(row["prepare"])))
        if key in names:
            return row
    return None


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """A plain-text table: name, year, authentic/tampered, resolution, manipulation, prepare name."""
    header = ("dataset", "year", "authentic/tamp.", "resolution", "manipulation", "prepare")
    lines = []
    for r in rows:
        lo, hi = r["min_resolution"], r["max_resolution"]
        res = lo if lo == hi else f"{lo} - {hi}" if lo and hi else f"up to {hi}" if hi else f"from {lo}"
        lines.append((
            str(r["name"]), str(r["year"]), f"{r['authentic'] or '?'}/{r['tampered'] or '?'}",
            str(res or "?"), str(r["manipulation"]), str(r["prepare"] or "-"),
        ))
    caps = (28, 4, 16, 22, 36, 10)  # long cells are cut so that the table stays readable
    cells = [tuple(c if len(c) <= cap else c[: cap - 3] + "..." for c, cap in zip(row, caps)) for row in lines]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    out = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row).rstrip() for row in cells]
    return "\n".join(out)


def format_entry(row: dict[str, object]) -> str:
    """Every field of one row, errata and download links included."""
    lines = [
        f"{row['name']} ({row['year']})",
        f"  authentic / tampered: {row['authentic'] or '?'} / {row['tampered'] or '?'}",
        f"  resolution: {row['min_resolution'] or '?'} (min) - {row['max_resolution'] or '?'} (max)",
        f"  manipulation: {row['manipulation']}",
        f"  {row['summary']}",
    ]
    errata = list(row.get("errata") or [])
    lines.append("  known errata:" + ("" if errata else " none listed"))
    lines += [f"    - {e}" for e in errata]
    lines.append("  download:")
    lines += [f"    - {d}" for d in row.get("download") or []]
    if row.get("prepare"):
        lines.append(f"  prepare: benco data prepare {row['prepare']} SOURCE... --out DIR")
    lines.append(f"  source: {row['source']}")
    return "\n".join(lines)


def index_json(aigc: bool = False) -> str:
    """The index as JSON: ``{"datasets": [...], "note": ...}``."""
    payload: dict[str, object] = {"datasets": AIGC_INDEX if aigc else DATASET_INDEX}
    if aigc:
        payload["note"] = AIGC_NOTE
    return json.dumps(payload, indent=1, ensure_ascii=False)
