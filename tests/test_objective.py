"""The one rule for "better" and "best" that Ray's checkpoint keeping, the champion and the registry share."""

from __future__ import annotations

import math

import pytest

from gan_ray.objective import Objective


def test_better_follows_the_direction_and_ignores_non_finite_values():
    low, high = Objective("fid", "min"), Objective("accuracy", "max")
    assert low.better(1.0, 2.0) and not low.better(2.0, 1.0) and not low.better(1.0, 1.0)
    assert high.better(2.0, 1.0) and not high.better(1.0, 2.0)
    for objective in (low, high):
        assert objective.better(5.0, math.nan) and objective.better(5.0, objective.worst)
        assert not objective.better(math.nan, 5.0) and not objective.better(math.inf, 5.0)


def test_best_of_skips_unscored_items_and_gives_ties_to_the_later_one():
    """Ray keeps the later of two equally scored checkpoints; the best eval must be that same one."""
    evals = [
        {"step": 100, "objective": 0.5},
        {"step": 200, "objective": None},
        {"step": 300, "objective": 0.2},
        {"step": 400, "objective": math.nan},
        {"step": 500, "objective": 0.2},
    ]
    best = Objective("mode_distance", "min").best_of(evals, lambda e: e["objective"])
    assert best["step"] == 500
    best = Objective("mode_distance", "max").best_of(evals, lambda e: e["objective"])
    assert best["step"] == 100
    assert Objective("x").best_of([{"objective": None}], lambda e: e["objective"]) is None


def test_an_unknown_direction_is_refused():
    with pytest.raises(ValueError, match="'min' or 'max'"):
        Objective("fid", "lowest")
