"""Optuna inside Ray Tune: the study a sweep's trials belong to, its sampler, and the points to try first.

The study lives in an RDB store (SQLite by default), so ``resume=True`` adds trials to the latest
study of the same sweep and the sampler sees every earlier trial.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch
from sqlalchemy.engine import make_url

from gan_ray.errors import StudyNotFoundError
from gan_ray.search.space import SearchSpace


def study_name_for(space_name: str, storage_url: str, resume: bool) -> str:
    """A new ``NAME-YYYYmmdd-HHMMSS`` study, or with ``resume`` the latest study of this sweep
    (:func:`latest_study`: an error where there is none)."""
    if resume:
        return latest_study(space_name, storage_url)
    return f"{space_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_study(space_name: str, storage_url: str) -> str:
    """The latest study of sweep ``space_name`` in ``storage_url``.

    Raises :class:`StudyNotFoundError` where there is none, without creating or changing anything: a
    resume that quietly started a new study (what a fresh ``./optuna.db`` in a job's temporary folder
    did) would split one sweep over two studies, and its sampler would forget every earlier trial.
    """
    why = _no_optuna_storage(storage_url)
    names = [] if why else _sweep_studies(space_name, storage_url)
    if names:
        return sorted(names)[-1]
    if not why:
        held = sorted(s.study_name for s in optuna.get_all_study_summaries(storage=storage_url))
        why = f"it holds {', '.join(held[:5])}{' ...' if len(held) > 5 else ''}" if held else "it holds none"
    raise StudyNotFoundError(
        f"nothing to resume: no Optuna study of sweep {space_name!r} in {storage_url} ({why}); pass the "
        "storage the sweep used (--study-storage, or $GAN_RAY_OPTUNA_STORAGE), or run without --resume "
        "to start a new study"
    )


def _sweep_studies(space_name: str, storage_url: str) -> list[str]:
    return [
        s.study_name
        for s in optuna.get_all_study_summaries(storage=storage_url)
        if s.study_name == space_name or s.study_name.startswith(space_name + "-")
    ]


def _no_optuna_storage(storage_url: str) -> str | None:
    """Why an SQLite ``storage_url`` cannot hold a study to resume (None: it may). Read-only: Optuna's
    storage would create the file, or its tables in a database that is not Optuna's."""
    url = make_url(storage_url)
    if url.get_backend_name() != "sqlite":
        return None
    if url.database in (None, "", ":memory:"):
        return "an in-memory database keeps nothing"
    path = Path(url.database)
    if not path.is_file():
        return f"the file {path} does not exist"
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return None if "studies" in tables else f"the file {path} is not an Optuna database"


def trials_in_study(study_name: str, storage_url: str) -> int:
    return len(optuna.load_study(study_name=study_name, storage=storage_url).trials)


