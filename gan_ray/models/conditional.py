"""Class conditioning for G and D: G's class embedding joined to the noise, D's projection head
(Miyato & Koyama 2018), and the checks that a conditional model gets labels and an unconditional one none.

D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, phi(x) D's features of x, psi its unconditional head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_labels(num_classes: int, labels: Tensor | None, n: int, who: str) -> Tensor | None:
    """``labels`` when they fit the model: (n,) for a conditional one, None for an unconditional one."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError(f"{who} is unconditional; it takes no labels")
        return None
    if labels is None:
        raise ValueError(f"{who} is class-conditional ({num_classes} classes); pass labels=(N,) int64")
    if labels.shape != (n,):
        raise ValueError(f"{who}: labels of shape {tuple(labels.shape)}; expected ({n},)")
    return labels


class ClassEmbedding(nn.Module):
    """G's side: ``cat(z, embed(y))``, the class as ``dim`` more inputs beside the noise."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim)
        nn.init.normal_(self.embed.weight, 0.0, 1.0)  # on the noise's scale
        self.num_classes, self.dim = num_classes, dim

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)


class Projection(nn.Module):
    """D's side: ``<embed(y), phi(x)>``, added to the unconditional logit."""

    def __init__(self, num_classes: int, feature_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, feature_dim)
        # Small at the start: D begins as its unconditional self and learns what each class adds.
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.num_classes = num_classes

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        return (self.embed(labels).to(features.dtype) * features).sum(dim=1)


class PackedConditional(nn.Module):
    """G taking one float tensor ``cat(z, label)`` (N, noise_dim + 1): what an exported program (pt2,
    ONNX) with one input runs; the last column is the class index."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, packed: Tensor) -> Tensor:
        return self.generator(packed[:, :-1], packed[:, -1].round().long())


def pack_labels(z: Tensor, labels: Tensor) -> Tensor:
    """The input of :class:`PackedConditional`: ``labels`` as the last column of ``z``."""
    return torch.cat([z, labels.to(z.dtype)[:, None]], dim=1)
