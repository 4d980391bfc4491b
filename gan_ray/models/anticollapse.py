"""What a discriminator can see so that a generator which drops modes gets caught: several samples at
once (PacGAN packing) and the spread of a whole group of them (the minibatch standard deviation).

A collapsed G draws samples that look real one at a time; only statistics over several samples show
that they are all alike. Both pieces work on one batch at a time (the D-step scores real and fake
apart), so real and fake never share a pack or a group.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def pack(x: Tensor, m: int) -> Tensor:
    """PacGAN (Lin et al. 2018): m samples concatenated into one along the feature (or channel) axis,
    so D judges (N // m) packs of m. The last N mod m samples of the batch are left out."""
    if m == 1:
        return x
    n = x.shape[0] - x.shape[0] % m
    if n == 0:
        raise ValueError(f"a batch of {x.shape[0]} samples cannot make a pack of {m}")
    return x[:n].reshape(n // m, m * x.shape[1], *x.shape[2:])


class MinibatchStd(nn.Module):
    """Karras et al. (2018), section 3: the standard deviation of every feature over a group of
    ``group_size`` samples, averaged into one number, appended to each sample of the group as one more
    feature (a constant map for images). Groups are strided: sample i is in group i mod (N / size).

    A batch that ``group_size`` does not divide forms one group of all its samples.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        if group_size < 2:
            raise ValueError(f"a minibatch-std group needs at least 2 samples, got {group_size}")
        self.group_size, self.eps = group_size, eps

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        g = min(self.group_size, n)
        if n % g:
            g = n
        y = x.reshape(g, n // g, *x.shape[1:]).float()
        std = (y.var(dim=0, unbiased=False) + self.eps).sqrt()  # (n / g, *features)
        stat = std.flatten(1).mean(dim=1).to(x.dtype)  # (n / g,)
        per_sample = stat.repeat(g)  # sample i gets group i mod (n / g)
        extra = per_sample.view(n, 1, *([1] * (x.dim() - 2))).expand(n, 1, *x.shape[2:])
        return torch.cat([x, extra], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"
