"""``benco predict``: masks and scores for image files or folders, no dataset and no ground truth.

    benco predict photos/ extra.jpg --checkpoint_path output_dir/checkpoint-best.pth

writes, under ``--output_dir`` (default ``./predictions``):

* ``pred/<name>.png``: the predicted mask, 8-bit grey (``round(p × 255)``), at the image's size;
* ``overlay/<name>.jpg``: the image with the mask drawn over it in red (opacity ∝ probability);
* ``scores.json``: per image its ``pred_label`` (the model's, or read from the mask with
  ``--label_from_mask``), the highest pixel probability, the fraction of pixels at or above 0.5,
  its size and the paths above;
* ``predictions.json``, ``pred_label.json``, ``config.json``: as ``test_save_images.py`` writes.

The model: ``--model NAME`` plus its options, as for the scripts; when they are left out they
come from the training run the checkpoint belongs to (its ``args`` and ``model_kwargs``), with the
command line winning. A model defined in the user's own file is registered with ``--import
mymodel`` (a module importable from the working directory). Images larger than ``--image_size``:
``--sliding_window`` (the default here: overlapping tiles, blended), ``--if_resizing`` or
``--if_padding`` (shrinks an image too large to pad, aspect kept).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import runfolder

logger = logging.getLogger("IMDLBenCo.engine")

#: what ``benco predict`` adds to test_save_images.py's options
PREDICT_HELP = """\
usage: benco predict INPUT [INPUT ...] --checkpoint_path FILE.pth [--model NAME] [--import MODULE]
                     [--output_dir DIR] [--image_size S] [--sliding_window | --if_resizing | --if_padding]
                     [--window_overlap F] [--label_from_mask max|topk] [model options] [script options]

Predict masks and scores for image files and folders (searched recursively).

  INPUT                  image files or folders
  --checkpoint_path      the trained weights (.pth); a checkpoint written by train.py also gives the
                         model, its options and --image_size
  --import MODULE        import MODULE first (e.g. mymodel: registers your own model)
  --output_dir DIR       default ./predictions

