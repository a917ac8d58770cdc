"""Evaluators (metrics) and the evaluation sampler.

IMDL-BenCo's 15 evaluators: ``PixelF1``, ``PixelAUC``, ``PixelIOU``, ``PixelAccuracy`` (each with
``mode`` ``origin`` / ``reverse`` / ``double``) and ``ImageF1``, ``ImageAUC``, ``ImageAccuracy``;
plus ``PixelAUPRC``, ``PixelF1Best``, ``PixelFPR``, ``ImageAP``, ``ImageBalancedAccuracy``,
``ImageMCC``, ``ImageTPR``, ``ImageTNR``. Every evaluator::

    ev.update(outputs, batch)   # model output dict, batch dict
    ev.compute()                # {result key: float}, reduced once over all processes
    ev.reset()
    ev.name, ev.definitions()   # key prefix; {result key: one-line definition}

Per-image pixel metrics average over manipulated images only; ``*_pooled`` keys are
dataset-level; authentic images feed ``PixelFPR``. ``EvalSampler`` shards a dataset across
processes without padding or dropping, so every image is counted exactly once.
``share_batch_cache(evaluators)`` lets a list of evaluators validate and prepare each batch once
between them (the engine does it for a script's list).
"""

from ._prepare import BatchCache, InputError, share_batch_cache
from .base import Evaluator
from .image import ImageAccuracy, ImageAP, ImageAUC, ImageBalancedAccuracy, ImageF1, ImageMCC, ImageTNR, ImageTPR
from .pixel import PixelAccuracy, PixelAUC, PixelAUPRC, PixelF1, PixelF1Best, PixelFPR, PixelIOU
from .sampler import EvalSampler

__all__ = [
    "Evaluator", "EvalSampler", "InputError", "BatchCache", "share_batch_cache",
    "PixelF1", "PixelAUC", "PixelAUPRC", "PixelIOU", "PixelAccuracy", "PixelF1Best", "PixelFPR",
    "ImageF1", "ImageAUC", "ImageAccuracy", "ImageAP", "ImageBalancedAccuracy", "ImageMCC", "ImageTPR", "ImageTNR",
]
