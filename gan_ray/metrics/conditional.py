"""Per-class metrics of a conditional generator, given its samples and the labels they were asked for:
intra-class FID (the Fréchet distance within each class, averaged: Miyato & Koyama 2018) and the class
accuracy the feature classifier judges (the share of samples it labels as asked)."""

from __future__ import annotations

import torch
from torch import Tensor

from gan_ray.metrics.frechet import frechet_distance


@torch.no_grad()
def intra_class_fid(
    real_features: Tensor, real_labels: Tensor, fake_features: Tensor, fake_labels: Tensor
) -> dict[str, float]:
    """``intra_fid`` (the mean over classes) and ``intra_fid_<c>`` per class of the Fréchet distance
    between the real and the generated features of each class that both sets hold (at least 2 each)."""
    classes = sorted(set(real_labels.tolist()) & set(fake_labels.tolist()))
    out = {}
    for c in classes:
        real, fake = real_features[real_labels == c], fake_features[fake_labels == c]
        if min(real.shape[0], fake.shape[0]) >= 2:
            out[f"intra_fid_{c}"] = frechet_distance(real, fake)
    if not out:
        raise ValueError("intra-class FID needs a class with at least 2 real and 2 generated samples")
    return {"intra_fid": sum(out.values()) / len(out), **out}


@torch.no_grad()
def class_accuracy(logits: Tensor, asked: Tensor) -> float:
    """The share of samples whose classifier logits (N, classes) pick the class they were asked for."""
    if logits.shape[0] != asked.shape[0] or logits.shape[0] == 0:
        raise ValueError(
            f"expected logits for each asked label, got {tuple(logits.shape)} and {tuple(asked.shape)}"
        )
    return float((logits.argmax(1).cpu() == asked.cpu()).double().mean())
