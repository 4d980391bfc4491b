"""Latent noise distributions p(z), selected by name; samples are drawn on the training device.

A sampler is called as ``sampler(n, dim, device=..., generator=...)`` and returns an (n, dim) tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

NoiseSampler = Callable[..., Tensor]


def normal(
    n: int, dim: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Standard normal N(0, I)."""
    return torch.randn(n, dim, device=device, generator=generator)


def uniform(
    n: int, dim: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Uniform on the cube U[-1, 1]^dim."""
    return torch.rand(n, dim, device=device, generator=generator).mul_(2).sub_(1)


TRUNCATION = 2.0


def truncated_normal(
    n: int, dim: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """N(0, I) truncated to [-2, 2] per coordinate (BigGAN's truncation trick uses the same family).

    Sampled by inverting the CDF, so there is no data-dependent rejection loop (and no host sync).
    """
    lo = 0.5 * (1 + math.erf(-TRUNCATION / math.sqrt(2)))
    u = torch.rand(n, dim, device=device, generator=generator)
    u = lo + (1 - 2 * lo) * u
    return torch.special.ndtri(u).clamp_(-TRUNCATION, TRUNCATION)


def hypersphere(
    n: int, dim: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Uniform on the sphere of radius sqrt(dim), so E||z||^2 matches N(0, I) (as in StyleGAN's normalised z)."""
    z = torch.randn(n, dim, device=device, generator=generator)
    return z * (math.sqrt(dim) / z.norm(dim=1, keepdim=True).clamp_min(1e-12))


def bernoulli(
    n: int, dim: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Rademacher: each coordinate -1 or +1 with probability 1/2 (a discrete latent)."""
    return torch.randint(0, 2, (n, dim), device=device, generator=generator).mul_(2).sub_(1).float()


NOISE: dict[str, NoiseSampler] = {
    "normal": normal,
    "uniform": uniform,
    "truncated_normal": truncated_normal,
    "hypersphere": hypersphere,
    "bernoulli": bernoulli,
}


def get_noise(name: str) -> NoiseSampler:
    """The sampler called ``name``: one of :data:`NOISE`."""
    try:
        return NOISE[name]
    except KeyError:
        raise ValueError(f"unknown noise distribution {name!r}; expected one of {sorted(NOISE)}") from None
