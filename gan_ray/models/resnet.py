"""A residual G and D after R3GAN (Huang et al. 2024): modernised ResNeXt blocks, no normalisation anywhere,
for 1- or 3-channel images of side 28, 32, 64, 128 or 256.

Each block is ``x + conv1x1(act(grouped conv3x3(act(conv1x1(x)))))`` with an inverted bottleneck (the
middle is ``expansion`` times wider) and grouped 3x3 convolutions of ``group_size`` channels a group; the
last convolution of each block starts at zero and the others are scaled down by the number of blocks
(fix-up-style), so at initialisation every block is the identity and no normalisation is needed. G starts
from a learned ``base x base`` basis (4x4, 7x7 for side 28) modulated by a linear map of z; D ends in a
depthwise ``base x base`` convolution to a feature vector phi(x) and a linear head.

Resampling is plain bilinear up-sampling in G and 2x2 average pooling in D, not R3GAN's low-pass
(FIR) filters: simpler, and fine at these sizes, but it aliases more.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_ray.models.anticollapse import MinibatchStd, pack
from gan_ray.models.conditional import ClassEmbedding, Projection, check_labels
from gan_ray.models.scoring import score_apart

#: side -> (base, doublings): side = base * 2**doublings.
RESNET_SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4), 128: (4, 5), 256: (4, 6)}
#: Up to this resolution a stage has the full width; above it each doubling halves the channels (as
#: StyleGAN's and R3GAN's larger presets do), so a 256 px network costs what its pixels need.
FULL_WIDTH_UP_TO = 32
SLOPE = 0.2


def plan(size: int) -> tuple[int, int]:
    """(base, doublings) of an image side, or a ValueError naming the sides this network builds."""
    try:
        return RESNET_SIZES[size]
    except KeyError:
        raise ValueError(f"resnet builds images of side {sorted(RESNET_SIZES)}, not {size}") from None


def stage_widths(size: int, width: int, group_size: int) -> list[int]:
    """Channels of each stage from the base resolution up to ``size``: ``width`` up to 32 px, halved per
    doubling above it, each rounded up to a multiple of ``group_size`` (so grouped convolutions divide)."""
    base, doublings = plan(size)
    widths = []
    for i in range(doublings + 1):
        resolution = base * 2**i
        channels = width if resolution <= FULL_WIDTH_UP_TO else width * FULL_WIDTH_UP_TO // resolution
        widths.append(max(group_size, math.ceil(channels / group_size) * group_size))
    return widths


def _msr_init(conv: nn.Module, scale: float = 1.0) -> nn.Module:
    """He (MSR) initialisation for LeakyReLU(0.2), N(0, gain / sqrt(fan_in)), times ``scale``; zero bias."""
    nn.init.kaiming_normal_(conv.weight, a=SLOPE, nonlinearity="leaky_relu")
    with torch.no_grad():
        conv.weight.mul_(scale)
    if getattr(conv, "bias", None) is not None:
        nn.init.zeros_(conv.bias)
    return conv


class ResidualBlock(nn.Module):
    """R3GAN's block: 1x1 (C -> eC), LReLU, grouped 3x3 (eC -> eC), LReLU, 1x1 (eC -> C), plus the input.

    ``total_blocks`` is the number of blocks in the network: the first two convolutions are scaled by
    its -1/4 power (Fixup's L^(-1/(2m-2)) with m = 3 layers a branch), the last is zero.
    """

    def __init__(self, channels: int, expansion: int, group_size: int, total_blocks: int):
        super().__init__()
        hidden = channels * expansion
        scale = total_blocks ** (-1 / 4)
        self.expand = _msr_init(nn.Conv2d(channels, hidden, 1), scale)
        self.mix = _msr_init(nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden // group_size), scale)
        self.project = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.expand(x), SLOPE)
        h = F.leaky_relu(self.mix(h), SLOPE)
        return x + self.project(h)


def _stage(channels: int, blocks: int, expansion: int, group_size: int, total: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels, expansion, group_size, total) for _ in range(blocks)))


def _resample_conv(c_in: int, c_out: int) -> nn.Module:
    """The 1x1 convolution that changes the width between stages (identity when it does not change)."""
    return _msr_init(nn.Conv2d(c_in, c_out, 1, bias=False)) if c_in != c_out else nn.Identity()


class ResNetGenerator(nn.Module):
    """z -> learned basis (C0, b, b) scaled per channel by Linear(z) -> [blocks, 1x1 conv, upsample] x n
    -> blocks -> 1x1 conv to the image channels -> tanh. With ``num_classes`` > 0, ``forward(z, labels)``
    joins a class embedding of ``noise_dim`` numbers to z before the linear map (the class sets the
    basis's per-channel scales along with the noise)."""

    def __init__(
        self,
        noise_dim: int,
        channels: int,
        image_size: int,
        width: int,
        blocks_per_stage: int,
        expansion: int,
        group_size: int,
        num_classes: int = 0,
    ):
        super().__init__()
        base, _ = plan(image_size)
        widths = stage_widths(image_size, width, group_size)
        total = len(widths) * blocks_per_stage
        self.basis = nn.Parameter(torch.randn(widths[0], base, base))
        self.classes = ClassEmbedding(num_classes, noise_dim) if num_classes else None
        self.num_classes = num_classes
        inputs = noise_dim * (2 if num_classes else 1)
        self.modulation = _msr_init(nn.Linear(inputs, widths[0], bias=False), 1.0 / math.sqrt(2.0))
        self.stages = nn.ModuleList(_stage(w, blocks_per_stage, expansion, group_size, total) for w in widths)
        self.transitions = nn.ModuleList(
            _resample_conv(a, b) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.to_image = _msr_init(nn.Conv2d(widths[-1], channels, 1))
        self.noise_dim = noise_dim

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        labels = check_labels(self.num_classes, labels, z.shape[0], "this resnet generator")
        if labels is not None:
            z = self.classes(z, labels)
        x = self.basis.unsqueeze(0) * self.modulation(z)[:, :, None, None]
        for i, stage in enumerate(self.stages):
            if i:
                x = F.interpolate(
                    self.transitions[i - 1](x), scale_factor=2.0, mode="bilinear", align_corners=False
                )
            x = stage(x)
        return torch.tanh(self.to_image(x))


class ResNetDiscriminator(nn.Module):
    """image (pack) -> 1x1 conv -> [blocks, avg-pool, 1x1 conv] x n -> blocks -> [minibatch std] ->
    depthwise b x b conv: phi(x), one feature vector a sample -> Linear: the logit.

    :meth:`features` gives phi(x) (N // pac, ``feature_dim``); :attr:`head` is the unconditional ``psi``.
    With ``num_classes`` > 0 a projection head (Miyato & Koyama 2018) adds ``embed(y) . phi(x)``, and
    ``forward(*batches, labels=y)`` scores every batch against the same labels.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        width: int,
        blocks_per_stage: int,
        expansion: int,
        group_size: int,
        pac: int = 1,
        minibatch_std: int = 0,
        num_classes: int = 0,
    ):
        super().__init__()
        base, _ = plan(image_size)
        widths = stage_widths(image_size, width, group_size)[::-1]  # from the image down to the base
        total = len(widths) * blocks_per_stage
        self.from_image = _msr_init(nn.Conv2d(channels * pac, widths[0], 1))
        self.stages = nn.ModuleList(_stage(w, blocks_per_stage, expansion, group_size, total) for w in widths)
        self.transitions = nn.ModuleList(
            _resample_conv(a, b) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.minibatch_std = MinibatchStd(minibatch_std) if minibatch_std else nn.Identity()
        self.feature_dim = widths[-1] + (1 if minibatch_std else 0)
        c = self.feature_dim
        self.basis = _msr_init(nn.Conv2d(c, c, base, groups=c, bias=False))
        self.head = _msr_init(nn.Linear(c, 1))
        self.projection = Projection(num_classes, c) if num_classes else None
        self.num_classes = num_classes
        self.pac = pac

    def features(self, x: Tensor) -> Tensor:
        """phi(x): one feature vector per pack of ``pac`` samples, (N // pac, feature_dim)."""
        x = self.from_image(pack(x, self.pac))
        for i, stage in enumerate(self.stages):
            if i:
                x = self.transitions[i - 1](F.avg_pool2d(x, 2))
            x = stage(x)
        x = self.minibatch_std(x)
        return F.leaky_relu(self.basis(x).flatten(1), SLOPE)

    def forward(self, *batches: Tensor, labels: Tensor | None = None) -> Tensor | tuple[Tensor, ...]:
        if self.projection is None:
            check_labels(0, labels, 0, "this resnet discriminator")
            return score_apart(lambda x: self.head(self.features(x)).squeeze(1), batches)
        return score_apart(lambda x: self._conditional(x, labels), batches)

    def _conditional(self, x: Tensor, labels: Tensor | None) -> Tensor:
        labels = check_labels(self.num_classes, labels, x.shape[0], "this resnet discriminator")
        phi = self.features(x)
        return self.head(phi).squeeze(1) + self.projection(phi, labels)
