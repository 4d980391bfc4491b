"""Fully connected G and D for low-dimensional data, as in Goodfellow et al. (2014)."""

from __future__ import annotations

from torch import Tensor, nn

from gan_ray.models.anticollapse import MinibatchStd, pack
from gan_ray.models.scoring import score_apart


class MLPGenerator(nn.Module):
    """z -> [Linear, ReLU] x layers -> Linear(out_dim). The output is unbounded (the grid spans [-4, 4])."""

    def __init__(self, noise_dim: int, out_dim: int = 2, hidden_dim: int = 128, hidden_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        width = noise_dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.noise_dim = noise_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """x -> [Linear, LeakyReLU(0.2), Dropout] x layers -> Linear(1); returns logits of shape (N,)
    (a tuple of them for several batches, as :mod:`gan_ray.models.scoring` says).

    ``pac`` > 1 judges packs of that many samples (N // pac logits); ``minibatch_std`` > 0 appends the
    minibatch standard deviation over groups of that size before the last layer
    (:mod:`gan_ray.models.anticollapse`).
    """

    def __init__(
        self,
        in_dim: int = 2,
        hidden_dim: int = 128,
        hidden_layers: int = 3,
        dropout: float = 0.0,
        pac: int = 1,
        minibatch_std: int = 0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim * pac
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden_dim), nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden_dim
        if minibatch_std:
            layers.append(MinibatchStd(minibatch_std))
            width += 1
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.pac = pac

    def forward(self, *batches: Tensor) -> Tensor | tuple[Tensor, ...]:
        return score_apart(lambda x: self.net(pack(x, self.pac)).squeeze(1), batches)
