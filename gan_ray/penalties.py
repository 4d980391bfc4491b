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


#: name -> (the term whose ``weight`` multiple is added to D's loss, the weight where a config sets none).
#: gp's 10 is Gulrajani et al.'s lambda; the zero-centred ones take R3GAN's gamma for low-dimensional data.
PENALTIES: dict[str, tuple[Callable[[Discriminator, Tensor, Tensor, int], Tensor], float]] = {
    "gp": (_gp, 10.0),
    "r1": (_r1, 1.0),
    "r2": (_r2, 1.0),
    "r1_r2": (_r1_r2, 1.0),
}
#: Every name ``penalty.name`` takes: ``none`` plus the registry.
PENALTY_NAMES = ("none", *PENALTIES)


@dataclass(frozen=True)
class Penalty:
    """A named penalty at a weight: ``penalty(d, real, fake, pack)`` is ``weight x term``."""

    name: str
    weight: float

    def __post_init__(self) -> None:
        if self.name not in PENALTIES:
            raise ValueError(f"unknown penalty {self.name!r}; expected one of {list(PENALTY_NAMES)}")
        if not self.weight >= 0:
            raise ValueError(f"penalty {self.name!r}: weight must be >= 0, got {self.weight!r}")

    def term(self, discriminator: Discriminator, real: Tensor, fake: Tensor, pack: int = 1) -> Tensor:
        """The unweighted term."""
        return PENALTIES[self.name][0](discriminator, real, fake, pack)

    def __call__(self, discriminator: Discriminator, real: Tensor, fake: Tensor, pack: int = 1) -> Tensor:
        return self.weight * self.term(discriminator, real, fake, pack)


def default_weight(name: str) -> float:
    """The weight of penalty ``name`` where a config gives none."""
    if name not in PENALTIES:
        raise ValueError(f"unknown penalty {name!r}; expected one of {list(PENALTY_NAMES)}")
    return PENALTIES[name][1]
