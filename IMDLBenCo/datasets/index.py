"""The dataset index: public IMDL datasets, their sizes, errata and where to download them.

The rows follow the "Tampering Detection Dataset Index" page of IMDL-BenCo's documentation
(scu-zjz/IMDLBenCo-doc, ``imdl_data_model_hub/data/IMDLdatasets``, last updated 2025-04-09), with
the years taken from the citations on that page and the errata from the correction repositories
it points to (SunnyHaze/IML-Dataset-Corrections, namtpham/casia1groundtruth, namtpham/casia2groundtruth).
Rows marked ``source: "added"`` are not on that page. The page's own numbers are kept as printed,
including the two it got backwards (NIST16's resolutions) and the ones it leaves empty (Defacto).

Standard library only: ``benco data index`` must not import numpy or torch.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence

__all__ = ["DATASET_INDEX", "AIGC_INDEX", "AIGC_NOTE", "find_entry", "format_table", "format_entry", "index_json"]

_DOCS = "IMDL-BenCo documentation, Tampering Detection Dataset Index"

#: one dict per dataset; keys: name, year, authentic, tampered, min_resolution, max_resolution,
#: manipulation, summary, errata (list), download (list), prepare (``benco data prepare`` name or
#: None), source
DATASET_INDEX: List[Dict[str, object]] = [
    {
        "name": "CASIA v1.0", "year": 2013, "authentic": "800", "tampered": "921",
        "min_resolution": "384x256", "max_resolution": "384x256",
        "manipulation": "splicing, copy-move",
        "summary": "Mostly splicing; the official release has no 0/1 masks (they come from Pham et al. 2019).",
        "errata": [
            "No ground truth in the official release: use the casia1groundtruth masks (920 for 921 images).",
            "File-name errors in the official tampered set: the 'Modified Tp' release renames them "
            "(FileNameCorrection.xlsx in casia1groundtruth).",
            "Tp/Sp/Sp_D_NRN_A_cha0011_sec0011_0542.jpg has no mask: leave it out (IML-Dataset-Corrections).",
        ],
        "download": ["https://github.com/namtpham/casia1groundtruth (masks; README links the images)"],
        "prepare": "casia1", "source": _DOCS,
    },
    {
        "name": "CASIA v2.0", "year": 2013, "authentic": "7491", "tampered": "5123",
        "min_resolution": "320x240", "max_resolution": "800x600",
        "manipulation": "splicing, copy-move, post-processing",
        "summary": "Splicing and copy-move with post-processing; masks by Pham et al., corrected by SunnyHaze.",
        "errata": [
            "99 tampered images were misclassified by name (39 Tp_S_ -> Tp_D_, 60 Tp_D_ -> Tp_S_; "
            "casia2groundtruth renames them).",
            "17 masks do not match their image's size or rotation in the Pham ground truth "
            "(fixed in SunnyHaze/CASIA2.0-Corrected-Groundtruth).",
            "2 spliced images were cropped from authentic ones, so no mask could be derived "
            "(casia2groundtruth Notes/cannotDetect.txt).",
            "Some authentic images are duplicates (list linked from casia2groundtruth); kept for comparability.",
        ],
        "download": [
            "https://github.com/SunnyHaze/CASIA2.0-Corrected-Groundtruth (corrected, Au/Tp/Gt)",
            "https://github.com/namtpham/casia2groundtruth (original Pham ground truth)",
        ],
        "prepare": "casia2", "source": _DOCS,
    },
    {
        "name": "Columbia", "year": 2006, "authentic": "183", "tampered": "180",
        "min_resolution": "757x568", "max_resolution": "1152x768",
        "manipulation": "splicing (uncompressed)",
        "summary": "Uncompressed splicing; the colour set (authsplcuncmp, counts above) is the usual benchmark. "
                   "The black-and-white block set has 933 authentic / 921 spliced 128x128 blocks.",
        "errata": [
            "Masks are colour-coded edge/region maps (4cam_splc/edgemask/*_edgemask.jpg), not binary masks: "
            "one camera's region red, the other's green, light shades near the boundary.",
        ],
        "download": ["https://www.ee.columbia.edu/ln/dvmm/downloads/authsplcuncmp/"],
        "prepare": "columbia", "source": _DOCS,
    },
    {
        "name": "COVERAGE", "year": 2016, "authentic": "100", "tampered": "100",
        "min_resolution": "334x190", "max_resolution": "752x472",
        "manipulation": "copy-move (similar objects)",
        "summary": "Copy-move where the copy resembles a genuine object; masks copy/paste/forged per image.",
        "errata": [
            "9 pairs (ids 41, 48, 55, 56, 57, 58, 59, 61, 95; all three masks) differ in size from their image.",
            "Releases before 27 Sep 2017 swapped some original/tampered labels (dataset readme).",
        ],
        "download": ["https://github.com/wenbihan/coverage"],
        "prepare": "coverage", "source": _DOCS,
    },
    {
        "name": "NIST16", "year": 2016, "authentic": "0", "tampered": "564",
        "min_resolution": "5616x3744", "max_resolution": "500x500",
        "manipulation": "splicing, removal, copy-move",
        "summary": "High resolution; resize (long side 1024) or slide a window. Train/test leakage between "
                   "near-identical probes. The index prints the resolutions in this order (min/max swapped?) and "
                   "0 authentic images, though the reference CSV also lists non-manipulated probes (IsTarget=N).",
        "errata": [
            "Masks are black = manipulated on white; invert them.",
            "Probe and mask file names differ: pair them through reference/manipulation/NC2016-manipulation-ref.csv.",
            "Many probes are near-duplicates of one another (leakage when split at random).",
        ],
        "download": ["https://mig.nist.gov/MFC/PubData/Resources.html (registration)"],
        "prepare": "nist16", "source": _DOCS,
    },
    {
        "name": "Defacto", "year": 2019, "authentic": "", "tampered": "",
        "min_resolution": "", "max_resolution": "", "manipulation": "splice, copy-move, inpaint, face",
        "summary": "Large, COCO-based; manipulated regions are a very small part of each image.",
        "errata": [], "download": ["https://www.kaggle.com/defactodataset/datasets"],
        "prepare": None, "source": _DOCS,
    },
    {
        "name": "IMD2020", "year": 2020, "authentic": "414", "tampered": "2020",
        "min_resolution": "260x193", "max_resolution": "2958x4437",
        "manipulation": "real-life edits",
        "summary": "Real-life manipulated images from the Internet with their originals and manual masks "
                   "(the page's text says 2,010 images).",
        "errata": ["IMD2020/z14/00030_fake.jpg: mask size differs from the image (SunnyHaze/IML-Dataset-Corrections)."],
        "download": ["https://staff.utia.cas.cz/novozada/db/IMD2020.zip"],
        "prepare": "imd2020", "source": _DOCS,
    },
    {
        "name": "FantasticReality", "year": 2019, "authentic": "16592", "tampered": "19423",
        "min_resolution": "500x333", "max_resolution": "6000x4000", "manipulation": "splicing",
        "summary": "Splicing with segmentation labels; masks come as .npz.",
        "errata": ["Official link (zefirus.org/MAG) is dead; see CAT-Net issue 51."],
        "download": ["https://github.com/mjkwon2021/CAT-Net/issues/51"],
        "prepare": None, "source": _DOCS,
    },
    {
        "name": "PS-Battles", "year": 2018, "authentic": "11142", "tampered": "91886",
        "min_resolution": "68x136", "max_resolution": "12024x20000", "manipulation": "creative edits",
        "summary": "Reddit r/photoshopbattles originals and their edits; no masks.",
        "errata": [], "download": ["https://github.com/dbisUnibas/PS-Battles"], "prepare": None, "source": _DOCS,
    },
    {
        "name": "Carvalho (DSO-1)", "year": 2013, "authentic": "100", "tampered": "100",
        "min_resolution": "2048x1536", "max_resolution": "2048x1536", "manipulation": "splicing (people)",
        "summary": "People spliced into photos of people, with colour and brightness adjustment.",
        "errata": ["The documented download link may not work."],
        "download": ["http://ic.unicamp.br/~rocha/pub/downloads/2014-tiago-carvalho-thesis/tifs-database.zip"],
        "prepare": None, "source": _DOCS,
    },
    {
        "name": "GRIP", "year": 2015, "authentic": "80", "tampered": "80",
        "min_resolution": "1024x768", "max_resolution": "1024x768", "manipulation": "copy-move (small regions)",
        "summary": "Copy-move under post-processing; small tampered areas.",
        "errata": [], "download": ["https://www.grip.unina.it/download/prog/CMFD/"], "prepare": None, "source": _DOCS,
    },
    {
        "name": "CoMoFoD", "year": 2013, "authentic": "260", "tampered": "260",
        "min_resolution": "512x512", "max_resolution": "3000x3000", "manipulation": "copy-move + post-processing",
        "summary": "Copy-move with geometric transforms and post-processing of forged and original images.",
        "errata": ["The large (3000x2000) category has no public link."],
        "download": ["https://www.vcl.fer.hr/comofod/download.html"], "prepare": None, "source": _DOCS,
    },
    {
        "name": "CocoGlide", "year": 2023, "authentic": "512", "tampered": "512",
        "min_resolution": "256x256", "max_resolution": "256x256", "manipulation": "diffusion inpainting (GLIDE)",
        "summary": "COCO crops locally replaced by GLIDE from a text prompt.",
        "errata": [], "download": ["https://www.grip.unina.it/download/prog/TruFor/CocoGlide.zip"],
        "prepare": None, "source": _DOCS,
    },
    {
        "name": "tampCOCO", "year": 2022, "authentic": "0", "tampered": "800000",
        "min_resolution": "72x51", "max_resolution": "640x640", "manipulation": "splicing (sp), copy-move (cm)",
        "summary": "COCO-based, JPEG Q60-100 (CAT-Net's training data).",
        "errata": [], "download": ["https://www.kaggle.com/datasets/qsii24/tampcoco"], "prepare": None, "source": _DOCS,
    },
    {
        "name": "compRAISE", "year": 2022, "authentic": "24462", "tampered": "0",
        "min_resolution": "2278x1515", "max_resolution": "6159x4079", "manipulation": "copy-move (RAISE)",
        "summary": "High-resolution RAISE images with irregular COCO-shaped copy-moves.",
        "errata": [], "download": ["https://www.kaggle.com/datasets/qsii24/compraise"], "prepare": None, "source": _DOCS,
    },
    {
        "name": "OpenForensics", "year": 2021, "authentic": "0", "tampered": "2000",
        "min_resolution": "512x512", "max_resolution": "512x512", "manipulation": "face forgery (multi-face)",
        "summary": "Multi-face forgery detection and segmentation in the wild.",
        "errata": [], "download": ["https://zenodo.org/records/5528418"], "prepare": None, "source": _DOCS,
    },
    {
        "name": "Korus (Realistic Tampering)", "year": 2017, "authentic": "220", "tampered": "220",
        "min_resolution": "1920x1080", "max_resolution": "1920x1080",
        "manipulation": "insertion, removal (by hand)",
        "summary": "Four cameras; 3-level maps (white = semantic change, grey = collateral damage).",
        "errata": ["Grey 'collateral damage' pixels: the dataset readme counts them as tampered for standard evaluation."],
        "download": ["http://kt.agh.edu.pl/~korus/downloads/dataset-realistic-tampering/"],
        "prepare": "korus", "source": "added (not on IMDL-BenCo's index page; dataset readme v2.0)",
    },
]

#: IMDL-BenCo's "AIGC Generated Content Dataset Index" page has a title and no entries (checked in
#: scu-zjz/IMDLBenCo-doc, English and Chinese pages, last updated 2025-03-30 and 2025-04-03)
AIGC_NOTE = ("IMDL-BenCo's 'AIGC Generated Content Dataset Index' page has only its title (no entries, last "
             "updated 2025-04). Listed here: the generated-content rows of its tampering index and entries we added.")

AIGC_INDEX: List[Dict[str, object]] = [
    {
        "name": "CocoGlide", "year": 2023, "authentic": "512", "tampered": "512",
        "min_resolution": "256x256", "max_resolution": "256x256", "manipulation": "diffusion inpainting (GLIDE)",
        "summary": "Local generative edits with masks (from the tampering index).",
        "errata": [], "download": ["https://www.grip.unina.it/download/prog/TruFor/CocoGlide.zip"],
        "prepare": None, "source": _DOCS,
    },
    {
        "name": "GenImage", "year": 2023, "authentic": "~1.3M", "tampered": "1350000",
        "min_resolution": "", "max_resolution": "", "manipulation": "fully generated (8 generators)",
        "summary": "Whole-image generation for 1000 ImageNet classes; real images from ImageNet; image-level "
                   "labels only, no masks.",
        "errata": [], "download": ["https://arxiv.org/abs/2306.08571 (paper; links the data)"],
        "prepare": None, "source": "added (NeurIPS 2023 Datasets and Benchmarks paper)",
    },
]


def _norm(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def find_entry(name: str, aigc: bool = False) -> Optional[Dict[str, object]]:
    """The index row whose name (or prepare name) matches ``name``, ignoring case and punctuation."""
    key = _norm(name)
    for row in AIGC_INDEX if aigc else DATASET_INDEX:
        names = [_norm(str(row["name"])), _norm(str(row["name"]).split("(")[0])]
        if row.get("prepare"):
            names.append(_norm(str(row["prepare"])))
        if key in names:
            return row
    return None


def format_table(rows: Sequence[Dict[str, object]]) -> str:
    """A plain-text table: name, year, authentic/tampered, resolution, manipulation, prepare name."""
    header = ("dataset", "year", "authentic/tamp.", "resolution", "manipulation", "prepare")
    lines = []
    for r in rows:
        lo, hi = r["min_resolution"], r["max_resolution"]
        res = lo if lo == hi else f"{lo} - {hi}"
        lines.append((
            str(r["name"]), str(r["year"]), f"{r['authentic'] or '?'}/{r['tampered'] or '?'}",
            str(res or "?"), str(r["manipulation"]), str(r["prepare"] or "-"),
        ))
    caps = (28, 4, 16, 22, 36, 8)  # long cells are cut so that the table stays readable
    cells = [tuple(c if len(c) <= cap else c[: cap - 3] + "..." for c, cap in zip(row, caps)) for row in lines]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    out = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row).rstrip() for row in cells]
    return "\n".join(out)


def format_entry(row: Dict[str, object]) -> str:
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
    payload: Dict[str, object] = {"datasets": AIGC_INDEX if aigc else DATASET_INDEX}
    if aigc:
        payload["note"] = AIGC_NOTE
    return json.dumps(payload, indent=1, ensure_ascii=False)