Every option of test_save_images.py (below) is accepted.
"""


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="benco predict", add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    own, rest = p.parse_known_args(list(argv))
    inputs: list[str] = []
    passthrough: list[str] = []
    i = 0
    while i < len(rest):  # positional inputs come before or between the options
        token = rest[i]
        if token.startswith("-"):
            passthrough.append(token)
            if "=" not in token and i + 1 < len(rest) and not rest[i + 1].startswith("-") and _takes_value(token):
                passthrough.append(rest[i + 1])
                i += 1
        else:
            inputs.append(token)
        i += 1
    own.inputs = inputs
    return own, passthrough


def _takes_value(option: str) -> bool:
    """Whether ``option`` reads the next token: every option but the scripts' switches (model
    booleans are written ``--opt true|false``, IMDLBenCo.options)."""
    from ..runoptions import switches

    return option not in switches()


def list_inputs(inputs: Sequence[str], exclude: Sequence[os.PathLike] = ()) -> list[str]:
    """Absolute paths of the images named by ``inputs`` (files, or folders searched recursively),
    in the order given, each once. Folders under ``exclude`` (the output folder: predicting into
    a folder inside the input must not read its own earlier masks) and folders holding a run of
    ours (a ``scores.json`` or ``predictions.json``) are skipped."""
    from ..datasets.io import is_image_file
    from ..errors import UsageError

    if not inputs:
        raise UsageError("give at least one image file or folder (benco predict photos/ "
                         "--checkpoint_path model.pth)")
    skipped = [os.path.realpath(p) for p in exclude]

    def excluded(folder: str) -> bool:
        real = os.path.realpath(folder)
        if any(real == x or real.startswith(x + os.sep) for x in skipped):
            return True
        return any(os.path.isfile(os.path.join(folder, marker)) for marker in (runfolder.SCORES, runfolder.PREDICTIONS))

    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = []
            for root, dirs, files in os.walk(path):
                if excluded(root):
                    dirs[:] = []
                    continue
                dirs.sort()
                images += [str(Path(root) / name) for name in sorted(files) if is_image_file(name)]
            if not images:
                raise UsageError(f"{item}: no image files in this folder (or below, outside result folders)")
            found += images
        elif path.is_file():
            if not is_image_file(path.name):
                raise UsageError(f"{item}: not an image file (by its extension); give images or "
                                 "folders of images")
            found.append(str(path))
        else:
            raise UsageError(f"{item}: no such file or folder")
    seen, unique = set(), []
    for p in (os.path.abspath(f) for f in found):
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _given(options: Sequence[str], *names: str) -> bool:
    return any(o == n or o.startswith(n + "=") for o in options for n in names)


def config_from_checkpoint(path: str | Mapping[str, Any], options: Sequence[str] = ()) -> dict[str, Any]:
    """The model, its options and the input size recorded in a train.py checkpoint (empty for a
    bare state dict or when ``options`` name another model). An option naming a file that is not
    here (a pretrained start used in training) is left out: the checkpoint holds the trained
    weights. The model's module is imported when it is part of IMDLBenCo (the demo's DemoNet);
    a model of the user's own needs ``--import`` (a checkpoint never makes us import a user file).
    ``path``: the file, or its content already read."""
    from .checkpoint import read_checkpoint

    ckpt = path if isinstance(path, Mapping) else read_checkpoint(path, mmap=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("args"), dict):
        return {}
    args, kwargs = ckpt["args"], ckpt.get("model_kwargs") or {}
    if _given(options, "--model") and args.get("model") not in (None, *_values(options, "--model")):
        return {}  # another model: its options would not fit
    _import_model_module(args.get("model"), ckpt.get("model_module"))
    config: dict[str, Any] = {}
    for key in ("model", "image_size", "if_predict_label", "edge_mask_width", "no_model_eval"):
        if args.get(key) not in (None, False):
            config[key] = args[key]
    for key, value in kwargs.items():
        if isinstance(value, str) and _looks_like_file(value) and not os.path.exists(value):
            logger.info("model option %s=%s from the checkpoint's run left out (no such file here)", key, value)
            continue
        config[key] = value
    return config


def _import_model_module(model: str | None, module: str | None) -> None:
    import importlib

    from ..errors import UsageError
    from ..registry import MODELS

    if not model:
        return
    try:
        MODELS.get(model)
        return
    except KeyError:
        pass
    if isinstance(module, str) and module.split(".")[0] == "IMDLBenCo":
        importlib.import_module(module)
        return
    hint = f"--import {module}" if isinstance(module, str) and module and module != "__main__" else "--import mymodel"
    raise UsageError(f"the checkpoint's model {model!r} is not registered: import the file that defines it with "
                     f"{hint} (run from the folder that holds it)")


def _values(options: Sequence[str], name: str) -> list[str]:
    out = []
    for i, o in enumerate(options):
        if o == name and i + 1 < len(options):
            out.append(options[i + 1])
        elif o.startswith(name + "="):
            out.append(o.split("=", 1)[1])
    return out


def _looks_like_file(value: str) -> bool:
    return os.sep in value or value.endswith((".pth", ".pt", ".tar", ".bin", ".safetensors", ".yaml", ".json"))


def predict_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``benco predict``; returns ``{"scores": {...}, "output_dir": ...}``."""
    from ..errors import UsageError
    from .builders import import_modules
    from .save_images import save_images_main

    own, options = _parse(sys.argv[1:] if argv is None else argv)
    if own.help:
        print(PREDICT_HELP)
        save_images_main(["--help"])  # the script's options (exits)
    import_modules(own.imports)
    output_dir = Path((_values(options, "--output_dir") or ["./predictions"])[-1])
    images = list_inputs(own.inputs, exclude=[output_dir])
    if not _given(options, "--checkpoint_path"):
        raise UsageError("give the trained weights with --checkpoint_path FILE.pth")
    checkpoint = _values(options, "--checkpoint_path")[-1]
    from ..demo.notes import checkpoint_note
    from .checkpoint import read_checkpoint

    recorded = read_checkpoint(checkpoint, mmap=True)  # read once: a bad file is one message here
    note = checkpoint_note(recorded)  # what the model is (benco demo's: not a detector for real photos)
    if note and int(os.environ.get("RANK", "0")) == 0:
        print(f"note: {note}", flush=True)
    base = {} if _given(options, "--config") else config_from_checkpoint(recorded, options)
    if not _given(options, "--if_padding", "--if_resizing"):
        _log_tile_plan(images, options, base)
    extra = ["--output_dir", str(output_dir)]
    if not _given(options, "--if_padding", "--if_resizing", "--sliding_window"):
        extra.append("--sliding_window")
    result = save_images_main([*options, *extra, "--test_data_path", str(output_dir / runfolder.INPUT_IMAGES),
                               "--skip_data_check"], without_ground_truth=True, images=images, base=base,
                              base_source=f"the checkpoint's training run ({checkpoint})")
    scores = _finish(result, output_dir, note) if result.get("is_main", True) else {}
    return {"scores": scores, "output_dir": str(output_dir), "skipped": result.get("skipped", {})}


