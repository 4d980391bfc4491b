"""The Pareto front of a multi-objective sweep and the stated rules that pick its champion."""

from __future__ import annotations

import math

import pytest

from gan_ray.objective import Objective, choose_from_front, pareto_front

MODES, QUALITY = Objective("modes_covered", "max"), Objective("high_quality_fraction", "max")
# (modes covered, high-quality fraction) of six trials
POINTS = [(8, 0.50), (6, 0.95), (8, 0.40), (7, 0.80), (4, 0.90), (None, 0.99)]


def test_the_front_holds_the_undominated_finite_points():
    assert pareto_front(POINTS, [MODES, QUALITY]) == [0, 1, 3]
    # minimised objectives are read the other way round
    assert pareto_front([(1.0, 5.0), (2.0, 1.0), (3.0, 3.0)], [Objective("a"), Objective("b")]) == [0, 1]
    assert pareto_front([(math.inf, 1.0), (1.0, math.nan)], [Objective("a"), Objective("b")]) == []
    assert pareto_front([(1, 1), (1, 1)], [MODES, QUALITY]) == [0, 1]  # equals do not dominate each other


def test_each_rule_picks_its_champion_from_the_front():
    objectives = [MODES, QUALITY]
    assert choose_from_front(POINTS, objectives, "first_objective") == 0  # 8 modes, then quality
    # scaled over the front: (8, .5) -> (0, 1), (6, .95) -> (1, 0), (7, .8) -> (.5, .33): the knee
    assert choose_from_front(POINTS, objectives, "knee") == 3
    assert choose_from_front(POINTS, objectives, "weighted", [1.0, 0.1]) == 0
    assert choose_from_front(POINTS, objectives, "weighted", [0.1, 1.0]) == 1
    assert choose_from_front([(None, 1.0)], objectives) is None


def test_bad_rules_and_weights_are_one_line():
    with pytest.raises(ValueError, match="champion rule must be one of"):
        choose_from_front(POINTS, [MODES, QUALITY], "best")
    with pytest.raises(ValueError, match="one weight per objective"):
        choose_from_front(POINTS, [MODES, QUALITY], "weighted", [1.0])


BASE = """
name: mo
base: {data: {name: ring8}, train: {steps: 600, eval_every: 100}}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
objective: [{metric: modes_covered, mode: max}, {metric: high_quality_fraction, mode: max}]
"""


def test_a_sweep_file_takes_a_list_of_objectives_and_a_champion_rule():
    from gan_ray.search.load import parse_search_space

    space = parse_search_space(BASE + "search: {champion: {rule: weighted, weights: [1.0, 2.0]}}\n")
    assert space.multi_objective and space.objective == MODES and space.objectives == (MODES, QUALITY)
    assert (space.champion_rule, space.champion_weights) == ("weighted", (1.0, 2.0))
    assert not parse_search_space(BASE.replace("objective: [", "x: [").replace("x: [", "#")).multi_objective


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "scheduler: {type: pbt, mutate: [optim.lr_g]}\n",
            "scheduler.type: PBT ranks a population by one metric",
        ),
        ("search: {champion: {rule: weighted}}\n", "needs 2 weights, one per objective"),
        ("search: {champion: {rule: best}}\n", "search.champion.rule: expected 'first_objective'"),
    ],
)
def test_what_a_multi_objective_sweep_refuses_is_one_line(extra, message):
    from gan_ray.errors import SearchSpaceError
    from gan_ray.search.load import parse_search_space

    with pytest.raises(SearchSpaceError, match=message):
        parse_search_space(BASE + extra)
