"""A complete gan_ray plug-in module: a noise, a loss, a penalty, a dataset and a G/D, each used by import
path (``my_gan_plugins:laplace``) or, once packaged, by entry-point name. ``tests/test_plugins.py`` runs it."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_ray.data import DatasetInfo
from gan_ray.losses import GanLoss
from gan_ray.models import ModelSpec, score_apart


# A noise: sampler(n, dim, device=None, generator=None) -> (n, dim), drawn on the device.
def laplace(n: int, dim: int, device=None, generator: torch.Generator | None = None) -> Tensor:
    """Laplace(0, 1/sqrt(2)) per coordinate: unit variance, heavier tails than N(0, I)."""
    u = torch.rand(n, dim, device=device, generator=generator) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)


# A loss: a frozen dataclass of GanLoss; its fields are its loss.params.
@dataclasses.dataclass(frozen=True)
class SoftHinge(GanLoss):
    """The hinge loss with softplus for relu: D minimises softplus(m - D(x)) + softplus(m + D(G(z)))."""

    name: ClassVar[str] = "soft_hinge"
    has_probabilities: ClassVar[bool] = False
    margin: float = 1.0

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.softplus(self.margin - real_logits).mean() + F.softplus(self.margin + fake_logits).mean()

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


# A penalty: term(discriminator, real, fake, pack) -> scalar; default_weight where the config sets none.
def logit_decay(discriminator, real: Tensor, fake: Tensor, pack: int) -> Tensor:
    """E[D(x)^2] on reals: keeps D's scores near 0 (a cheap stand-in for a gradient penalty)."""
    return discriminator(real).square().mean()


logit_decay.default_weight = 0.01


# A dataset: a mixture of 3 Gaussians on a circle (kind "image" takes load(spec, train) instead).
RING3 = DatasetInfo(
    "ring3",
    "mixture",
    channels=2,
    num_modes=3,
    modes=tuple((math.cos(2 * math.pi * i / 3), math.sin(2 * math.pi * i / 3)) for i in range(3)),
    mode_std=0.02,
)


# A G/D: a builder(sample_shape, noise_dim, num_classes, penalised, **params) -> (G, D), and its traits.
class Critic(nn.Module):
    """D's contract: ``pac``, and each batch of ``forward(*batches)`` scored apart, (N // pac,) logits."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.pac = 1
        self.net = nn.Sequential(
            nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1)
        )

    def forward(self, *batches: Tensor):
        return score_apart(lambda x: self.net(x).squeeze(1), batches)


def build_silu_mlp(sample_shape, noise_dim, num_classes, penalised, width: int = 64):
    (dim,) = sample_shape
    generator = nn.Sequential(
        nn.Linear(noise_dim, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim)
    )
    return generator, Critic(dim, width)


SILU_MLP = ModelSpec(build_silu_mlp, default_noise_dim=4, data="vector", cuda_graph_safe=True)
