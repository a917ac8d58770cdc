"""ImageNet normalisation of images: the constants and the two directions.

Models and the data pipeline both use these (the datasets normalise what they read, some models
undo it to get pixels back), so they live here rather than in either. ``IMDLBenCo.datasets``
re-exports the names for compatibility. Torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize", "denormalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(image, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """ImageNet-normalise a uint8 (0–255) image tensor, (3,H,W) or (B,3,H,W), on its own device.

    Returns a new float32 tensor in the input's memory layout: ``(x - 255·mean) · 1/(255·std)``,
    the arithmetic of the dataset pipeline (so values equal its items bit for bit)."""
    import torch

    m = torch.tensor([v * 255.0 for v in mean], device=image.device).view(3, 1, 1)
    k = torch.tensor([1.0 / (v * 255.0) for v in std], device=image.device).view(3, 1, 1)
    # one float allocation in the input's memory layout, then in-place ops
    out = torch.empty_like(image, dtype=torch.float32)
    return out.copy_(image).sub_(m).mul_(k)


def denormalize(image, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """Undo the ImageNet normalisation of a (3,H,W) or (B,3,H,W) tensor (a new tensor, values ~0–1)."""
    import torch

    m = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return image * s + m
