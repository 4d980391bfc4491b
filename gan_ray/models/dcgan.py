"""DCGAN (Radford et al. 2016) generator and discriminator for 1- or 3-channel images of side 8, 28, 32 or 64.

Each side is a base (4 or 7) doubled n times: 64 = 4*2^4, 32 = 4*2^3, 28 = 7*2^2, 8 = 4*2^1. G starts
from a base x base map with ngf*2^(n-1) channels and halves them at each doubling; D mirrors it.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from gan_ray.models.anticollapse import MinibatchStd, pack
from gan_ray.models.conditional import ClassEmbedding, Projection, check_labels
from gan_ray.models.scoring import score_apart

SUPPORTED_SIZES = {8: (4, 1), 28: (7, 2), 32: (4, 3), 64: (4, 4)}


def _plan(image_size: int) -> tuple[int, int]:
    try:
        return SUPPORTED_SIZES[image_size]
    except KeyError:
        raise ValueError(
            f"DCGAN image size {image_size} not supported; expected one of {sorted(SUPPORTED_SIZES)}"
        ) from None


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # per-sample normalisation keeps WGAN-GP's per-sample gradients valid
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class DCGANGenerator(nn.Module):
    """z (N, noise_dim) -> images (N, C, H, W) in [-1, 1]. With ``num_classes`` > 0, ``forward(z, labels)``
    joins a class embedding of ``noise_dim`` numbers to z (the first layer takes both)."""

    def __init__(
        self,
        noise_dim: int = 100,
        channels: int = 3,
        image_size: int = 64,
        filters: int = 64,
        num_classes: int = 0,
    ):
        super().__init__()
        base, doublings = _plan(image_size)
        width = filters * 2 ** (doublings - 1)
        self.classes = ClassEmbedding(num_classes, noise_dim) if num_classes else None
        self.num_classes = num_classes
        in_channels = noise_dim * (2 if num_classes else 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_channels, width, base, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(doublings - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.noise_dim = noise_dim
        self.apply(dcgan_init)  # leaves the embedding at N(0, 1), the noise's scale

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        labels = check_labels(self.num_classes, labels, z.shape[0], "this DCGAN generator")
        if labels is not None:
            z = self.classes(z, labels)
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Returns logits of shape (N,); given several batches, a tuple of them, each batch normalised
    on its own (see :mod:`gan_ray.models.scoring`). No normalisation on the first layer, as in the paper.

    ``pac`` > 1 judges packs of that many images stacked along the channels (N // pac logits);
    ``minibatch_std`` > 0 appends the minibatch-std map over groups of that size before the last
    convolution (:mod:`gan_ray.models.anticollapse`). ``num_classes`` > 0 adds a projection head
    (:mod:`gan_ray.models.conditional`) on phi(x), the last hidden map summed over its pixels, and
    ``forward(*batches, labels=y)`` scores every batch against the same labels (the step pairs each real
    sample with a fake of its class).
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 64,
        filters: int = 64,
        norm: Literal["batch", "layer", "none"] = "batch",
        pac: int = 1,
        minibatch_std: int = 0,
        num_classes: int = 0,
    ):
        super().__init__()
        base, doublings = _plan(image_size)
        layers: list[nn.Module] = [
            nn.Conv2d(channels * pac, filters, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
        ]
        width = filters
        for _ in range(doublings - 1):
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                _norm(norm, width * 2),
                nn.LeakyReLU(0.2, True),
            ]
            width *= 2
        if minibatch_std:
            layers.append(MinibatchStd(minibatch_std))
            width += 1
        layers.append(nn.Conv2d(width, 1, base, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        self.pac = pac
        self.num_classes = num_classes
        self.apply(dcgan_init)
        # After dcgan_init, which would redraw its embedding at N(0, 0.02) anyway.
        self.projection = Projection(num_classes, width) if num_classes else None

    def forward(self, *batches: Tensor, labels: Tensor | None = None) -> Tensor | tuple[Tensor, ...]:
        if self.projection is None:
            check_labels(0, labels, 0, "this DCGAN discriminator")
            return score_apart(lambda x: self.net(pack(x, self.pac)).flatten(), batches)
        return score_apart(lambda x: self._conditional(x, labels), batches)

    def _conditional(self, x: Tensor, labels: Tensor | None) -> Tensor:
        labels = check_labels(self.num_classes, labels, x.shape[0], "this DCGAN discriminator")
        hidden = self.net[:-1](x)
        return self.net[-1](hidden).flatten() + self.projection(hidden.sum(dim=(2, 3)), labels)


def dcgan_init(m: nn.Module) -> None:
    """N(0, 0.02) for conv weights; N(1, 0.02) scale and zero shift for normalisation layers."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
