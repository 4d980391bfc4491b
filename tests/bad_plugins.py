"""Plug-ins that break their contracts, one way each: what tests/test_plugins.py expects one line about."""

from __future__ import annotations

from torch import nn

from gan_ray.data import DatasetInfo
from gan_ray.models import score_apart


def two_arguments(sample_shape, noise_dim):
    """A builder of the wrong signature (no num_classes, penalised)."""
    raise AssertionError("never called: the signature is refused first")


class _NoPac(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Linear(dim, 1)

    def forward(self, *batches):
        return score_apart(lambda x: self.net(x).squeeze(1), batches)


def d_without_pac(sample_shape, noise_dim, num_classes, penalised):
    (dim,) = sample_shape
    return nn.Linear(noise_dim, dim), _NoPac(dim)


class _Pooled(nn.Module):
    """Scores real and fake in one BatchNorm'd pass: the pooling the contract forbids."""

    pac = 1

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))

    def forward(self, *batches):
        import torch

        logits = self.net(torch.cat(batches)).squeeze(1)
        parts = logits.split([b.shape[0] for b in batches])
        return parts[0] if len(parts) == 1 else parts


def d_pooling_batches(sample_shape, noise_dim, num_classes, penalised):
    (dim,) = sample_shape
    return nn.Linear(noise_dim, dim), _Pooled(dim)


def g_of_wrong_shape(sample_shape, noise_dim, num_classes, penalised):
    (dim,) = sample_shape
    return nn.Linear(noise_dim, dim + 1), _Pooled(dim)


NOT_A_LOSS = 3


def _only_in_the_driver(spec, train):
    """Readable in the test's own process, not in a trial's: a dataset some node cannot read."""
    import os

    import torch

    from gan_ray.errors import DatasetNotFoundError

    if os.environ.get("GAN_RAY_TEST_DRIVER_PID") != str(os.getpid()):
        raise DatasetNotFoundError(
            f"dataset 'driver_only' not found under data.root {spec.root!r} on this node"
        )
    g = torch.Generator().manual_seed(0)
    return torch.rand(256, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 2, (256,), generator=g)


DRIVER_ONLY = DatasetInfo(
    "driver_only", "image", channels=1, native_size=8, num_classes=2, load=_only_in_the_driver
)
