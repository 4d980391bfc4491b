"""An exponential moving average of G's weights (Yazıcı et al. 2019, "The Unusual Effectiveness of
Averaging in GAN Training"): the averaged generator is what evals score and what is logged as the model.

Written with foreach ops on preallocated tensors rather than ``torch.optim.swa_utils.AveragedModel``,
whose first update branches on a device counter in Python (a host sync that a CUDA graph cannot hold).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from gan_ray.models import unwrap


class WeightAverage:
    """``module`` holds the average of the source module's weights; :meth:`update` after each G-step.

    The decay ramps up as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``:
    ``min(decay, (1 + t) / (10 + t))`` after t updates, so the random initial weights fade within the
    first hundreds of steps instead of lingering for ~1 / (1 - decay) of them. Buffers (BatchNorm's
    running statistics) are copied, not averaged, as StyleGAN does.
    """

    def __init__(self, source: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        source = unwrap(source)
        self.decay = decay
        self.module = copy.deepcopy(source).requires_grad_(False).eval()
        self._source = list(source.parameters())
        self._average = list(self.module.parameters())
        self._source_buffers = list(source.buffers())
        self._average_buffers = list(self.module.buffers())
        self.updates = torch.zeros((), device=self._average[0].device)

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weight = 1 - torch.clamp((1 + self.updates) / (10 + self.updates), max=self.decay)
        torch._foreach_lerp_(self._average, self._source, weight)
        if self._average_buffers:
            torch._foreach_copy_(self._average_buffers, self._source_buffers)

    @torch.no_grad()
    def restart(self) -> None:
        """Start the average over from the source's current weights (EMA turned on at a resume)."""
        torch._foreach_copy_(self._average, self._source)
        if self._average_buffers:
            torch._foreach_copy_(self._average_buffers, self._source_buffers)
        self.updates.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates.copy_(state["updates"])
