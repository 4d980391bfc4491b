"""GAN losses as pure functions of the discriminator's logits, selected by name.

Every loss maps D's raw outputs (logits, or critic scores for the Wasserstein family) to scalar
losses that the optimisers *minimise*; the docstrings give the closed forms. Probabilities are
never formed explicitly: the softplus forms below are the numerically stable spellings of
log(sigmoid(x)) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_logits(*logits: Tensor) -> None:
    for x in logits:
        if x.dim() > 2 or (x.dim() == 2 and x.shape[1] != 1):
            raise ValueError(f"expected D logits of shape (N,) or (N, 1), got {tuple(x.shape)}")


@dataclasses.dataclass(frozen=True)
class GanLoss:
    """Base of the loss registry: a named pair of pure functions and its parameters.

    ``clip_value`` is not None when the critic's weights must be clipped to [-c, c] after each
    D-step; ``needs_gradient_penalty`` tells the loop to call :func:`gradient_penalty`.
    """

    name: ClassVar[str] = ""
    # True when D's output is a probability logit, so mean sigmoid(D) is a meaningful metric.
    has_probabilities: ClassVar[bool] = True
    needs_gradient_penalty: ClassVar[bool] = False
    # The papers' k (D-steps per G-step) where a config sets none: 5 critic steps for the Wasserstein family.
    default_d_steps: ClassVar[int] = 1

    @property
    def clip_value(self) -> float | None:
        return None

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def params(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _bce_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-[log D(x) + log(1 - D(G(z)))] averaged: softplus(-r) + softplus(f)."""
    _check_logits(real_logits, fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def _critic_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The Wasserstein critic's loss: mean D(G(z)) - mean D(x)."""
    _check_logits(real_logits, fake_logits)
    return fake_logits.mean() - real_logits.mean()


def _critic_g_loss(fake_logits: Tensor) -> Tensor:
    """-mean D(G(z)): G's loss for the Wasserstein family and hinge."""
    _check_logits(fake_logits)
    return -fake_logits.mean()


@dataclasses.dataclass(frozen=True)
class Minimax(GanLoss):
    """The original saturating game (Goodfellow et al. 2014).

    D maximises  log D(x) + log(1 - D(G(z)))  ->  d_loss = softplus(-D(x)) + softplus(D(G(z)))
    G minimises  log(1 - D(G(z)))             ->  g_loss = -softplus(D(G(z)))
    The G gradient vanishes when D confidently rejects fakes (D(G(z)) -> 0).
    """

    name: ClassVar[str] = "minimax"

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return _bce_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        _check_logits(fake_logits)
        # log(1 - sigmoid(f)) = -softplus(f)
        return -F.softplus(fake_logits).mean()


@dataclasses.dataclass(frozen=True)
class NonSaturating(GanLoss):
    """The non-saturating heuristic of the same paper.

    D: as minimax.  G maximises log D(G(z))  ->  g_loss = softplus(-D(G(z)))
    """

    name: ClassVar[str] = "non_saturating"

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return _bce_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        _check_logits(fake_logits)
        return F.softplus(-fake_logits).mean()


@dataclasses.dataclass(frozen=True)
class LeastSquares(GanLoss):
    """LSGAN (Mao et al. 2017) with the 0-1 coding, on D's raw output.

    D minimises  (D(x) - 1)^2 + D(G(z))^2      (each term averaged over its batch)
    G minimises  (D(G(z)) - 1)^2
    """

    name: ClassVar[str] = "least_squares"
    has_probabilities: ClassVar[bool] = False

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        _check_logits(real_logits, fake_logits)
        return (real_logits - 1).square().mean() + fake_logits.square().mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        _check_logits(fake_logits)
        return (fake_logits - 1).square().mean()


@dataclasses.dataclass(frozen=True)
class Wasserstein(GanLoss):
    """WGAN (Arjovsky et al. 2017) with weight clipping.

    Critic maximises  mean D(x) - mean D(G(z))  ->  d_loss = mean D(G(z)) - mean D(x)
    G minimises       -mean D(G(z))
    After every critic step all critic weights are clipped to [-clip_value, clip_value].
    """

    name: ClassVar[str] = "wasserstein"
    has_probabilities: ClassVar[bool] = False
    default_d_steps: ClassVar[int] = 5
    clip: float = 0.01

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ValueError(f"loss 'wasserstein': clip must be > 0, got {self.clip!r}")

    @property
    def clip_value(self) -> float | None:
        return self.clip

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return _critic_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return _critic_g_loss(fake_logits)


@dataclasses.dataclass(frozen=True)
class WassersteinGP(GanLoss):
    """WGAN-GP (Gulrajani et al. 2017): the Wasserstein losses plus
    gp_weight * E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates x_hat, added to d_loss
    by the training loop through :func:`gradient_penalty` (it needs D and the inputs, not just logits).
    """

    name: ClassVar[str] = "wgan_gp"
    has_probabilities: ClassVar[bool] = False
    needs_gradient_penalty: ClassVar[bool] = True
    default_d_steps: ClassVar[int] = 5
    gp_weight: float = 10.0

    def __post_init__(self) -> None:
        if not self.gp_weight >= 0:
            raise ValueError(f"loss 'wgan_gp': gp_weight must be >= 0, got {self.gp_weight!r}")

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return _critic_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return _critic_g_loss(fake_logits)


@dataclasses.dataclass(frozen=True)
class Hinge(GanLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018).

    D minimises  mean relu(1 - D(x)) + mean relu(1 + D(G(z)))
    G minimises  -mean D(G(z))
    """

    name: ClassVar[str] = "hinge"
    has_probabilities: ClassVar[bool] = False

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        _check_logits(real_logits, fake_logits)
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return _critic_g_loss(fake_logits)


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    pack: int = 1,
) -> Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] with x_hat = eps * real + (1 - eps) * fake, eps ~ U[0, 1] per sample.

    With a D that judges packs of ``pack`` samples (PacGAN), the norm is taken per pack: D's input is
    the pack, so that is the gradient whose norm bounds its slope.
    Builds a graph through the gradient (create_graph=True) so the penalty can be minimised:
    this double backward is why WGAN-GP steps cannot be captured in a CUDA graph.
    """
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = discriminator(x_hat)
    (grads,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    n = grads.shape[0] - grads.shape[0] % pack  # the samples a pack holds (the rest D never saw)
    return (grads[:n].reshape(n // pack, -1).norm(2, dim=1) - 1).square().mean()


LOSSES: dict[str, type[GanLoss]] = {
    cls.name: cls for cls in (Minimax, NonSaturating, LeastSquares, Wasserstein, WassersteinGP, Hinge)
}


def loss_param_names(name: str) -> tuple[str, ...]:
    """The parameters a loss takes (e.g. ``('clip',)`` for wasserstein)."""
    return tuple(f.name for f in dataclasses.fields(_loss_class(name)))


def _loss_class(name: str) -> type[GanLoss]:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None


def get_loss(name: str, **params: float) -> GanLoss:
    """The loss called ``name`` with its parameters, e.g. ``get_loss("wasserstein", clip=0.01)``."""
    cls = _loss_class(name)
    allowed = loss_param_names(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"loss {name!r} takes no parameter(s) {unknown}; its parameters are {list(allowed) or 'none'}"
        )
    return cls(**params)
