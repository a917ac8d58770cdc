"""The preparers, by name: :data:`PREPARERS` and :func:`get_spec`."""

from __future__ import annotations

from ...errors import UsageError
from . import (
    autosplice,
    casia1,
    casia2,
    cocoglide,
    columbia,
    coverage,
    imd2020,
    instruct_edit,
    korus,
    nist16,
    opensdid,
    tgif,
)
from .base import DatasetSpec

__all__ = ["PREPARERS", "FLAGS", "AIGC", "get_spec"]

PREPARERS: dict[str, DatasetSpec] = {
    m.SPEC.name: m.SPEC for m in (casia1, casia2, columbia, coverage, nist16, imd2020, korus,
                                  cocoglide, autosplice, opensdid, tgif, instruct_edit)
}

#: the preparers of AI-generated and AI-edited content (``benco data index --aigc``)
AIGC = ("cocoglide", "autosplice", "opensdid", "tgif", "magicbrush")

#: option attribute → the command-line flag that sets it
FLAGS = {"columbia_tampered": "--columbia-tampered", "mismatch": "--mismatch", "nist_polarity": "--nist-polarity",
         "korus_collateral": "--korus-collateral", "autosplice_quality": "--autosplice-quality",
         "opensdid_entire": "--opensdid-entire"}


def get_spec(name: str) -> DatasetSpec:
    """The preparer for ``name`` or one of its aliases (case-insensitive)."""
    key = name.lower().replace("_", "-").replace(" ", "")
    for spec in PREPARERS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise UsageError(f"unknown dataset {name!r}; `benco data prepare` knows: {', '.join(PREPARERS)} "
                     f"(run it without arguments for their expected input)")
