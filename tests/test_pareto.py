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


def test_a_tie_on_the_knee_goes_to_the_better_first_objective_whatever_the_order():
    # ring8_pareto's front (bench/QUALITY.md): two points, both at distance 1 from the ideal corner
    front = [(8, 0.799), (1, 0.96)]
    for points in (front, front[::-1]):
        assert points[choose_from_front(points, [MODES, QUALITY], "knee")] == (8, 0.799)
        assert points[choose_from_front(points, [MODES, QUALITY], "weighted", [1.0, 1.0])] == (8, 0.799)


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


def test_asha_under_a_list_of_objectives_stops_by_the_first_while_optuna_is_told_both(tmp_path):
    """What docs/search-spaces.md says ASHA does with a list: it ranks trials by the first objective's best
    (here a minimised one before a maximised one), and the study has one direction per objective."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler

    from gan_ray.ray.ledger import TrialLedger
    from gan_ray.ray.strategy import RANKED_BY, SearchStrategy
    from gan_ray.search.load import parse_search_space

    text = BASE.replace("metric: modes_covered, mode: max", "metric: mode_distance, mode: min")
    space = parse_search_space(text + "scheduler: {type: asha, grace_period: 1}\n")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    strategy = SearchStrategy(space, "mo_asha", url, False, TrialLedger(space), concurrency=2)
    assert isinstance(strategy.scheduler, ASHAScheduler)
    assert (strategy.metric, strategy.mode) == (RANKED_BY, "min")
    assert (strategy.searcher.metric, strategy.searcher.mode) == (
        ["mode_distance", "high_quality_fraction"],
        ["min", "max"],
    )
    study = optuna.load_study(study_name="mo_asha", storage=url)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]


def test_the_parent_run_params_name_every_objective_and_the_champion_rule():
    from gan_ray.search.load import parse_search_space
    from gan_ray.tracking.sweep import objectives_from_params, sweep_params

    space = parse_search_space(BASE + "search: {champion: {rule: weighted, weights: [1.0, 2.0]}}\n")
    params = sweep_params(space, "mo")
    assert params["sweep.objectives"] == "modes_covered:max,high_quality_fraction:max"
    assert params["sweep.champion_rule"] == "weighted [1.0, 2.0]"
    assert params["sweep.metric"] == "modes_covered"
    single = parse_search_space(BASE.replace("objective: [", "#"))
    assert "sweep.objectives" not in sweep_params(single, "one")
    # what `gan-ray report` reads back to draw the front again
    assert objectives_from_params(params) == ((MODES, QUALITY), "weighted", (1.0, 2.0))
    assert objectives_from_params(sweep_params(single, "one")) == ((), "first_objective", ())


def test_the_report_of_a_two_direction_study_names_its_objectives_the_rule_and_the_champion(tmp_path):
    import optuna

    from gan_ray.ray.study import read_study
    from gan_ray.tracking.report import write_report

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="fm-1", storage=url, directions=["minimize", "maximize"])
    # (fid_classifier, recall) of four trials: the second is dominated by the first
    distribution = {"optim.lr_g": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    for values in [(40.0, 0.6), (50.0, 0.5), (20.0, 0.45), (10.0, 0.2)]:
        study.tell(study.ask(distribution), list(values))
    fid, recall = Objective("fid_classifier", "min"), Objective("recall", "max")
    record = read_study("fm-1", url, "fid_classifier", objectives=(fid, recall), champion_rule="knee")
    files = {p.name for p in write_report(record, tmp_path / "r")}
    assert "pareto_front.png" in files
    text = (tmp_path / "r" / "README.md").read_text()
    assert "objectives `fid_classifier` (min), `recall` (max), each at the trial's last eval" in text
    # the front scaled to [0, 1] (0 best): (1, 0), (1/3, 3/8), (0, 1): the middle one is the knee
    assert "3 of 4 completed trials on the Pareto front" in text
    assert "its `knee` pick: trial 2 (fid_classifier 20, recall 0.45)" in text