class FailingNonFiniteOptunaSearch(OptunaSearch):
    """OptunaSearch that records a trial whose final objective is NaN/inf (a diverged GAN) as FAIL, and
    a trial the scheduler stopped before its last step as PRUNED.

    The stock class tells Optuna the NaN as a COMPLETE value; Optuna rejects it and the trial
    stays RUNNING in the study for ever, where TPE keeps treating it as pending. It also tells a trial
    ASHA stopped at a third of its run as COMPLETE with the value it had there, and TPE then compares
    that partial value with finished trials' final ones as if they were alike: a schedule that pays off
    late (a decaying learning rate) looks bad because its trials were judged early. As PRUNED, Optuna
    keeps the trial's last intermediate value and its step, and TPE ranks it below the finished trials.
    """

    def __init__(self, *args, steps_of: SearchSpace | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._steps_of = steps_of  # the space that gives a trial's planned steps from its Tune config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [(result or {}).get(m) for m in metrics]
        # Multi-objective: every value must be a finite number, else Optuna leaves the trial RUNNING.
        if any(isinstance(v, (int, float)) and not math.isfinite(v) for v in values) or (
            len(metrics) > 1 and result and any(v is None for v in values)
        ):
            result, error = None, True  # no values: Optuna records a FAIL
        elif result and not error and len(metrics) == 1 and self._stopped_early(trial_id, result):
            # Tune hands the result the scheduler stopped the trial on to this call, not to
            # on_trial_result: report it, so PRUNED keeps it (and a trial stopped at its first eval has one).
            value, ot_trial = values[0], self._ot_trials.get(trial_id)
            if isinstance(value, (int, float)) and ot_trial is not None:
                ot_trial.report(value, int(result.get(TRAINING_ITERATION, 1)))
            result = None  # no value and no error: the stock class tells Optuna PRUNED
        super().on_trial_complete(trial_id, result, error)

    def _stopped_early(self, trial_id: str, result: dict) -> bool:
        step, ot_trial = result.get("step"), self._ot_trials.get(trial_id)
        if self._steps_of is None or ot_trial is None or not isinstance(step, (int, float)):
            return False
        # The trial's own steps (train.steps may be searched): from the values Optuna gave it, since the
        # result Tune hands a searcher carries no config.
        space = self._steps_of
        return step < space.trial_config(space.resolve(dict(ot_trial.params))).train.steps


#: The user attribute of an Optuna trial that ended FAIL only because its sweep was interrupted (it
#: says how): such a trial does not count towards the sweep's planned number of trials.
INTERRUPTED_ATTR = "gan_ray.interrupted"


def fail_trial(searcher, trial_id: str, why: str = "the sweep was interrupted") -> None:
    """Record a trial that Tune stopped without an ending (the sweep was interrupted, or Tune never
    started it) as FAIL. ``searcher``: the OptunaSearch, or a ConcurrencyLimiter around it (which then
    frees the trial's place too).

    Otherwise it stays RUNNING in the study for ever, and a resumed sweep's TPE treats it as pending.
    """
    # OptunaSearch keeps the Optuna trial it asked for each Tune trial in `_ot_trials`.
    optuna_search = getattr(searcher, "searcher", searcher)
    ot_trial = getattr(optuna_search, "_ot_trials", {}).get(trial_id)
    if ot_trial is not None:
        ot_trial.set_user_attr(INTERRUPTED_ATTR, why)
    try:
        searcher.on_trial_complete(trial_id, error=True)
    except KeyError:
        pass  # a trial this searcher never suggested


def fail_running_trials(study_name: str, storage_url: str, why: str) -> list[int]:
    """End as FAIL every trial of the study still RUNNING (its sweep's driver died with it: ``kill -9``,
    a lost head, a closed session); returns their numbers.

    Only for a study no other sweep is running: a live sweep's trials are RUNNING too.
    """
    storage = optuna.storages.get_storage(storage_url)
    study_id = storage.get_study_id_from_name(study_name)
    stale = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, why)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    return [t.number for t in stale]


def finished_trials(study_name: str, storage_url: str) -> int:
    """The study's trials that reached an ending of their own (completed, stopped early, pruned, or
    failed by themselves): those a resumed sweep does not run again. Trials failed, or still RUNNING,
    because their sweep was interrupted are not among them."""
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(
        1 for t in study.get_trials(deepcopy=False, states=ended) if INTERRUPTED_ATTR not in t.user_attrs
    )


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
    Optuna each trial's final ``metric``, or for a multi-objective sweep each objective's metric at the
    trial's last eval (a study with one direction per objective; the sampler's multi-objective form).
    A trial the scheduler stopped is PRUNED at its last eval's value."""
    metrics: str | list[str] = metric
    modes: str | list[str] = space.objective.mode
    if space.multi_objective:
        metrics = [o.metric for o in space.objectives]
        modes = [o.mode for o in space.objectives]
    return FailingNonFiniteOptunaSearch(
        space=space.define_by_run,
        metric=metrics,
        mode=modes,
        sampler=sampler_for(space),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(study_url),
        points_to_evaluate=points or None,
        steps_of=space,
    )
