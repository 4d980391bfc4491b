"""Where a training step draws its real batch from: a device-resident source with ``sample(n)``.

No DataLoader round-trip per step and no host sync: a batch is an index into a tensor on the device
(or fresh mixture samples generated there), so the whole step can be captured in a CUDA graph. A set
too large for the device is streamed from pinned host memory instead (:mod:`gan_ray.data.batches`).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from gan_ray.data.batches import make_image_source
from gan_ray.data.catalog import DataSpec, dataset_info, spec_info
from gan_ray.data.images import check_files, load_stored
from gan_ray.data.mixtures import MixtureSource


class DataSource(Protocol):
    shape: tuple[int, ...]  # one sample's shape

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


def data_shape(spec: DataSpec) -> tuple[int, ...]:
    """One sample's shape, without loading the data."""
    return spec_info(spec).sample_shape(spec.image_size)


def make_source(
    spec: DataSpec, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1
) -> DataSource:
    """The training source for ``spec`` on ``device``; with several workers each rank keeps its own shard.
    Images stay as stored (uint8 for 8-bit sets) and become floats one batch at a time."""
    if dataset_info(spec.name).is_mixture:
        return MixtureSource(spec.name, device)
    images = load_stored(spec)[0][rank::world_size]
    return make_image_source(images, device, mirror=getattr(spec, "mirror", False), seed=rank)


def check_available(spec: DataSpec) -> None:
    """Fail fast, before workers start, when a dataset's files are not where ``spec`` points. A folder's
    source is listed here (reachable, holding images); the preflight decodes it once, after the model
    builds (:func:`gan_ray.data.prepared.check_for_run`)."""
    if dataset_info(spec.name).shaped_by_config:
        from gan_ray.data.prepared import check_source

        check_source(spec)
        return
    check_files(spec.name, spec.root, spec.download)
