"""Augmentation for D on small datasets: DiffAugment's differentiable transforms, at a fixed probability
(``diffaug``) or at ADA's adaptive one (``ada``), applied to reals and fakes alike in every pass through D."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gan_ray.augment.ada import AdaptiveProbability
from gan_ray.augment.diffaugment import TRANSFORMS, diff_augment

__all__ = ["POLICIES", "TRANSFORMS", "AdaptiveProbability", "Augmentation", "diff_augment"]

#: ``data.augment.policy``'s values.
POLICIES = ("none", "diffaug", "ada")


@dataclass
class Augmentation:
    """What the step calls on every batch D sees: ``augment(x)``; ``observe(real_logits)`` after each D-step
    (a no-op but for ADA). ``p`` is a fixed probability (None: always, DiffAugment's way) or, with
    ``adaptive``, the adaptive one's device tensor."""

    transforms: tuple[str, ...] = TRANSFORMS
    p: float | None = None
    adaptive: AdaptiveProbability | None = None
    translation_ratio: float = 0.125
    cutout_ratio: float = 0.5
    _fixed: Tensor | None = field(default=None, init=False, repr=False)

    def probability(self, device: torch.device | None = None) -> Tensor | None:
        """The probability each transform is applied to a sample with, as a tensor (None: always)."""
        if self.adaptive is not None:
            return self.adaptive.p
        if self.p is None or self.p >= 1.0:
            return None
        if self._fixed is None or (device is not None and self._fixed.device != device):
            self._fixed = torch.tensor(float(self.p), device=device)
        return self._fixed

    def __call__(self, x: Tensor) -> Tensor:
        p = self.probability(x.device)
        return diff_augment(x, self.transforms, p, self.translation_ratio, self.cutout_ratio)

    def observe(self, real_logits: Tensor) -> None:
        if self.adaptive is not None:
            self.adaptive.observe(real_logits)

    def state_dict(self) -> dict[str, Any]:
        return {"ada": self.adaptive.state_dict()} if self.adaptive is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.adaptive is not None and "ada" in state:
            self.adaptive.load_state_dict(state["ada"])


def make_augmentation(
    policy: str,
    device: torch.device | str = "cpu",
    transforms: tuple[str, ...] = TRANSFORMS,
    p: float | None = None,
    target: float = 0.6,
    kimg: float = 500.0,
    interval: int = 4,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
) -> Augmentation | None:
    """The augmentation of ``policy`` (None for ``none``): ``diffaug`` at probability ``p`` (None: 1),
    ``ada`` starting at ``p`` (None: 0) and adapting towards D's ``target`` sign on reals."""
    if policy not in POLICIES:
        raise ValueError(f"augmentation policy {policy!r}; expected one of {list(POLICIES)}")
    if policy == "none":
        return None
    ratios = {"translation_ratio": translation_ratio, "cutout_ratio": cutout_ratio}
    if policy == "diffaug":
        return Augmentation(tuple(transforms), p, **ratios)
    adaptive = AdaptiveProbability(device, 0.0 if p is None else p, target, kimg, interval)
    return Augmentation(tuple(transforms), None, adaptive, **ratios)
