"""Sweep files: a readable YAML file -> a validated :class:`~gan_ray.search.space.SearchSpace`.

A file names the base config, the parameters to search (dotted config keys, with a distribution,
a fixed value, or a condition on another parameter), the objective, the budget, the sampler and
the scheduler. Every error points at the file, the line and the key.

    parameters:
      optim.lr_g: {log_uniform: [1.0e-5, 1.0e-2]}
      train.d_steps_per_g_step: {int: [1, 5]}
      loss.name: {choice: [non_saturating, wasserstein]}
      loss.params.clip: {log_uniform: [0.001, 0.1], when: {loss.name: wasserstein}}
      model.hidden_dim: 128          # a fixed value
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gan_ray.config import GanConfig, load_config, validate_config
from gan_ray.data.catalog import RENAMED_METRICS
from gan_ray.errors import ConfigError, SearchSpaceError
from gan_ray.objective import Objective
from gan_ray.search.lines import SourceLines, compose
from gan_ray.search.parameters import DISTRIBUTIONS, Param, read_params
from gan_ray.search.sections import (
    PBT_KEYS,
    PBT_MUTABLE,
    Asha,
    Budget,
    ObjectiveChoice,
    Pbt,
    Scheduler,
    Search,
)
from gan_ray.search.space import SearchSpace

log = logging.getLogger(__name__)

TOP_LEVEL = (
    "name",
    "description",
    "base",
    "base_config",
    "parameters",
    "objective",
    "budget",
    "search",
    "scheduler",
)


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a sweep file (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise SearchSpaceError(f"search space file not found: {path}")
    return parse_search_space(path.read_text(), source=str(path), base_dir=path.parent)


def parse_search_space(text: str, source: str = "<string>", base_dir: Path | None = None) -> SearchSpace:
    """A validated :class:`SearchSpace` from YAML ``text``; errors say ``source:line``, the key and why."""
    data, lines = compose(text, source)
    if not isinstance(data, dict):
        raise lines.fail((), "a search space file must be a mapping with at least 'name' and 'parameters'")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise lines.fail((unknown[0],), f"unknown key; expected some of {list(TOP_LEVEL)}")
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise lines.fail(("name",), f"expected a non-empty name without '/', got {name!r}")
    base = _read_base(lines, data, source, base_dir)
    base = base.with_overrides({"name": name}) if base.name == "gan" else base
    params = read_params(lines, data.get("parameters"))
    budget = _read_budget(lines, data.get("budget") or {})
    scaled = _apply_budget(lines, base, budget)
    objectives = _read_objectives(lines, data.get("objective") or {}, base)
    search = _section(lines, "search", Search, data, "{sampler: tpe, seed: 0}", {"params": params})
    space = SearchSpace(
        name=name,
        base=scaled,
        params=tuple(params),
        objective=objectives[0],
        objectives=objectives if len(objectives) > 1 else (),
        champion_rule=search.champion.rule,
        champion_weights=search.champion.weights,
        budget=budget,
        sampler=search.sampler,
        seed=search.seed,
        initial_points=search.initial_points,
        stratify=search.stratify,
        final_top=search.final_eval.top,
        final_samples=search.final_eval.samples,
        source=Path(source) if source != "<string>" else None,
        description=str(data.get("description", "")),
        **_read_scheduler(lines, data),
    )
    _check_branches(lines, space)
    _check_champion(lines, space)
    if space.pbt is not None:
        _check_pbt(lines, space)
    return space


def _read_objectives(lines: SourceLines, raw: Any, base: GanConfig) -> tuple[Objective, ...]:
    """One objective (a mapping) or several (a list of mappings: a multi-objective sweep)."""
    if not isinstance(raw, list):
        return (_read_objective(lines, raw, base),)
    if len(raw) < 2 or any(not isinstance(item, dict) or "metric" not in item for item in raw):
        raise lines.fail(
            ("objective",), "a list of objectives needs two or more, each {metric: NAME, mode: min|max}"
        )
    objectives = tuple(
        _read_objective(lines, item, base, ("objective", str(i))) for i, item in enumerate(raw)
    )
    metrics = [o.metric for o in objectives]
    if len(set(metrics)) < len(metrics):
        raise lines.fail(("objective",), f"each objective once; got {metrics}")
    return objectives


def _check_champion(lines: SourceLines, space: SearchSpace) -> None:
    """A multi-objective sweep: PBT refused, the weighted rule's weights one per objective."""
    if not space.multi_objective:
        return
    if space.scheduler == "pbt":
        raise lines.fail(
            ("scheduler", "type"),
            "PBT ranks a population by one metric: a multi-objective sweep takes asha (on the first "
            "objective) or none",
        )
    n = len(space.objectives)
    if space.champion_rule == "weighted" and len(space.champion_weights) != n:
        raise lines.fail(
            ("search", "champion", "weights"),
            f"the weighted rule needs {n} weights, one per objective; got {list(space.champion_weights)}",
        )


