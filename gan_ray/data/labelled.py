"""Real batches with their labels, for class-conditional training: images (as stored: uint8 for 8-bit
sets, floats made one batch at a time) and int64 labels kept on the device side by side, drawn by one
index, so a batch's labels cost no host sync (CUDA-graph safe)."""

from __future__ import annotations

import torch
from torch import Tensor

from gan_ray.data.batches import as_batch
from gan_ray.data.catalog import DataSpec
from gan_ray.data.images import load_stored


class LabelledSource:
    """Batches (images, labels) drawn uniformly with replacement; ``sample(n)`` gives the images alone
    (the unconditional source's contract), ``sample_labels(n)`` labels from the data's own distribution."""

    graph_safe = True

    def __init__(
        self, images: Tensor, labels: Tensor, device: torch.device | str = "cpu", mirror: bool = False
    ):
        if images.shape[0] == 0:
            raise ValueError("dataset is empty")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        self.data = images.to(device)
        self.labels = labels.long().to(device)
        self.shape = tuple(images.shape[1:])
        self.mirror = mirror

    def _batch(self, idx: Tensor, generator: torch.Generator | None) -> Tensor:
        return as_batch(self.data[idx], self.mirror, generator)

    def _index(self, n: int, generator: torch.Generator | None) -> Tensor:
        return torch.randint(0, self.data.shape[0], (n,), device=self.data.device, generator=generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self._batch(self._index(n, generator), generator)

    def sample_labelled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        idx = self._index(n, generator)
        return self._batch(idx, generator), self.labels[idx]

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.labels[self._index(n, generator)]


def make_labelled_source(
    spec: DataSpec, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1
) -> LabelledSource:
    """The labelled training source for ``spec``; with several workers each rank keeps its own shard."""
    images, labels = load_stored(spec)
    mirror = bool(getattr(spec, "mirror", False))
    return LabelledSource(images[rank::world_size], labels[rank::world_size], device, mirror)
