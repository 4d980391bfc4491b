"""Where a training step draws its real batch from: a device-resident source with ``sample(n)``.

No DataLoader round-trip per step and no host sync: a batch is an index into a tensor on the device
(or fresh mixture samples generated there), so the whole step can be captured in a CUDA graph.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from gan_ray.data.catalog import DataSpec, dataset_info
from gan_ray.data.images import TensorSource, check_files, load_images
from gan_ray.data.mixtures import MixtureSource


class DataSource(Protocol):
    shape: tuple[int, ...]  # one sample's shape

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


def data_shape(spec: DataSpec) -> tuple[int, ...]:
    """One sample's shape, without loading the data."""
    return dataset_info(spec.name).sample_shape(spec.image_size)


def make_source(
    spec: DataSpec, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1
) -> DataSource:
    """The training source for ``spec`` on ``device``; with several workers each rank keeps its own shard."""
    if dataset_info(spec.name).is_mixture:
        return MixtureSource(spec.name, device)
    return TensorSource(load_images(spec)[rank::world_size], device)


def check_available(spec: DataSpec) -> None:
    """Fail fast, before workers start, when a dataset's files are not where ``spec`` points."""
    check_files(spec.name, spec.root, spec.download)
