"""ADA's adaptive augmentation probability (Karras et al. 2020), kept as device tensors: the training step
feeds it D's logits on (augmented) reals and never reads anything back to the host.

stylegan2-ada-pytorch's rule (``training/training_loop.py``): every ``interval`` D-steps,
``p += sign(E[sign(D(real))] - target) * images / (kimg * 1000)``, clamped to [0, 1], where ``images``
is how many reals the interval scored (so p can move by 1 in ``kimg`` thousand images).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class AdaptiveProbability:
    """p and the sign statistics it moves by, on ``device``; :meth:`observe` after every D-step.

    The interval is counted on the device (``torch.where``, no Python branch on a tensor), so the update
    can be captured in a CUDA graph. Under torch.distributed each observation is summed over the ranks
    (an all-reduce without a host sync), so every rank moves p alike, as stylegan2-ada's global stats do.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        initial: float = 0.0,
        target: float = 0.6,
        kimg: float = 500.0,
        interval: int = 4,
    ):
        self.target, self.kimg, self.interval = target, kimg, interval
        self.p = torch.tensor(float(initial), device=device)
        # [sum of sign(D(real)), reals scored, D-steps] since the last update.
        self.stats = torch.zeros(3, device=device)

    def observe(self, real_logits: Tensor) -> None:
        """Count one D-step's logits on reals; every ``interval`` of them, move p."""
        with torch.no_grad():
            logits = real_logits.detach().float()
            # Fill kernels, not torch.tensor(..., device=...): a host-to-device copy has no place in a
            # captured CUDA graph.
            step = torch.stack(
                [logits.sign().sum(), logits.new_full((), float(logits.numel())), logits.new_ones(())]
            )
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(step[:2])
            self.stats += step
            signs, count, steps = self.stats.unbind()
            due = steps >= self.interval
            adjust = torch.sign(signs / count.clamp_min(1.0) - self.target) * count / (self.kimg * 1000.0)
            self.p.copy_(torch.where(due, (self.p + adjust).clamp(0.0, 1.0), self.p))
            self.stats.copy_(torch.where(due, torch.zeros_like(self.stats), self.stats))

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p.detach().cpu(), "stats": self.stats.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # In place: a captured CUDA graph keeps pointing at these tensors.
        self.p.copy_(state["p"])
        self.stats.copy_(state["stats"])
