"""Optuna inside Ray Tune: the study a sweep's trials belong to, its sampler, and the points to try first.

The study lives in an RDB store (SQLite by default), so ``resume=True`` adds trials to the latest
study of the same sweep and the sampler sees every earlier trial.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from gan_ray.search_space import SearchSpace


def study_name_for(space_name: str, storage_url: str, resume: bool) -> str:
    """A new ``NAME-YYYYmmdd-HHMMSS`` study, or with ``resume`` the latest study of this sweep."""
    if resume:
        names = [
            s.study_name
            for s in optuna.get_all_study_summaries(storage=storage_url)
            if s.study_name == space_name or s.study_name.startswith(space_name + "-")
        ]
        if names:
            return sorted(names)[-1]
    return f"{space_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def trials_in_study(study_name: str, storage_url: str) -> int:
    return len(optuna.load_study(study_name=study_name, storage=storage_url).trials)


class FailingNonFiniteOptunaSearch(OptunaSearch):
    """OptunaSearch that records a trial whose final objective is NaN/inf (a diverged GAN) as FAIL.

    The stock class tells Optuna the NaN as a COMPLETE value; Optuna rejects it and the trial
    stays RUNNING in the study for ever, where TPE keeps treating it as pending.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        value = (result or {}).get(self.metric)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            result, error = {k: v for k, v in result.items() if k != self.metric}, True
        super().on_trial_complete(trial_id, result, error)


def fail_trial(searcher: OptunaSearch, trial_id: str) -> None:
    """Record a trial that Tune stopped without an ending (the sweep was interrupted) as FAIL.

    Otherwise it stays RUNNING in the study for ever, and a resumed sweep's TPE treats it as pending.
    """
    try:
        searcher.on_trial_complete(trial_id, error=True)
    except KeyError:
        pass  # a trial this searcher never suggested


def sampler_for(space: SearchSpace):
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=space.seed)
    # Multivariate TPE models the interactions (lr_g with lr_d, the loss with its parameters); group
    # splits the space by the conditions (an "experimental" argument since Optuna 2.8: a warning per sweep).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=space.seed, multivariate=True, group=True, n_startup_trials=5)


def stratified_points(space: SearchSpace, seed_offset: int = 0) -> list[dict[str, Any]]:
    """``budget.num_samples`` random points for each value of ``space.stratify`` (seeded by ``space.seed``;
    a resumed study passes its trial count as ``seed_offset`` so it draws new points)."""
    assert space.stratify is not None
    values = next(p.choices for p in space.params if p.key == space.stratify)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=space.seed + seed_offset))
    points = []
    for _ in range(space.budget.num_samples):
        for value in values:
            study.enqueue_trial({space.stratify: value})
            trial = study.ask()
            space.define_by_run(trial)
            points.append(dict(trial.params))
            study.tell(trial, 0.0)
    return points


def first_points(space: SearchSpace, study_name: str, study_url: str, resume: bool) -> list[dict[str, Any]]:
    """What the sweep evaluates before the sampler takes over: every stratified point, or the file's
    initial points (none when resuming: the study evaluated them already)."""
    if space.stratify:
        return stratified_points(space, seed_offset=trials_in_study(study_name, study_url) if resume else 0)
    if resume:
        return []
    return [dict(p) for p in space.initial_points][: space.budget.num_samples]


def make_searcher(
    space: SearchSpace, study_name: str, study_url: str, points: list[dict[str, Any]], metric: str
):
    """Tune's OptunaSearch over ``space``'s define-by-run space, in the study ``study_name``; it tells
    Optuna each trial's final ``metric``."""
    return FailingNonFiniteOptunaSearch(
        space=space.define_by_run,
        metric=metric,
        mode=space.objective.mode,
        sampler=sampler_for(space),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(study_url),
        points_to_evaluate=points or None,
    )
