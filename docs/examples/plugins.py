"""A complete gan_ray plug-in module: a noise, a loss, a penalty, two datasets and a G/D builder.

A config names each by import path (``plugins:laplace``, with this folder on ``PYTHONPATH``) or, once
packaged, by entry-point name; ``plugins.yaml`` beside it trains with all of them on the CPU.
"""

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


# --8<-- [start:noise]
# A noise: sampler(n, dim, device=None, generator=None) -> Tensor (n, dim), drawn on the device.
def laplace(n: int, dim: int, device=None, generator: torch.Generator | None = None) -> Tensor:
    """Laplace(0, 1/sqrt(2)) per coordinate: unit variance, heavier tails than N(0, I)."""
    u = torch.rand(n, dim, device=device, generator=generator) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)


# --8<-- [end:noise]


# --8<-- [start:loss]
# A loss: a frozen dataclass subclassing GanLoss; its fields are its loss.params.
@dataclasses.dataclass(frozen=True)
class SoftHinge(GanLoss):
    """The hinge loss with softplus for relu: D minimises softplus(m - D(x)) + softplus(m + D(G(z))),
    G minimises -D(G(z)). Both are scalars of D's raw logits."""

    name: ClassVar[str] = "soft_hinge"
    has_probabilities: ClassVar[bool] = False  # D's outputs are scores, not probability logits
    g_needs_real: ClassVar[bool] = False  # g_loss ignores real_logits (the step passes None)
    default_d_steps: ClassVar[int] = 1  # k where train.d_steps_per_g_step is unset
    margin: float = 1.0

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.softplus(self.margin - real_logits).mean() + F.softplus(self.margin + fake_logits).mean()

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


# --8<-- [end:loss]


# --8<-- [start:penalty]
# A penalty: term(discriminator, real, fake, pack) -> scalar Tensor; penalty.weight multiplies it.
def logit_decay(discriminator, real: Tensor, fake: Tensor, pack: int) -> Tensor:
    """E[D(x)^2] on reals: keeps D's scores near 0 (a cheap stand-in for a gradient penalty)."""
    return discriminator(real).square().mean()


logit_decay.default_weight = 0.01  # the weight where the config's penalty.weight is null
# --8<-- [end:penalty]


# --8<-- [start:dataset]
def _shapes(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` 8x8 images of one of four shapes at a random place: a horizontal bar (label 0), a vertical
    bar (1), a 3x3 square (2), a diagonal (3); white on black, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.full((n, 1, 8, 8), -1.0)
    row, col = torch.randint(0, 5, (2, n), generator=g).tolist()
    for i, label in enumerate(labels.tolist()):
        r, c = row[i], col[i]
        if label == 0:
            images[i, 0, r + 1, c : c + 4] = 1.0
        elif label == 1:
            images[i, 0, r : r + 4, c + 1] = 1.0
        elif label == 2:
            images[i, 0, r : r + 3, c : c + 3] = 1.0
        else:
            images[i, 0, range(r, r + 4), range(c, c + 4)] = 1.0
    return images, labels


def load_shapes(spec, train: bool) -> tuple[Tensor, Tensor]:
    """The dataset's reader: (images float (N, 1, 8, 8) in [-1, 1], labels int64 (N,)). ``spec`` is the
    config's ``data`` section (``spec.root``, ``spec.download``); generated data needs neither."""
    return _shapes(4096, seed=0) if train else _shapes(1024, seed=1)


# A dataset: a DatasetInfo that says how to read it. Images: kind "image", its shape and classes, load.
SHAPES = DatasetInfo(name="shapes8", kind="image", channels=1, native_size=8, num_classes=4, load=load_shapes)

# A mixture of Gaussians: kind "mixture", its mode centres and their std (scored by mode coverage).
RING3 = DatasetInfo(
    name="ring3",
    kind="mixture",
    channels=2,
    num_modes=3,
    modes=tuple((math.cos(2 * math.pi * i / 3), math.sin(2 * math.pi * i / 3)) for i in range(3)),
    mode_std=0.02,
)
# --8<-- [end:dataset]


# --8<-- [start:model]
class PackedCritic(nn.Module):
    """D's contract: an int ``pac``, and ``forward(*batches)`` scoring each batch apart into (N // pac,)
    logits (a tuple of them for several batches), so nothing pools real with fake."""

    def __init__(self, features: int, width: int, pac: int = 1):
        super().__init__()
        self.pac = pac
        self.net = nn.Sequential(
            nn.Linear(features * pac, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, 1),
        )

    def score(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        n = x.shape[0] - x.shape[0] % self.pac  # PacGAN: packs of pac samples side by side
        return self.net(x[:n].reshape(n // self.pac, -1)).squeeze(1)

    def forward(self, *batches: Tensor) -> Tensor | tuple[Tensor, ...]:
        return score_apart(self.score, batches)


def build_flat_mlp(
    sample_shape: tuple[int, ...],
    noise_dim: int,
    num_classes: int,
    penalised: bool,
    *,
    width: int = 128,
    d_pac: int = 1,
) -> tuple[nn.Module, nn.Module]:
    """(G, D) for any sample shape: MLPs on the flattened sample. ``width`` is a model.params key;
    ``d_pac`` arrives from the config's model.d_pac because the builder takes it."""
    features = math.prod(sample_shape)
    head: list[nn.Module] = [nn.Tanh()] if len(sample_shape) == 3 else []  # images live in [-1, 1]
    generator = nn.Sequential(
        nn.Linear(noise_dim, width),
        nn.SiLU(),
        nn.Linear(width, width),
        nn.SiLU(),
        nn.Linear(width, features),
        *head,
        nn.Unflatten(1, tuple(sample_shape)),
    )
    return generator, PackedCritic(features, width, d_pac)


# The builder with its traits: the loop reads them from the spec, never from the model's name.
FLAT_MLP = ModelSpec(build_flat_mlp, default_noise_dim=16, data="any", cuda_graph_safe=True)
# --8<-- [end:model]
