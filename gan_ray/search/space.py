"""A validated search space: the searched parameters over a base config, and what each trial trains.

:func:`gan_ray.search.load.load_search_space` builds one from a sweep file; its sections' settings (and
their defaults) are the models of :mod:`gan_ray.search.sections`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gan_ray.config import GanConfig, read_yaml, yaml_error_line
from gan_ray.errors import ConfigError, SearchSpaceError
from gan_ray.objective import Objective
from gan_ray.search.parameters import DISTRIBUTIONS, UNSET, Param
from gan_ray.search.parameters import initial_points as checked_points
from gan_ray.search.sections import Budget, Pbt, SamplerName, SchedulerName


@dataclass(frozen=True)
class SearchSpace:
    """A sweep as its file defines it. The settings come from the file's sections, whose models
    (:mod:`gan_ray.search.sections`) hold every default; this holds what was read."""

    name: str
    base: GanConfig
    params: tuple[Param, ...]
    objective: Objective
    budget: Budget
    sampler: SamplerName
    seed: int
    # Configurations to try first (e.g. known-good defaults): dotted keys -> values.
    initial_points: tuple[dict[str, Any], ...]
    # A choice parameter whose every value gets the same number of trials (num_samples each), drawn at
    # random: the fair-comparison protocol of Lucic et al. (2018) when it is loss.name.
    stratify: str | None
    # The champion is chosen among the best ``final_top`` trials by their best checkpoints scored again
    # on ``final_samples`` samples (0 trials: by the training evals alone).
    final_top: int
    final_samples: int
    scheduler: SchedulerName
    grace_period: int  # evals before ASHA may stop a trial
    reduction_factor: int
    # The population-based training settings (scheduler "pbt" only).
    pbt: Pbt | None = None
    source: Path | None = None
    description: str = ""
    # A multi-objective sweep's objectives (``objective`` is the first: ASHA's and the checkpoints');
    # empty for a single objective.
    objectives: tuple[Objective, ...] = ()
    # How the champion is picked from the Pareto front (multi-objective only).
    champion_rule: str = "first_objective"
    champion_weights: tuple[float, ...] = ()

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def searched_keys(self) -> tuple[str, ...]:
        """The parameters drawn from a distribution (not the fixed or tied ones), in file order."""
        return tuple(p.key for p in self.params if p.kind in DISTRIBUTIONS)

    def with_base_overrides(self, overrides: dict[str, Any]) -> SearchSpace:
        """This space with dotted keys of its base replaced (the command line's ``--set``), validated like
        the file. A searched key is refused: each trial sets it, so the override would do nothing."""
        searched = sorted(set(overrides) & {p.key for p in self.params})
        if searched:
            raise SearchSpaceError(
                f"--set {', '.join(searched)}: searched by {self.source or self.name}; --set changes the base "
                "config only (drop it there, or change the parameter's range)"
            )
        try:
            return dataclasses.replace(self, base=self.base.with_overrides(overrides))
        except ConfigError as err:
            raise ConfigError(f"--set: {err}") from None

    def with_initial_points(self, points: str | Path | list[dict[str, Any]]) -> SearchSpace:
        """This space with other points to try first instead of its ``search.initial_points`` (the
        command line's ``--initial-points``): a list of ``{parameter: value}`` mappings, a YAML file
        holding one, or ``"none"`` (and ``[]``) for none: a search from scratch. Each point is checked
        against this space's parameters; a bad one is a :class:`SearchSpaceError` naming it."""
        where = "--initial-points"
        if isinstance(points, (str, Path)) and str(points) != "none":
            path, where = Path(points).expanduser(), f"--initial-points {points}"
            if not path.is_file():
                raise SearchSpaceError(f"{where}: no such file")
            try:  # the sweep file's reader: 1e-3 is a float there, as in the search space itself
                points = read_yaml(path.read_text()) or []
            except yaml.YAMLError as err:
                raise SearchSpaceError(f"--initial-points {yaml_error_line(err, path)}") from None
        elif isinstance(points, (str, Path)):
            points = []
        if self.stratify and points:
            raise SearchSpaceError(
                f"{where}: {self.source or self.name} stratifies; it draws every point itself"
            )
        try:
            return dataclasses.replace(self, initial_points=checked_points(points, list(self.params)))
        except ValueError as err:
            raise SearchSpaceError(f"{where}: {err}") from None

    def with_budget(self, **changes: Any) -> SearchSpace:
        """This space with budget settings replaced (e.g. ``num_samples`` from the command line)."""
        return dataclasses.replace(self, budget=self.budget.model_copy(update=changes))

    def trial_config(self, values: dict[str, Any]) -> GanConfig:
        """The config a trial trains with: the base plus the sampled values (dotted keys).

        Loss parameters are replaced as a whole: a trial's loss gets only the parameters sampled for
        it, never a parameter the base set for another loss.
        """
        overrides = {k: v for k, v in values.items() if not k.startswith("loss.params.")}
        loss_params = {
            k.removeprefix("loss.params."): v for k, v in values.items() if k.startswith("loss.params.")
        }
        if "loss.name" in values and values["loss.name"] != self.base.loss.name:
            overrides["loss.params"] = loss_params
        elif loss_params:
            overrides["loss.params"] = {**self.base.loss.params, **loss_params}
        return self.base.with_overrides(overrides)

    def define_by_run(self, trial) -> None:
        """Optuna define-by-run space: conditional parameters are suggested only when their condition holds."""
        self._assign(lambda p: p.suggest(trial))

    def resolve(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Sampled values plus the fixed and tied ones whose conditions hold, in file order."""
        return self._assign(lambda p: sampled.get(p.key, UNSET))

    def _assign(self, draw) -> dict[str, Any]:
        """Walk the parameters in file order: fixed values, ties, and ``draw(p)`` for the searched ones."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if not p.active(chosen):
                continue
            if p.kind == "fixed":
                chosen[p.key] = p.value
                continue
            value = chosen.get(p.value, UNSET) if p.kind == "same_as" else draw(p)
            # Unset: a tie to an inactive parameter, or a value not sampled. None is a value (e.g. a
            # choice of "no EMA") and must reach the config, which may hold another default.
            if value is not UNSET:
                chosen[p.key] = value
        return chosen
