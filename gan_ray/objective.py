"""The search objective: a reported metric and its direction, and the one rule for "better" and "best".

Ray's checkpoint manager, the sweep's champion choice and the registry's alias all rank by it. Ties
go to the later item, as Ray keeps the later of two equally scored checkpoints, so "the best eval" and
"the best checkpoint Ray kept" are the same eval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")
Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: Mode = "min"

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"objective mode must be 'min' or 'max', got {self.mode!r}")

    def better(self, new: float, old: float) -> bool:
        """``new`` strictly beats ``old``; a non-finite value beats nothing, and anything finite beats it."""
        if not math.isfinite(new):
            return False
        if not math.isfinite(old):
            return True
        return new < old if self.mode == "min" else new > old

    def best_of(self, items: Iterable[T], value: Callable[[T], float | None]) -> T | None:
        """The item with the best finite ``value``; the latest of equals; None if none is finite."""
        best: T | None = None
        best_value = math.nan
        for item in items:
            v = value(item)
            if v is None or not math.isfinite(v):
                continue
            if best is None or not self.better(best_value, v):  # ties: the later item wins
                best, best_value = item, v
        return best

    def best_value(self, values: Iterable[float | None]) -> float | None:
        """The best finite value of ``values`` (None if there is none)."""
        return self.best_of(values, lambda v: v)

    @property
    def worst(self) -> float:
        """The value every finite one beats (what an unscored trial ranks as)."""
        return math.inf if self.mode == "min" else -math.inf
