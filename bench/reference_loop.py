"""The baseline gan_ray is measured against: a plain loop in the shape of pytorch/examples ``dcgan/main.py``.

fp32 eager; D steps on real and on detached fake with separate forwards; the G step reuses that fake
and back-propagates through D (D's weight gradients are computed and thrown away, as there); BCE on
D's logits; three ``.item()`` per step; batches from a CPU ``DataLoader`` (shuffle=True) moved to the
device each step. Same G and D classes as gan_ray, so only the loop differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class ReferenceLoop:
    """One ``step()`` = one D step (real, then detached fake) and one G step, as in dcgan/main.py."""

    generator: nn.Module
    discriminator: nn.Module
    loader: DataLoader
    noise_dim: int
    device: torch.device
    lr: float = 2e-4
    beta1: float = 0.5

    def __post_init__(self) -> None:
        self.generator.to(self.device).train()
        self.discriminator.to(self.device).train()
        self.criterion = nn.BCEWithLogitsLoss()
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=(self.beta1, 0.999))
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=(self.beta1, 0.999))
        self._batches: Iterator = iter(())
        self.last: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _next_batch(self) -> Tensor:
        try:
            (x,) = next(self._batches)
        except StopIteration:  # a new epoch: the loader reshuffles
            self._batches = iter(self.loader)
            (x,) = next(self._batches)
        return x

    def step(self) -> int:
        """One iteration; returns the number of real images it consumed."""
        net_g, net_d, criterion = self.generator, self.discriminator, self.criterion
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        net_d.zero_grad()
        real = self._next_batch().to(self.device)
        b = real.size(0)
        label = torch.full((b,), 1.0, dtype=real.dtype, device=self.device)
        output = net_d(real)
        err_d_real = criterion(output, label)
        err_d_real.backward()
        d_x = output.sigmoid().mean().item()
        noise = torch.randn(b, self.noise_dim, device=self.device)
        fake = net_g(noise)
        label.fill_(0.0)
        output = net_d(fake.detach())
        err_d_fake = criterion(output, label)
        err_d_fake.backward()
        d_g_z1 = output.sigmoid().mean().item()
        self.opt_d.step()
        # (2) Update G: maximize log(D(G(z)))
        net_g.zero_grad()
        label.fill_(1.0)
        output = net_d(fake)
        err_g = criterion(output, label)
        err_g.backward()
        d_g_z2 = output.sigmoid().mean().item()
        self.opt_g.step()
        self.last = (d_x, d_g_z1, d_g_z2)
        return b


def make_loader(data: Tensor, batch_size: int, workers: int = 0) -> DataLoader:
    """A shuffled CPU loader over ``data`` (N, ...), as the example builds from a torchvision dataset."""
    return DataLoader(
        TensorDataset(data), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers
    )
