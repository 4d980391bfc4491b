"""Latent noise distributions p(z), selected by name; samples are drawn on the training device.

A sampler is called as ``sampler(n, dim, device=..., generator=...)`` and returns an (n, dim) tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from gan_ray.errors import PluginError
from gan_ray.registry import Registry, require_callable

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


#: The noise distributions by name: the built-ins here; plug-ins by import path or ``gan_ray.noise`` entry points.
NOISE: Registry[NoiseSampler] = Registry(
    "noise distribution",
    "gan_ray.noise",
    {f.__name__: f for f in (normal, uniform, truncated_normal, hypersphere, bernoulli)},
    convert=require_callable(
        "noise distribution", "a function sampler(n, dim, device=None, generator=None) -> Tensor (n, dim)"
    ),
)


def get_noise(name: str) -> NoiseSampler:
    """The sampler called ``name``: a built-in of :data:`NOISE`, or a plug-in."""
    return NOISE.resolve(name)


def check_sampler(name: str, dim: int) -> None:
    """Draw 4 samples of ``dim`` once, on the CPU: a plug-in that breaks the sampler contract fails here,
    in one line, before any model trains."""
    try:
        z = get_noise(name)(4, dim, device="cpu", generator=torch.Generator().manual_seed(0))
    except PluginError:
        raise
    except Exception as err:
        raise PluginError(
            f"noise distribution {name!r}: sampler(4, {dim}, device='cpu', generator=...) raised "
            f"{type(err).__name__}: {err}"
        ) from None
    if not isinstance(z, Tensor) or tuple(z.shape) != (4, dim) or not z.is_floating_point():
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise PluginError(
            f"noise distribution {name!r}: sampler(4, {dim}) returned {got}; expected a float tensor (4, {dim})"
        )