def _log_tile_plan(images: Sequence[str], options: Sequence[str], base: dict[str, Any]) -> None:
    """How many sliding-window tiles the run will take, before a long run starts."""
    from PIL import Image

    from .sliding import tile_plan

    window = int((_values(options, "--image_size") or [base.get("image_size") or 512])[-1])
    overlap = float((_values(options, "--window_overlap") or [0.25])[-1])
    sizes = []
    for path in images:
        try:
            with Image.open(path) as im:
                sizes.append((im.height, im.width))
        except Exception:  # an unreadable input is skipped and listed later
            continue
    if sizes:
        logger.info("%s", tile_plan(sizes, window, overlap))


def _finish(result: dict[str, Any], output_dir: Path, note: str | None = None) -> dict[str, dict[str, Any]]:
    """Overlays and ``scores.json`` from the saved masks (rank 0)."""
    import numpy as np
    from PIL import Image

    from ..datasets.io import load_rgb
    from .fileio import atomic_write
    from .writers import write_json

    args = result["args"]
    source = args.label_from_mask or ("model" if args.if_predict_label else None)
    scores: dict[str, dict[str, Any]] = {}
    for rec in result["predictions"]:
        entry: dict[str, Any] = {"image": rec["image_path"], "mask": rec["pred_path"], "overlay": None,
                                 "pred_label": rec["pred_label"],
                                 "label_source": source if rec["pred_label"] is not None else None}
        if rec["pred_path"] is not None:
            mask = np.asarray(Image.open(output_dir / rec["pred_path"]))
            image = np.asarray(load_rgb(rec["image_path"]))
            entry["height"], entry["width"] = int(mask.shape[0]), int(mask.shape[1])
            entry["max_probability"] = round(float(mask.max()) / 255.0, 4)
            entry["fraction_at_least_0.5"] = round(float((mask >= 128).mean()), 6)
            rel = f"{runfolder.OVERLAY_DIR}/{Path(rec['pred_path']).relative_to(runfolder.PRED_DIR).with_suffix('.jpg')}"
            picture = overlay(image, mask)
            target = output_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, lambda tmp, px=picture: Image.fromarray(px).save(tmp, format="JPEG", quality=90),
                         needed=picture.size)
            entry["overlay"] = rel
        scores[rec["name"]] = entry
    skipped = result.get("skipped") or {}
    write_json(output_dir / runfolder.SCORES, {**scores, **({"_skipped": skipped} if skipped else {}),
                                               **({"_note": note} if note else {})})
    _summary(scores, output_dir)
    if skipped:
        print(f"{len(skipped)} input(s) could not be read and were skipped (listed under \"_skipped\" in "
              f"{runfolder.SCORES}):\n" + "\n".join(f"  {p}: {why}" for p, why in list(skipped.items())[:20]),
              file=sys.stderr)
    return scores


def overlay(image: Any, mask: Any, colour: tuple[int, int, int] = (255, 0, 0), opacity: float = 0.6) -> Any:
    """``image`` (H,W,3 uint8) with ``mask`` (H,W uint8 probability × 255) drawn in ``colour``,
    opacity proportional to the probability (at most ``opacity``)."""
    import numpy as np

    alpha = (mask.astype(np.float32) / 255.0 * opacity)[..., None]
    tint = np.asarray(colour, np.float32)[None, None, :]
    return (image.astype(np.float32) * (1 - alpha) + tint * alpha + 0.5).clip(0, 255).astype(np.uint8)


def _summary(scores: dict[str, dict[str, Any]], output_dir: Path) -> None:
    shown = list(scores.items())
    lines = [f"{len(scores)} image(s) -> {output_dir} (pred/, {runfolder.OVERLAY_DIR}/, {runfolder.SCORES})"]
    for name, e in shown[:20]:
        label = "-" if e["pred_label"] is None else f"{e['pred_label']:.3f}"
        peak = "-" if e.get("max_probability") is None else f"{e['max_probability']:.3f}"
        frac = "-" if e.get("fraction_at_least_0.5") is None else f"{100 * e['fraction_at_least_0.5']:.2f}%"
        lines.append(f"  {name}: pred_label {label}, max pixel {peak}, pixels >= 0.5: {frac}")
    if len(shown) > 20:
        lines.append(f"  ... ({len(shown) - 20} more in {runfolder.SCORES})")
    print("\n".join(lines))