def _section(
    lines: SourceLines, key: str, model: type, data: dict[str, Any], shape: str, context: Any = None
) -> Any:
    """Top-level section ``key`` (left out or empty: every default) as ``model``."""
    raw = data.get(key) or {}
    if not isinstance(raw, dict):
        raise lines.fail((key,), f"expected a mapping like {shape}")
    return lines.validate((key,), model, raw, context)


def _read_base(lines: SourceLines, data: dict[str, Any], source: str, base_dir: Path | None) -> GanConfig:
    if "base_config" not in data:
        try:
            return validate_config(data.get("base") or {}, source=f" in {source} (base)")
        except ConfigError as err:
            raise lines.fail(("base",), str(err)) from None
    if "base" in data:
        raise lines.fail(("base",), "give either 'base' or 'base_config', not both")
    base_path = Path(data["base_config"])
    if not base_path.is_absolute() and base_dir is not None:
        base_path = base_dir / base_path
    try:
        return load_config(base_path)
    except ConfigError as err:
        raise lines.fail(("base_config",), str(err)) from None


def _read_objective(
    lines: SourceLines, raw: Any, base: GanConfig, at: tuple[Any, ...] = ("objective",)
) -> Objective:
    """The ``objective:`` section over the base config's objective; a metric the data reports."""
    shape = "expected {metric: NAME, mode: min|max}, or a list of them"
    if not isinstance(raw, dict):
        raise lines.fail(at, shape)
    try:
        choice = ObjectiveChoice.model_validate(raw)
    except ValidationError:
        raise lines.fail(at, shape) from None
    default, reported = base.objective, base.reported_metrics
    metric = default.metric if choice.metric is None else choice.metric
    mode = default.mode if choice.mode is None else choice.mode
    if metric in RENAMED_METRICS and not base.data.is_mixture:
        # A name of earlier versions ('fid' read as Inception-FID): say what it is now and go on.
        log.warning("objective metric %r is now named %r", metric, default.metric)
        metric = default.metric
    if metric not in reported:
        raise lines.fail(
            (*at, "metric"),
            f"{metric!r} is not reported for {base.data.name!r}; expected one of {list(reported)}",
        )
    return Objective(metric, mode)


def _read_budget(lines: SourceLines, raw: Any) -> Budget:
    if not isinstance(raw, dict):
        raise lines.fail(("budget",), "expected a mapping")
    bad = sorted(set(raw) - set(Budget.model_fields))
    if bad:
        raise lines.fail(("budget", bad[0]), f"unknown key; expected some of {list(Budget.model_fields)}")
    return lines.validate(("budget",), Budget, raw)


