"""IMDL-BenCo's names of the metrics it has, for its log keys (``test_pixel-level F1``).

Scripts that parse IMDL-BenCo's ``log.txt`` look for these keys; ours write them next to our own
(``test_pixel_f1``) and ``--best_metric`` accepts either name. Only the default settings map
(mode ``origin``, threshold 0.5), as in the reference.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["REFERENCE_NAMES", "with_reference_names", "our_name"]

REFERENCE_NAMES: dict[str, str] = {
    "pixel_f1": "pixel-level F1",
    "pixel_auc": "pixel-level AUC",
    "pixel_iou": "pixel-level IOU",
    "pixel_accuracy": "pixel-level Accuracy",
    "image_f1": "image-level F1",
    "image_auc": "image-level AUC",
    "image_accuracy": "image-level Accuracy",
}
_OURS = {v.lower(): k for k, v in REFERENCE_NAMES.items()}


def with_reference_names(metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` plus an IMDL-BenCo-named copy of each value the reference also computes."""
    out = dict(metrics)
    out.update({REFERENCE_NAMES[k]: v for k, v in metrics.items() if k in REFERENCE_NAMES})
    return out


def our_name(metric: str) -> str:
    """``"pixel-level F1"`` (any case) -> ``"pixel_f1"``; other names unchanged."""
    return _OURS.get(str(metric).strip().lower(), metric)
