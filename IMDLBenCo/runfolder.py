"""The run folder, defined once: the files every script writes into ``--output_dir``, their
record types, and the metric-key format. The engine's writers and the report's readers both
import these names, so a renamed file or key cannot drift apart (docs/ARCHITECTURE.md lists
what each file holds; docs/results.md the results schema). Standard library only.
"""

from __future__ import annotations

import re

__all__ = [
    "CONFIG", "LOG", "TRAIN_STEPS", "METRIC_DEFINITIONS", "SUMMARY_JSON", "SUMMARY_CSV", "ROBUSTNESS",
    "PREDICTIONS", "PRED_LABELS", "COMPLEXITY", "INPUT_IMAGES", "PRED_DIR", "CAM_JSON", "CAM_DIR", "RESUME_CHECKPOINT",
    "BEST_CHECKPOINT", "STOP_FILE", "SCORES", "OVERLAY_DIR", "PREDICT_CONFIG", "KNOWN_FILES", "checkpoint_name", "checkpoint_epoch", "test_key",
    "split_test_key", "RESULTS", "PER_IMAGE", "VAL_SPLIT", "LOCK_FILE", "RESULTS_SCHEMA", "SELECTION_LABELS",
]

CONFIG = "config.json"  # every script: {"script", "args", "model_kwargs", "env", "started", ...}
LOG = "log.txt"  # train: one EpochRecord per epoch; test: one per checkpoint
TRAIN_STEPS = "train_steps.jsonl"  # train: {"step", "epoch", "lr", <loss>: value} per logged step
METRIC_DEFINITIONS = "metric_definitions.json"  # {metric key: one-line definition}
SUMMARY_JSON = "summary.json"  # test: {"rows": [{"epoch", "set", "checkpoint", <metric>: value}]}
SUMMARY_CSV = "summary.csv"  # test: the same rows as CSV
ROBUSTNESS = "robustness.json"  # test_robust: {"checkpoint", "dataset", "results": [RobustnessResult]}
PREDICTIONS = "predictions.json"  # test_save_images: [PredictionRecord]
PRED_LABELS = "pred_label.json"  # test_save_images: {image name: probability}
COMPLEXITY = "complexity.json"  # test_complexity: {"model", "input_size", "params", "trainable_params", "flops", "macs"}
INPUT_IMAGES = "input_images.json"  # test_save_images on a plain image folder: the JsonDataset it made
PRED_DIR = "pred"  # test_save_images: the predicted masks (PNG at the original size)
CAM_JSON = "cam.json"  # test_cam / benco cam: {"target_layer", "method", "target", ..., "records": [CamRecord]}
CAM_DIR = "cam"  # test_cam / benco cam: <stem>.png (grey heat map, original size), <stem>_overlay.jpg
RESUME_CHECKPOINT = "checkpoint-resume.pth"  # train: the one full state (model, optimizer, ...)
BEST_CHECKPOINT = "checkpoint-best.pth"  # train: the model of the best tested epoch
STOP_FILE = "STOP"  # made by the user: training ends after the current epoch
SCORES = "scores.json"  # benco predict: {image name: {"image", "mask", "overlay", "pred_label", ...}}
OVERLAY_DIR = "overlay"  # benco predict: each image with its predicted mask drawn over it (JPEG)
PREDICT_CONFIG = "predict_config.json"  # benco predict: the model and options read from the checkpoint
RESULTS = "results.json"  # test, test_robust, train (validation-chosen): records with evidence (docs/results.md)
PER_IMAGE = "per_image.csv"  # beside results.json: one row per image per record
VAL_SPLIT = "val_split.json"  # train --val_split: the training files held out for validation
LOCK_FILE = ".imdlbenco-run.lock"  # held (flock) while a run writes into the folder

#: the result files of a run folder (the report reads them)
KNOWN_FILES = (CONFIG, LOG, TRAIN_STEPS, METRIC_DEFINITIONS, SUMMARY_JSON, ROBUSTNESS, PREDICTIONS, PRED_LABELS,
               COMPLEXITY, CAM_JSON, RESULTS)

#: the schema of results.json (docs/results.md) and the label of each way a checkpoint is chosen
RESULTS_SCHEMA = "imdlbenco.results/1"
SELECTION_LABELS = {
    "validation": "best on validation",
    "test_sets": "best on the test sets (optimistic)",
    "last_epoch": "last epoch",
    "fixed_epoch": "fixed epoch (not chosen)",
    "given": "given checkpoint",
}

_EPOCH_NAME = re.compile(r"^checkpoint-(\d+)\.pth$")
_TEST = "test_"
_VAL = "val_"


def checkpoint_name(epoch: int) -> str:
    """``checkpoint-<epoch>.pth``: the model after epoch ``epoch`` (counted from 0)."""
    return f"checkpoint-{int(epoch)}.pth"


def checkpoint_epoch(name: str) -> int | None:
    """The epoch in a ``checkpoint-<epoch>.pth`` file name, else None."""
    match = _EPOCH_NAME.match(name)
    return int(match.group(1)) if match else None


def test_key(metric: str, set_name: str | None = None, prefix: str = "test") -> str:
    """``test_<set>/<metric>`` for one test set, ``test_<metric>`` for the mean over the sets
    (IMDL-BenCo's key) — the keys of ``log.txt`` records; ``prefix="val"`` gives the validation
    keys ``val_<metric>`` of a run that chooses its checkpoint on validation."""
    return f"{prefix}_{set_name}/{metric}" if set_name is not None else f"{prefix}_{metric}"


def split_test_key(key: str) -> tuple[str | None, str] | None:
    """``"test_<set>/<metric>"`` → ``(set, metric)``; ``"test_<metric>"`` → ``(None, metric)``;
    the validation keys ``val_validation/<metric>`` → ``("validation", metric)`` and
    ``val_<metric>`` → ``(None, metric)``; any other key → None."""
    for prefix in (_TEST, _VAL):
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if "/" in rest:
                set_name, metric = rest.rsplit("/", 1)
                return set_name, metric
            return None, rest
    return None


test_key.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one
