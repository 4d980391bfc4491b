"""GAN losses as pure functions of the discriminator's logits, selected by name.

Every loss maps D's raw outputs (logits, or critic scores for the Wasserstein family) to scalar
losses that the optimisers *minimise*; the docstrings give the closed forms. Probabilities are
never formed explicitly: the softplus forms below are the numerically stable spellings of
log(sigmoid(x)) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from gan_ray.errors import PluginError
from gan_ray.registry import Registry


def _check_logits(*logits: Tensor) -> None:
    for x in logits:
        if x.dim() > 2 or (x.dim() == 2 and x.shape[1] != 1):
            raise ValueError(f"expected D logits of shape (N,) or (N, 1), got {tuple(x.shape)}")


@dataclasses.dataclass(frozen=True)
class GanLoss:
    """Base of the loss registry: a named pair of pure functions and its parameters.

    ``clip_value`` is not None when the critic's weights must be clipped to [-c, c] after each
    D-step; ``built_in_penalty`` names the penalty of :mod:`gan_ray.penalties` the loss always carries
    (``gp`` for wgan_gp, weighted by its ``gp_weight``).

    ``g_loss`` takes D's logits on a real batch as well as on the fakes: the relativistic loss compares
    them pair by pair. The other losses ignore them, and the step does not compute them for a loss whose
    ``g_needs_real`` is False (``real_logits`` is then None).
    """

    name: ClassVar[str] = ""
    # True when D's output is a probability logit, so mean sigmoid(D) is a meaningful metric.
    has_probabilities: ClassVar[bool] = True
    built_in_penalty: ClassVar[str | None] = None
    # The G-step scores a real batch too (a D forward more) only for losses that read it.
    g_needs_real: ClassVar[bool] = False
    # The papers' k (D-steps per G-step) where a config sets none: 5 critic steps for the Wasserstein family.
    default_d_steps: ClassVar[int] = 1

    @property
    def clip_value(self) -> float | None:
        return None

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def penalty_weight(self) -> float | None:
        """The weight of the built-in penalty (None without one)."""
        return None

    def params(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @property
    def config_name(self) -> str:
        """The name a config chose this loss by: the built-in's, or a plug-in's import path / entry point."""
        return self.__dict__.get("_config_name", self.name)


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

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
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

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
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

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
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

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
        return _critic_g_loss(fake_logits)


@dataclasses.dataclass(frozen=True)
class WassersteinGP(GanLoss):
    """WGAN-GP (Gulrajani et al. 2017): the Wasserstein losses plus
    gp_weight * E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates x_hat, added to d_loss
    by the training step as the ``gp`` penalty of :mod:`gan_ray.penalties` (it needs D and the inputs,
    not just logits). The same game as ``loss.name: wasserstein`` without clipping plus ``penalty: gp``.
    """

    name: ClassVar[str] = "wgan_gp"
    has_probabilities: ClassVar[bool] = False
    built_in_penalty: ClassVar[str | None] = "gp"
    default_d_steps: ClassVar[int] = 5
    gp_weight: float = 10.0

    def __post_init__(self) -> None:
        if not self.gp_weight >= 0:
            raise ValueError(f"loss 'wgan_gp': gp_weight must be >= 0, got {self.gp_weight!r}")

    @property
    def penalty_weight(self) -> float | None:
        return self.gp_weight

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return _critic_d_loss(real_logits, fake_logits)

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
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

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
        return _critic_g_loss(fake_logits)


@dataclasses.dataclass(frozen=True)
class RelativisticPairing(GanLoss):
    """RpGAN (Jolicoeur-Martineau 2019), the loss of R3GAN (Huang et al. 2024): D judges each real
    sample against a fake one, paired by position in the batch.

    D minimises  mean softplus(-(D(x_i) - D(G(z_i))))
    G minimises  mean softplus(-(D(G(z_i)) - D(x_i)))
    A D that only shifts all its scores gains nothing, so G cannot win by one region D scores high; with
    R1 + R2 (``penalty: r1_r2``) it is locally convergent (Huang et al. 2024, Theorem 3).
    """

    name: ClassVar[str] = "rpgan"
    # D's scores are compared, never read as probabilities on their own.
    has_probabilities: ClassVar[bool] = False
    g_needs_real: ClassVar[bool] = True

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        _check_pairs(real_logits, fake_logits)
        return F.softplus(-(real_logits - fake_logits)).mean()

    def g_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
        if real_logits is None:
            raise ValueError("loss 'rpgan': G's loss needs D's logits on a real batch")
        _check_pairs(real_logits, fake_logits)
        return F.softplus(-(fake_logits - real_logits)).mean()


def _check_pairs(real_logits: Tensor, fake_logits: Tensor) -> None:
    _check_logits(real_logits, fake_logits)
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"the relativistic loss pairs real and fake logits: shapes {tuple(real_logits.shape)} "
            f"and {tuple(fake_logits.shape)} differ"
        )


def _as_loss_class(name: str, obj: object) -> type[GanLoss]:
    """A plug-in loss must be a :class:`GanLoss` subclass (a frozen dataclass whose fields are its params)."""
    if not (isinstance(obj, type) and issubclass(obj, GanLoss)):
        raise PluginError(
            f"loss {name!r} is {obj!r}, not a subclass of gan_ray.losses.GanLoss (a frozen dataclass with "
            "d_loss(real_logits, fake_logits) and g_loss(real_logits, fake_logits))"
        )
    if not dataclasses.is_dataclass(obj):
        raise PluginError(f"loss {name!r}: {obj.__name__} must be a @dataclasses.dataclass(frozen=True)")
    return obj


#: The losses by name: the built-ins here; plug-ins by import path or the ``gan_ray.losses`` entry points.
LOSSES: Registry[type[GanLoss]] = Registry(
    "loss",
    "gan_ray.losses",
    {
        cls.name: cls
        for cls in (
            Minimax,
            NonSaturating,
            LeastSquares,
            Wasserstein,
            WassersteinGP,
            Hinge,
            RelativisticPairing,
        )
    },
    convert=_as_loss_class,
)


def loss_param_names(name: str) -> tuple[str, ...]:
    """The parameters a loss takes (e.g. ``('clip',)`` for wasserstein)."""
    return tuple(f.name for f in dataclasses.fields(LOSSES.resolve(name)))


def get_loss(name: str, **params: float) -> GanLoss:
    """The loss called ``name`` with its parameters, e.g. ``get_loss("wasserstein", clip=0.01)``."""
    cls = LOSSES.resolve(name)
    allowed = loss_param_names(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"loss {name!r} takes no parameter(s) {unknown}; its parameters are {list(allowed) or 'none'}"
        )
    loss = cls(**params)
    object.__setattr__(loss, "_config_name", name)  # frozen: set as the dataclass machinery would
    return loss
