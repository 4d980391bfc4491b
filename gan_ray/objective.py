"""The search objective: a reported metric and its direction, and the one rule for "better" and "best".

Ray's checkpoint manager, the sweep's champion choice and the registry's alias all rank by it. Ties
go to the later item, as Ray keeps the later of two equally scored checkpoints, so "the best eval" and
"the best checkpoint Ray kept" are the same eval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
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


#: How a multi-objective sweep picks its champion from the Pareto front (``search.champion.rule``).
CHAMPION_RULES = ("first_objective", "knee", "weighted")


def _costs(
    points: Sequence[Sequence[float | None]], objectives: Sequence[Objective]
) -> list[list[float]] | None:
    """Each point as costs to minimise (a maximised value negated); None where a value is missing or
    not finite."""
    out = []
    for p in points:
        if any(v is None or not math.isfinite(v) for v in p):
            out.append(None)
        else:
            out.append([v if o.mode == "min" else -v for v, o in zip(p, objectives, strict=True)])
    return out


def pareto_front(points: Sequence[Sequence[float | None]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the points no other point dominates (at least as good on every objective, better on one);
    points with a missing or non-finite value are never on it. Equal points are all on it."""
    costs = _costs(points, objectives)
    front = []
    for i, a in enumerate(costs):
        if a is None:
            continue
        dominated = any(
            b is not None
            and all(y <= x for x, y in zip(a, b, strict=True))
            and any(y < x for x, y in zip(a, b, strict=True))
            for b in costs
        )
        if not dominated:
            front.append(i)
    return front


def choose_from_front(
    points: Sequence[Sequence[float | None]],
    objectives: Sequence[Objective],
    rule: str = "first_objective",
    weights: Sequence[float] = (),
) -> int | None:
    """The index of the champion among ``points`` (one value per objective), chosen from the Pareto front:

    - ``first_objective``: the front's best on the first objective (ties: the best on the next ones);
    - ``knee``: each objective scaled to [0, 1] over the front (0 its best), the point nearest the ideal
      corner (0, ..., 0) in Euclidean distance;
    - ``weighted``: the least weighted sum of the scaled objectives (``weights``, one per objective).

    Ties go to the better first objective (then the next ones: a front of two points is always a tie for the
    knee, both at distance 1), then to the later point (as :class:`Objective` gives them). None when no
    point is finite."""
    if rule not in CHAMPION_RULES:
        raise ValueError(f"champion rule must be one of {list(CHAMPION_RULES)}, got {rule!r}")
    front = pareto_front(points, objectives)
    if not front:
        return None
    costs = _costs(points, objectives)
    if rule == "first_objective":
        return min(reversed(front), key=lambda i: costs[i])
    lows = [min(costs[i][j] for i in front) for j in range(len(objectives))]
    spans = [max(costs[i][j] for i in front) - lows[j] or 1.0 for j in range(len(objectives))]
    scaled = {i: [(costs[i][j] - lows[j]) / spans[j] for j in range(len(objectives))] for i in front}
    if rule == "knee":
        return min(reversed(front), key=lambda i: (math.fsum(s * s for s in scaled[i]), costs[i]))
    if len(weights) != len(objectives):
        raise ValueError(
            f"the weighted rule needs one weight per objective ({len(objectives)}), got {list(weights)}"
        )
    return min(
        reversed(front),
        key=lambda i: (math.fsum(w * s for w, s in zip(weights, scaled[i], strict=True)), costs[i]),
    )
