"""Population-based training as a sweep's scheduler: Tune's PBT over the search space's own distributions.

Tune allows no search algorithm beside PBT, so the initial population is drawn here, by Optuna's random
sampler on the space's define-by-run distributions (conditional parameters included), into the sweep's
study; :class:`LineagePbt` tells the trial ledger of every exploit, so the lineage reaches the recorder.
A trial that exploits restarts from the cloned trial's checkpoint with the new config: the worker builds
its step from that config and sets the config's learning rates and betas on the optimisers it restores
(:meth:`gan_ray.training.loop.Training.load_state_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from ray.tune.schedulers import PopulationBasedTraining

from gan_ray.search.parameters import Param
from gan_ray.search.space import SearchSpace

#: A list of neighbours moves an int parameter by one; wider int ranges are multiplied like floats.
MAX_INT_CHOICES = 16


def draw_population(space: SearchSpace, study_name: str, study_url: str, seed_offset: int = 0) -> list[dict]:
    """``budget.num_samples`` members: the file's initial points first, the rest drawn at random from the
    space, each asked of (and so recorded in) the study ``study_name``, whose numbers follow the list."""
    study = optuna.create_study(
        study_name=study_name,
        storage=optuna.storages.RDBStorage(study_url),
        direction="minimize" if space.objective.mode == "min" else "maximize",
        sampler=optuna.samplers.RandomSampler(seed=space.seed + seed_offset),
        load_if_exists=True,
    )
    fixed = [] if seed_offset else [dict(p) for p in space.initial_points]
    members = []
    for i in range(space.budget.num_samples):
        if i < len(fixed):
            study.enqueue_trial(fixed[i])
        trial = study.ask()
        space.define_by_run(trial)
        members.append(dict(trial.params))
    return members


def tell_population(
    study_name: str, study_url: str, members: list[dict], values: list[float | None], offset: int = 0
) -> None:
    """Tell the study each member's value (None or not finite: failed), numbered from ``offset``."""
    study = optuna.load_study(study_name=study_name, storage=optuna.storages.RDBStorage(study_url))
    for number, value in enumerate(values, start=offset):
        ok = value is not None and math.isfinite(value)
        study.tell(number, value if ok else None, state=None if ok else optuna.trial.TrialState.FAIL)


def _mutation(p: Param) -> Any:
    """Tune's mutation for one parameter: a list (moved to a neighbour) or a domain (multiplied)."""
    from ray import tune

    if p.kind == "choice":
        return list(p.choices)
    low, high = p.low, p.high
    if p.kind in ("int", "log_int") and high - low < MAX_INT_CHOICES:
        return list(range(int(low), int(high) + 1))
    return {
        "log_uniform": lambda: tune.loguniform(low, high),
        "uniform": lambda: tune.uniform(low, high),
        "int": lambda: tune.randint(int(low), int(high) + 1),
        "log_int": lambda: tune.lograndint(int(low), int(high) + 1),
    }[p.kind]()


def _keep_in_range(space: SearchSpace) -> Callable[[dict], dict]:
    """After a multiplication: back into the parameter's range (Tune's PBT leaves it wherever it lands)."""
    assert space.pbt is not None
    bounds = {p.key: p for p in space.params if p.key in space.pbt.mutate and p.kind != "choice"}

    def clip(config: dict) -> dict:
        for key, p in bounds.items():
            if key in config:
                value = min(max(config[key], p.low), p.high)
                config[key] = int(round(value)) if p.kind in ("int", "log_int") else value
        return config

    return clip


class LineagePbt(PopulationBasedTraining):
    """Tune's PBT, telling ``on_exploit(trial_id, source_id, source_step, new_config)`` of every exploit
    before the trial restarts from the cloned checkpoint."""

    def __init__(self, on_exploit: Callable[[str, str, int, dict], None], **kwargs: Any):
        super().__init__(**kwargs)
        self.on_exploit = on_exploit

    def _exploit(self, tune_controller, trial, trial_to_clone) -> None:
        super()._exploit(tune_controller, trial, trial_to_clone)
        source_step = int((self._trial_state[trial_to_clone].last_result or {}).get("step", 0))
        self.on_exploit(trial.trial_id, trial_to_clone.trial_id, source_step, dict(trial.config))


def make_pbt(space: SearchSpace, on_exploit: Callable[[str, str, int, dict], None]) -> LineagePbt:
    """The PBT scheduler of ``space``: it ranks trials by their latest objective (not their best so far,
    which a cloned trial inherits), in training steps."""
    pbt = space.pbt
    assert pbt is not None
    params = {p.key: p for p in space.params}
    return LineagePbt(
        on_exploit,
        time_attr="step",
        metric="objective",
        mode=space.objective.mode,
        perturbation_interval=pbt.perturbation_interval * space.base.train.eval_every,
        hyperparam_mutations={key: _mutation(params[key]) for key in pbt.mutate},
        quantile_fraction=pbt.quantile_fraction,
        resample_probability=pbt.resample_probability,
        custom_explore_fn=_keep_in_range(space),
    )
