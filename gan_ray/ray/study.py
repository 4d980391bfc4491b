"""A sweep's Optuna study read back as plain data for its report (:class:`~gan_ray.search.trials.StudyRecord`):
every trial, how each parameter was searched, and the parameters' importances by fANOVA.

Only Optuna is imported here (no Ray), so ``gan-ray report`` reads a study without starting Ray.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from optuna.trial import TrialState

from gan_ray.errors import ConfigError
from gan_ray.objective import Objective
from gan_ray.search.trials import StudyRecord, StudyTrial

#: Completed trials below which no importances are computed: fANOVA's random forest then fits noise
#: (with one trial it returns the same share for every parameter).
MIN_TRIALS_FOR_IMPORTANCE = 8


def read_study(
    study_name: str,
    storage_url: str,
    metric: str,
    *,
    stratify: str | None = None,
    searched: Sequence[str] | None = None,
    objectives: Sequence[Objective] = (),
    champion_rule: str = "first_objective",
    champion_weights: Sequence[float] = (),
) -> StudyRecord:
    """The study ``study_name`` in ``storage_url``, whose values are the objective ``metric``.

    ``searched``: the searched parameters in the order to show them (default: as the trials first
    suggested them). A missing study is a :class:`~gan_ray.errors.ConfigError` naming the storage.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per study load is only noise
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except KeyError:
        raise ConfigError(f"no Optuna study {study_name!r} in {storage_url} (see --study-storage)") from None
    multi = len(study.directions) > 1
    mode = "min" if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else "max"
    frozen = study.get_trials(deepcopy=False)
    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    for t in frozen:
        for key, dist in t.distributions.items():
            distributions.setdefault(key, dist)
    keys = [k for k in (searched or distributions) if k in distributions]
    importances, note = param_importances(study)
    return StudyRecord(
        name=study_name,
        objective=Objective(metric, mode),
        trials=tuple(_trial(t, multi) for t in frozen),
        objectives=tuple(objectives) if multi else (),
        champion_rule=champion_rule,
        champion_weights=tuple(champion_weights),
        searched=tuple(keys),
        log_scale=frozenset(k for k in keys if getattr(distributions[k], "log", False)),
        choices={
            k: tuple(d.choices) for k, d in distributions.items() if isinstance(d, CategoricalDistribution)
        },
        stratify=stratify,
        importances=importances,
        importance_note=note,
    )


def param_importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """fANOVA importances (largest first) of the parameters every completed trial has, and a line on how
    they were computed; with too few completed trials, none and a line that says so."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(completed) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, (
            f"No importances: {len(completed)} completed trial(s); fANOVA needs at least "
            f"{MIN_TRIALS_FOR_IMPORTANCE} to say anything (add trials with `gan-ray sweep ... --resume`)."
        )
    # A multi-objective study: the importances for the first objective.
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    try:
        # Optuna 5 defaults to PED-ANOVA; fANOVA (seeded) is the evaluator the literature reports.
        values = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), target=target)
    except (RuntimeError, ValueError) as err:
        return {}, f"No importances: Optuna could not compute them ({err})."
    if not values:
        return {}, "No importances: no parameter was searched in every completed trial."
    shown = ", ".join(f"`{k}`" for k in values)
    return {k: float(v) for k, v in values.items()}, (
        f"fANOVA (Optuna's FanovaImportanceEvaluator, seed 0) over {len(completed)} completed trials, for "
        f"the parameters every completed trial has ({shown}); conditional ones are left out."
    )


def _trial(t: optuna.trial.FrozenTrial, multi: bool) -> StudyTrial:
    if not multi:
        return StudyTrial(t.number, t.state.name, _finite(t.value), dict(t.params))
    values = tuple(_finite(v) for v in t.values) if t.values else ()
    return StudyTrial(t.number, t.state.name, values[0] if values else None, dict(t.params), values)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
