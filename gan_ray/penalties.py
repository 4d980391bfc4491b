"""Gradient penalties on the discriminator, an axis of their own beside the losses (compare_gan's penalty_lib).

Each penalty is a pure function of D and its inputs, composable with every loss, selected by name from
:data:`PENALTIES`; the training step adds ``weight x term`` to D's loss at every D-step:

- ``gp`` (Gulrajani et al. 2017): ``E[(||grad D(x_hat)||_2 - 1)^2]`` on random interpolates; what
  ``loss.name: wgan_gp`` has always added, with ``gp_weight`` as its weight.
- ``r1`` (Mescheder et al. 2018): ``1/2 E||grad_x D(x)||^2`` on real samples, so ``weight`` is their gamma.
- ``r2``: the same on fake samples (detached: the penalty trains D, never G).
- ``r1_r2``: both, ``gamma/2 (R1 + R2)``: R3GAN's regulariser (Huang et al. 2024), which needs both
  (R1 alone diverged in its experiments).

With a D that judges packs of ``pack`` samples (PacGAN), the norm is taken per pack: D's input is the pack.
Each builds a graph through the gradient (``create_graph=True``) so it can be minimised: this double
backward is why a penalised step is never captured in a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gan_ray.errors import PluginError
from gan_ray.registry import Registry

Discriminator = Callable[[Tensor], Tensor]


def _input_gradients(discriminator: Discriminator, x: Tensor) -> Tensor:
    """d(sum of D's outputs)/dx, differentiable in D's parameters (create_graph)."""
    x = x.detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)
    return grads


def _per_pack(grads: Tensor, pack: int) -> Tensor:
    """The gradients grouped as D saw its inputs, one row per pack (a batch's last N mod m D never saw)."""
    n = grads.shape[0] - grads.shape[0] % pack
    return grads[:n].reshape(n // pack, -1)


def gradient_penalty(
    discriminator: Discriminator,
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    pack: int = 1,
) -> Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] with x_hat = eps * real + (1 - eps) * fake, eps ~ U[0, 1] per sample."""
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = eps * real + (1 - eps) * fake.detach()
    norms = _per_pack(_input_gradients(discriminator, x_hat), pack).norm(2, dim=1)
    return (norms - 1).square().mean()


def squared_gradient_norm(discriminator: Discriminator, x: Tensor, pack: int = 1) -> Tensor:
    """E||grad_x D(x)||^2, summed over a sample's (a pack's) coordinates, averaged over samples (packs).

    R1 on real samples, R2 on fake ones: both are zero-centred, so they pull D's slope at the data
    (and at the fakes) to zero instead of to 1 as ``gp`` does.
    """
    return _per_pack(_input_gradients(discriminator, x), pack).square().sum(dim=1).mean()


def _gp(d: Discriminator, real: Tensor, fake: Tensor, pack: int) -> Tensor:
    return gradient_penalty(d, real, fake, pack=pack)


def _r1(d: Discriminator, real: Tensor, fake: Tensor, pack: int) -> Tensor:
    return 0.5 * squared_gradient_norm(d, real, pack)


def _r2(d: Discriminator, real: Tensor, fake: Tensor, pack: int) -> Tensor:
    return 0.5 * squared_gradient_norm(d, fake, pack)


def _r1_r2(d: Discriminator, real: Tensor, fake: Tensor, pack: int) -> Tensor:
    return _r1(d, real, fake, pack) + _r2(d, real, fake, pack)


PenaltyTerm = Callable[[Discriminator, Tensor, Tensor, int], Tensor]


@dataclass(frozen=True)
class PenaltySpec:
    """A penalty's unweighted term ``term(d, real, fake, pack)`` and its weight where a config sets none."""

    term: PenaltyTerm
    default_weight: float = 1.0


def _as_spec(name: str, obj: object) -> PenaltySpec:
    """A plug-in penalty: a :class:`PenaltySpec`, or a function ``term(d, real, fake, pack)`` (its
    ``default_weight`` attribute, if any, is the weight where a config sets none; else 1)."""
    if isinstance(obj, PenaltySpec):
        return obj
    if not callable(obj):
        raise PluginError(
            f"penalty {name!r} is {obj!r}, not a function term(discriminator, real, fake, pack) -> Tensor"
        )
    return PenaltySpec(obj, float(getattr(obj, "default_weight", 1.0)))  # type: ignore[arg-type]


#: name -> the term whose ``weight`` multiple is added to D's loss, and the weight where a config sets none.
#: gp's 10 is Gulrajani et al.'s lambda; the zero-centred ones take R3GAN's gamma for low-dimensional data.
#: Plug-ins by import path or ``gan_ray.penalties`` entry points.
PENALTIES: Registry[PenaltySpec] = Registry(
    "penalty",
    "gan_ray.penalties",
    {
        "gp": PenaltySpec(_gp, 10.0),
        "r1": PenaltySpec(_r1, 1.0),
        "r2": PenaltySpec(_r2, 1.0),
        "r1_r2": PenaltySpec(_r1_r2, 1.0),
    },
    convert=_as_spec,
)
#: The built-in names ``penalty.name`` takes: ``none`` plus the registry's (plug-ins besides).
PENALTY_NAMES = ("none", *PENALTIES.builtins)


@dataclass(frozen=True)
class Penalty:
    """A named penalty at a weight: ``penalty(d, real, fake, pack)`` is ``weight x term``."""

    name: str
    weight: float

    def __post_init__(self) -> None:
        PENALTIES.resolve(self.name)  # one line naming the built-ins where the name is unknown
        if not self.weight >= 0:
            raise ValueError(f"penalty {self.name!r}: weight must be >= 0, got {self.weight!r}")

    def term(self, discriminator: Discriminator, real: Tensor, fake: Tensor, pack: int = 1) -> Tensor:
        """The unweighted term."""
        return PENALTIES.resolve(self.name).term(discriminator, real, fake, pack)

    def __call__(self, discriminator: Discriminator, real: Tensor, fake: Tensor, pack: int = 1) -> Tensor:
        return self.weight * self.term(discriminator, real, fake, pack)


def default_weight(name: str) -> float:
    """The weight of penalty ``name`` where a config gives none."""
    return PENALTIES.resolve(name).default_weight
