"""Class coverage of generated images, as the StackedMNIST protocol counts modes (Metz et al. 2017; R3GAN's
table): a classifier labels each sample; a class is *covered* when at least one sample gets it, and the
*reverse KL* is KL(predicted-class histogram || uniform), 0 for a generator that draws every class equally.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


@torch.no_grad()
def class_coverage(predicted: Tensor, num_classes: int) -> dict[str, float]:
    """``classes_covered`` and ``class_reverse_kl`` of predicted labels (N,) in [0, num_classes)."""
    if predicted.numel() == 0:
        raise ValueError("class_coverage needs at least one predicted label")
    counts = torch.bincount(predicted.flatten().long().cpu(), minlength=num_classes).double()
    if counts.numel() > num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got {int(predicted.max())}")
    p = counts / counts.sum()
    nz = p > 0
    return {
        "classes_covered": float(nz.sum()),
        "class_reverse_kl": float((p[nz] * (p[nz] * num_classes).log()).sum()),
    }


def max_class_reverse_kl(num_classes: int) -> float:
    """The reverse KL of a generator that draws one class only: log(num_classes)."""
    return math.log(num_classes)
