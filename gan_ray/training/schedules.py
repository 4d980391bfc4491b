"""Schedules over a run: a value's factor at each step, from 1 at the start to ``final_ratio`` at the end of
its ``total_steps`` (a burn-in shorter than the run holds ``final_ratio`` after)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Schedule:
    """``schedule(step)`` is the factor at ``step`` of ``total_steps``: ``linear`` or ``cosine`` (the half
    cosine of Loshchilov and Hutter 2017, without restarts) from 1 down to ``final_ratio``."""

    kind: Literal["linear", "cosine"]
    final_ratio: float
    total_steps: int

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {self.kind!r}; expected 'constant', 'linear' or 'cosine'")
        if self.total_steps < 1:
            raise ValueError(f"a schedule needs total_steps >= 1, got {self.total_steps}")

    def __call__(self, step: int) -> float:
        progress = min(max(step / self.total_steps, 0.0), 1.0)
        if self.kind == "linear":
            return 1.0 - (1.0 - self.final_ratio) * progress
        return self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule(kind: str, final_ratio: float, run_steps: int, burn_in: float = 1.0) -> Schedule | None:
    """The :class:`Schedule` for ``kind`` over the first ``burn_in`` of a run of ``run_steps`` (R3GAN's
    burn-in: the value then holds at ``final_ratio``); None for ``constant`` (nothing to do between steps)."""
    if kind == "constant":
        return None
    return Schedule(kind, final_ratio, max(1, round(burn_in * run_steps)))  # type: ignore[arg-type]
