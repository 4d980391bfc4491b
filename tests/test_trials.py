"""What a sweep makes of its trials: the champion rule (never a collapsed trial) and the summaries that
count every status."""

from __future__ import annotations

from gan_ray.objective import Objective
from gan_ray.search.trials import SweepResult, TrialSummary, best_per, best_trial, format_summary
from gan_ray.tracking.sweep import describe

MIN = Objective("mode_distance", "min")


def trial(trial_id: str, status: str, best: float | None, final: float | None = None, **params):
    return TrialSummary(
        trial_id=trial_id,
        status=status,  # type: ignore[arg-type]
        params={"loss.name": "non_saturating", **params},
        objective=best,
        best_objective=best,
        last_step=900,
        best_checkpoint=f"/ckpt/{trial_id}",
        health="ok" if status in ("completed", "stopped_early") else "d_won",
        final_objective=final,
        final_samples=20000 if final is not None else None,
    )


def test_the_champion_is_never_a_collapsed_trial_even_with_the_best_objective():
    trials = [
        trial("collapsed", "collapsed", 0.01),  # the best number of all, by a D that has won
        trial("good", "completed", 0.20),
        trial("early", "stopped_early", 0.30),
    ]
    assert best_trial(trials, MIN).trial_id == "good"
    assert best_trial(list(reversed(trials)), MIN).trial_id == "good"
    # Nor when it was (wrongly) rescored on more samples, and better there too.
    trials[0].final_objective = 0.001
    assert best_trial(trials, MIN).trial_id == "good"
    # A collapsed trial alone is no champion at all; per-group bests follow the same rule.
    assert best_trial([trial("c", "collapsed", 0.01)], MIN) is None
    groups = [trial("c", "collapsed", 0.01, **{"loss.name": "hinge"}), trial("h", "completed", 0.5)]
    assert {
        t.trial_id for t in best_per(SweepResult("s", "st", MIN, trials=groups), "loss.name").values()
    } == {"h"}


def test_summaries_count_collapsed_trials_and_name_them():
    result = SweepResult(
        "ring8",
        "ring8-1",
        MIN,
        trials=[
            trial("a1", "completed", 0.2),
            trial("b2", "collapsed", 0.01),
            trial("c3", "diverged", None),
        ],
    )
    result.best = best_trial(result.trials, MIN)
    text = format_summary(result)
    assert "'collapsed': 1" in text and "collapsed (never the champion): b2 (d_won)" in text
    assert "best trial a1" in text
    note = describe(result)
    assert "3 trials (1 completed, 1 collapsed, 1 diverged)" in note
    assert "`b2` (d_won)" in note and "Best: trial `a1`" in note
    assert result.rows()[1]["status"] == "collapsed" and result.rows()[1]["health"] == "d_won"


def test_a_sweep_of_collapsed_trials_has_no_best_and_says_so():
    result = SweepResult("ring8", "ring8-1", MIN, trials=[trial("b2", "collapsed", 0.01)])
    result.best = best_trial(result.trials, MIN)
    assert result.best is None
    assert "no usable trial" in format_summary(result)
    assert "No usable trial" in describe(result)


def test_a_multi_objective_summary_names_the_rule_and_the_champions_value_of_each_objective():
    from gan_ray.search.trials import front_champion

    modes, quality = Objective("modes_covered", "max"), Objective("high_quality_fraction", "max")
    trials = [trial("a1", "completed", 8.0), trial("b2", "completed", 1.0), trial("c3", "stopped_early", 8.0)]
    for t, values in zip(trials, [(8.0, 0.799), (1.0, 0.96), (8.0, 0.087)], strict=True):
        t.values = values
    result = SweepResult("ring8_pareto", "r-1", modes, trials=trials)
    result.best, result.front = front_champion(trials, (modes, quality), "knee")
    result.champion_rule, result.objectives = "knee", (modes, quality)
    line = "the `knee` pick of the Pareto front (2 of 3 usable trials), at its last eval: "
    line += "modes_covered = 8, high_quality_fraction = 0.799"
    assert f"  champion: {line}\n" in format_summary(result)
    assert f"Champion: {line}." in describe(result)
