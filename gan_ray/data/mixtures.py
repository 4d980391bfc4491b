"""The 2-D Gaussian mixtures of the VEEGAN/PacGAN benchmarks, generated on the training device."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gan_ray.data.catalog import dataset_info


@dataclass(frozen=True)
class Mixture:
    """An isotropic Gaussian mixture with equal weights."""

    modes: Tensor  # (M, 2)
    std: float


def mixture(name: str) -> Mixture:
    """``ring8``: 8 modes on the unit circle, std 0.01. ``grid25``: modes at {-4,-2,0,2,4}^2, std 0.05."""
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return Mixture(torch.stack([angles.cos(), angles.sin()], dim=1).float(), 0.01)
    if name == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return Mixture(torch.cartesian_prod(axis, axis), 0.05)
    info = dataset_info(name)  # a plug-in mixture carries its modes
    if not info.is_mixture:
        raise ValueError(f"dataset {name!r} is not a mixture of Gaussians")
    return Mixture(torch.tensor(info.modes, dtype=torch.float32), info.mode_std)


class MixtureSource:
    """Fresh samples of a Gaussian mixture, generated on the device (the data are infinite)."""

    def __init__(self, name: str, device: torch.device | str = "cpu"):
        m = mixture(name)
        self.modes = m.modes.to(device)
        self.std = m.std
        self.shape = (2,)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.randint(0, self.modes.shape[0], (n,), device=self.modes.device, generator=generator)
        noise = torch.randn(n, 2, device=self.modes.device, generator=generator)
        return self.modes[idx] + self.std * noise