def _apply_budget(lines: SourceLines, base: GanConfig, budget: Budget) -> GanConfig:
    """The base config with the budget's scaling; the config's own rules (e.g. a GPU fraction only for
    1-worker trials) are checked here and pointed at the budget."""
    try:
        return base.with_overrides(
            {
                "scaling.num_workers": budget.workers_per_trial,
                "scaling.cpus_per_worker": budget.cpus_per_worker,
                "scaling.use_gpu": budget.gpus_per_worker > 0,
                "scaling.gpus_per_worker": budget.gpus_per_worker or 1.0,
            }
        )
    except ConfigError as err:
        raise lines.fail(("budget",), str(err)) from None


def _read_scheduler(lines: SourceLines, data: dict[str, Any]) -> dict[str, Any]:
    """The ``scheduler:`` section: its type, ASHA's settings (PBT's defaults are ASHA's too, unused)
    and, for PBT, its own."""
    choice = _section(lines, "scheduler", Scheduler, data, "{type: asha, grace_period: 2}")
    raw = data.get("scheduler") or {}
    pbt = None
    if choice.type == "pbt":
        unknown = sorted(set(raw) - set(PBT_KEYS))
        if unknown:
            raise lines.fail(
                ("scheduler", unknown[0]), f"not a PBT setting; expected some of {list(PBT_KEYS)}"
            )
        pbt = lines.validate(("scheduler",), Pbt, {k: v for k, v in raw.items() if k != "type"})
        raw = {}
    asha = lines.validate(("scheduler",), Asha, raw)
    return {
        "scheduler": choice.type,
        "pbt": pbt,
        "grace_period": asha.grace_period,
        "reduction_factor": asha.reduction_factor,
    }


def _check_branches(lines: SourceLines, space: SearchSpace) -> None:
    """Build a config for every branch of the choices (numbers at their range ends): all must validate."""
    choice_params = [p for p in space.params if p.kind in ("choice", "fixed")]
    numeric = [p for p in space.params if p.kind not in ("choice", "fixed")]
    combos = itertools.product(*(p.corners() for p in choice_params))
    for combo in itertools.islice(combos, 500):
        for corner in (0, -1):
            sampled = {p.key: v for p, v in zip(choice_params, combo, strict=True)}
            sampled.update({p.key: p.corners()[corner] for p in numeric})
            values = space.resolve(sampled)
            try:
                space.trial_config(values)
            except ConfigError as err:
                # Point at the most specific parameter the error names (a child after its parent).
                key = next((k for k in reversed(list(values)) if f"'{k.split('.')[-1]}'" in str(err)), None)
                key = key or next((k for k in reversed(list(values)) if k.split(".")[0] in str(err)), None)
                path = ("parameters", key) if key else ("parameters",)
                raise lines.fail(path, f"a trial with {values} would not run: {err}") from None


def _check_pbt(lines: SourceLines, space: SearchSpace) -> None:
    """A PBT space mutates only searched keys that a restored run takes on (:data:`PBT_MUTABLE`)."""
    assert space.pbt is not None
    path = ("scheduler", "mutate")
    params: dict[str, Param] = {p.key: p for p in space.params}
    for key in space.pbt.mutate:
        if key not in PBT_MUTABLE:
            raise lines.fail(
                path,
                f"{key!r} cannot change mid-run: a PBT trial continues another trial's checkpoint, so it may "
                f"mutate only {list(PBT_MUTABLE)} (search the rest in the initial population)",
            )
        p = params.get(key)
        if p is None or p.kind not in DISTRIBUTIONS or p.when:
            raise lines.fail(
                path, f"{key!r} must be a searched parameter without 'when' (it gives the mutation its range)"
            )
    if space.budget.workers_per_trial != 1:
        raise lines.fail(("budget", "workers_per_trial"), "PBT runs trials of one worker each")
    if space.stratify:
        raise lines.fail(("search", "stratify"), "PBT draws its own population; drop stratify")
    every, steps = space.base.train.eval_every, space.base.train.steps
    if space.pbt.perturbation_interval * every >= steps:
        raise lines.fail(
            ("scheduler", "perturbation_interval"),
            f"{space.pbt.perturbation_interval} evals of {every} steps leave no perturbation in {steps} steps",
        )
