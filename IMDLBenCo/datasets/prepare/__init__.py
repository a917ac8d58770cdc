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

The package: :mod:`.base` (records, path helpers, pairing), :mod:`.archive` (extraction),
:mod:`.sources` (finding files in the SOURCEs), one module per dataset (``casia1`` ... ``korus``:
its layout, errata and ``collect`` function), :mod:`.registry` (:data:`PREPARERS`), :mod:`.writer`
(writing, manifest, summary, check) and :mod:`.protocol` (``benco data protocol``).
"""

from __future__ import annotations

from .base import MANIFEST_FILE, SUMMARY_FILE, Correction, DatasetSpec, PrepareOptions, PrepareResult
from .protocol import PROTOCOLS, find_prepared, write_protocol
from .registry import PREPARERS, get_spec
from .writer import format_summary, prepare_dataset

__all__ = [
    "PrepareOptions", "Correction", "PrepareResult", "DatasetSpec", "PREPARERS", "get_spec",
    "prepare_dataset", "format_summary", "find_prepared", "write_protocol", "PROTOCOLS",
    "SUMMARY_FILE", "MANIFEST_FILE",
]
