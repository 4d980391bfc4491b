"""Sweep definitions: a readable YAML file -> a validated :class:`SearchSpace`.

A file names the base config, the parameters to search (dotted config keys, with a distribution,
a fixed value, or a condition on another parameter), the objective, the budget, the sampler and
the scheduler. Every error points at the file, the line and the key.

    parameters:
      optim.lr_g: {log_uniform: [1.0e-5, 1.0e-2]}
      train.d_steps_per_g_step: {int: [1, 5]}
      loss.name: {choice: [non_saturating, wasserstein]}
      loss.params.clip: {log_uniform: [0.001, 0.1], when: {loss.name: wasserstein}}
      model.params.hidden_dim: 128   # a fixed value
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gan_ray.config import (
    GanConfig,
    YamlLoader,
    is_known_key,
    known_keys,
    load_config,
    read_yaml,
    validate_config,
    yaml_error_line,
)
from gan_ray.data.catalog import RENAMED_METRICS
from gan_ray.errors import ConfigError, SearchSpaceError
from gan_ray.objective import Objective

log = logging.getLogger(__name__)

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "log_int", "choice")
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


@dataclass(frozen=True)
class Param:
    """One searched parameter: a distribution over a dotted config key, maybe active only under ``when``."""

    key: str
    kind: str  # one of DISTRIBUTIONS, "fixed", or "same_as" (value: the key whose value it copies)
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(k in chosen and chosen[k] in allowed for k, allowed in self.when.items())

    def suggest(self, trial) -> Any:
        """Draw this parameter from an Optuna trial (define-by-run)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.kind == "log_int")
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log_uniform")

    def corners(self) -> list[Any]:
        """The extreme values, used to check every branch of the space against the config schema."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("int", "log_int"):
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


@dataclass(frozen=True)
class Budget:
    num_samples: int = 16
    max_concurrent_trials: int | None = None  # None: as many as the cluster's CPUs/GPUs allow
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # a fraction packs several trials on one GPU
    # Wall-clock seconds for the whole sweep (None: none): Tune starts no trial after it and stops the
    # running ones, which end as stopped early (their best checkpoints still count).
    time_budget_s: float | None = None


#: What population-based training may change mid-run: a trial that clones another continues that
#: trial's checkpoint, so only what the live optimisers and the step take on restore (gan_ray.training's
#: ``Training.load_state_dict`` and ``build_training``) may differ from the checkpoint's config.
PBT_MUTABLE = (
    "optim.lr_g",
    "optim.lr_d",
    "optim.beta1",
    "optim.beta2",
    "train.d_steps_per_g_step",
    "penalty.weight",
)

PBT_KEYS = ("type", "perturbation_interval", "mutate", "quantile_fraction", "resample_probability")


@dataclass(frozen=True)
class Pbt:
    """Population-based training (Jaderberg et al. 2017): every ``perturbation_interval`` evals a trial
    in the worst ``quantile_fraction`` of the population continues from a trial of the best fraction's
    checkpoint, with each ``mutate`` key resampled from its distribution (probability
    ``resample_probability``) or else moved: a number times 0.8 or 1.2 (kept in its range), a choice or
    a small int range to a neighbouring value."""

    perturbation_interval: int = 2  # evals
    mutate: tuple[str, ...] = ()
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25


@dataclass(frozen=True)
class SearchSpace:
    name: str
    base: GanConfig
    params: tuple[Param, ...]
    objective: Objective
    budget: Budget
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    scheduler: Literal["asha", "pbt", "none"] = "asha"
    # The population-based training settings (scheduler "pbt" only).
    pbt: Pbt | None = None
    grace_period: int = 1  # evals before ASHA may stop a trial
    reduction_factor: int = 3
    source: Path | None = None
    description: str = ""
    # Configurations to try first (e.g. known-good defaults): dotted keys -> values.
    initial_points: tuple[dict[str, Any], ...] = ()
    # A choice parameter whose every value gets the same number of trials (num_samples each), drawn at
    # random: the fair-comparison protocol of Lucic et al. (2018) when it is loss.name.
    stratify: str | None = None
    # The champion is chosen among the best ``final_top`` trials by their best checkpoints scored again
    # on ``final_samples`` samples (0 trials: by the training evals alone).
    final_top: int = 3
    final_samples: int = 20_000

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
        return self._assign(lambda p: sampled.get(p.key, _UNSET))

    def _assign(self, draw) -> dict[str, Any]:
        """Walk the parameters in file order: fixed values, ties, and ``draw(p)`` for the searched ones."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if not p.active(chosen):
                continue
            if p.kind == "fixed":
                chosen[p.key] = p.value
                continue
            value = chosen.get(p.value, _UNSET) if p.kind == "same_as" else draw(p)
            # Unset: a tie to an inactive parameter, or a value not sampled. None is a value (e.g. a
            # choice of "no EMA") and must reach the config, which may hold another default.
            if value is not _UNSET:
                chosen[p.key] = value
        return chosen


# A parameter with no value, told apart from a chosen None.
_UNSET: Any = object()


# --- loading -----------------------------------------------------------------------------------


def _compose(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML keeping each mapping key's line number, keyed by its path."""
    try:
        node = yaml.compose(text, Loader=YamlLoader)
    except yaml.YAMLError as err:
        raise SearchSpaceError(yaml_error_line(err, source)) from None
    lines: dict[tuple[str, ...], int] = {}

    def walk(n, path: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = str(k.value)
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))

    if node is not None:
        walk(node, ())
    return read_yaml(text), lines


class _Reader:
    def __init__(self, source: str, lines: dict[tuple[str, ...], int]):
        self.source, self.lines = source, lines

    def fail(self, path: tuple[str, ...], message: str) -> SearchSpaceError:
        line = None
        for i in range(len(path), 0, -1):
            line = self.lines.get(path[:i])
            if line is not None:
                break
        where = f"{self.source}:{line}" if line else self.source
        return SearchSpaceError(f"{where}: {'.'.join(path) or '<top level>'}: {message}")


def _param(reader: _Reader, key: str, spec: Any, allowed_keys: set[str]) -> Param:
    path = ("parameters", key)
    _check_key(reader, path, key, allowed_keys)
    if not isinstance(spec, dict):
        return Param(key, "fixed", value=spec)
    spec = dict(spec)
    when = _when(reader, path, spec.pop("when", None))
    if "value" in spec and len(spec) == 1:
        return Param(key, "fixed", value=spec["value"], when=when)
    if "same_as" in spec and len(spec) == 1:
        if spec["same_as"] not in allowed_keys:
            raise reader.fail(path + ("same_as",), f"unknown parameter {spec['same_as']!r}")
        return Param(key, "same_as", value=spec["same_as"], when=when)
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    if len(kinds) != 1 or len(spec) != 1:
        raise reader.fail(
            path, f"expected exactly one of {list(DISTRIBUTIONS)} (plus optional 'when'), got {sorted(spec)}"
        )
    kind = kinds[0]
    if kind == "choice":
        if not isinstance(spec[kind], list) or not spec[kind]:
            raise reader.fail(path + (kind,), "choice needs a non-empty list")
        return Param(key, kind, choices=tuple(spec[kind]), when=when)
    low, high = _range(reader, path + (kind,), kind, spec[kind])
    return Param(key, kind, low=low, high=high, when=when)


def _check_key(reader: _Reader, path: tuple[str, ...], key: str, allowed_keys: set[str]) -> None:
    if is_known_key(key, allowed_keys):  # a plug-in's loss.params.X / model.params.X: its config checks it
        return
    near = sorted(k for k in allowed_keys if k.split(".")[-1] == key.split(".")[-1])
    hint = f"; did you mean {near}?" if near else "; see gan_ray.config.known_keys() for the searchable keys"
    raise reader.fail(path, f"unknown parameter {key!r}{hint}")


def _when(reader: _Reader, path: tuple[str, ...], raw: Any) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise reader.fail(path + ("when",), "expected a mapping like {loss.name: wasserstein}")
    return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in raw.items()}


def _range(reader: _Reader, path: tuple[str, ...], kind: str, arg: Any) -> tuple[float, float]:
    """The [low, high] of a numeric distribution, checked for its kind."""
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(x, (int, float)) for x in arg)):
        raise reader.fail(path, f"{kind} needs [low, high] numbers, got {arg!r}")
    low, high = float(arg[0]), float(arg[1])
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise reader.fail(path, f"empty range [{arg[0]}, {arg[1]}]: low must be < high")
    if kind.startswith("log") and low <= 0:
        raise reader.fail(path, f"{kind} needs low > 0, got {arg[0]}")
    if kind in ("int", "log_int") and not (low.is_integer() and high.is_integer()):
        raise reader.fail(path, f"{kind} needs integer bounds, got {arg!r}")
    return low, high


def _check_conditions(reader: _Reader, params: list[Param]) -> None:
    seen: dict[str, Param] = {}
    for p in params:
        if p.kind == "same_as" and p.value not in seen:
            # Ties are resolved in file order: a later or missing target would leave the key at the base
            # config's value in silence.
            raise reader.fail(
                ("parameters", p.key, "same_as"),
                f"{p.value!r} is not a parameter listed above this one (a tie copies a value already chosen)",
            )
        for parent, values in p.when.items():
            path = ("parameters", p.key, "when", parent)
            if parent not in seen:
                raise reader.fail(
                    path, f"condition on {parent!r}, which is not a parameter listed above this one"
                )
            options = seen[parent].corners() if seen[parent].kind in ("choice", "fixed") else None
            if options is None:
                raise reader.fail(
                    path, f"conditions must be on a choice parameter; {parent!r} is {seen[parent].kind}"
                )
            bad = [v for v in values if v not in options]
            if bad:
                raise reader.fail(path, f"{bad} not among {parent!r}'s choices {options}")
        seen[p.key] = p


def _check_branches(reader: _Reader, space: SearchSpace) -> None:
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
                raise reader.fail(path, f"a trial with {values} would not run: {err}") from None


def _initial_points(reader: _Reader, raw: Any, params: list[Param]) -> tuple[dict[str, Any], ...]:
    """``search.initial_points``: each a full assignment of the searched parameters active in it."""
    if not isinstance(raw, list):
        raise reader.fail(("search", "initial_points"), "expected a list of {parameter: value} mappings")
    searched = {p.key: p for p in params if p.kind != "fixed"}
    points = []
    for i, point in enumerate(raw):
        path = ("search", "initial_points")
        if not isinstance(point, dict):
            raise reader.fail(path, f"point {i}: expected a mapping, got {point!r}")
        unknown = sorted(set(point) - set(searched))
        if unknown:
            raise reader.fail(path, f"point {i}: {unknown} are not searched parameters ({sorted(searched)})")
        chosen: dict[str, Any] = {}
        for p in params:
            if p.kind == "fixed" or not p.active(chosen):
                continue
            if p.key not in point:
                raise reader.fail(path, f"point {i}: missing {p.key!r} (active under this point's choices)")
            value = point[p.key]
            ok = value in p.choices if p.kind == "choice" else p.low <= value <= p.high
            if not ok:
                raise reader.fail(path, f"point {i}: {p.key}={value!r} is outside its distribution")
            chosen[p.key] = value
        extra = sorted(set(point) - set(chosen))
        if extra:
            raise reader.fail(path, f"point {i}: {extra} do not apply under this point's choices")
        points.append(chosen)
    return tuple(points)


def _positive(
    reader: _Reader, path: tuple[str, ...], value: Any, kind: type, allow_zero: bool = False
) -> Any:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok or (kind is int and not float(value).is_integer()):
        raise reader.fail(
            path, f"expected a {'non-negative' if allow_zero else 'positive'} {kind.__name__}, got {value!r}"
        )
    return kind(value)


def parse_search_space(text: str, source: str = "<string>", base_dir: Path | None = None) -> SearchSpace:
    """A validated :class:`SearchSpace` from YAML ``text``; errors say ``source:line``, the key and why."""
    data, lines = _compose(text, source)
    reader = _Reader(source, lines)
    if not isinstance(data, dict):
        raise reader.fail((), "a search space file must be a mapping with at least 'name' and 'parameters'")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise reader.fail((unknown[0],), f"unknown key; expected some of {list(TOP_LEVEL)}")
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise reader.fail(("name",), f"expected a non-empty name without '/', got {name!r}")
    base = _read_base(reader, data, source, base_dir)
    base = base.with_overrides({"name": name}) if base.name == "gan" else base
    params = _read_params(reader, data.get("parameters"))
    budget = _read_budget(reader, data.get("budget") or {})
    space = SearchSpace(
        name=name,
        base=_apply_budget(reader, base, budget),
        params=tuple(params),
        objective=_read_objective(reader, data.get("objective") or {}, base),
        budget=budget,
        source=Path(source) if source != "<string>" else None,
        description=str(data.get("description", "")),
        **_read_search(reader, data.get("search") or {}, params),
        **_read_scheduler(reader, data.get("scheduler") or {}),
    )
    _check_branches(reader, space)
    if space.pbt is not None:
        _check_pbt(reader, space)
    return space


def _read_base(reader: _Reader, data: dict[str, Any], source: str, base_dir: Path | None) -> GanConfig:
    if "base_config" not in data:
        try:
            return validate_config(data.get("base") or {}, source=f" in {source} (base)")
        except ConfigError as err:
            raise reader.fail(("base",), str(err)) from None
    if "base" in data:
        raise reader.fail(("base",), "give either 'base' or 'base_config', not both")
    base_path = Path(data["base_config"])
    if not base_path.is_absolute() and base_dir is not None:
        base_path = base_dir / base_path
    try:
        return load_config(base_path)
    except ConfigError as err:
        raise reader.fail(("base_config",), str(err)) from None


def _read_params(reader: _Reader, raw: Any) -> list[Param]:
    if not isinstance(raw, dict) or not raw:
        raise reader.fail(("parameters",), "expected a mapping of dotted config keys to distributions")
    allowed = known_keys()
    params = [_param(reader, str(k), v, allowed) for k, v in raw.items()]
    _check_conditions(reader, params)
    return params


def _read_objective(reader: _Reader, raw: Any, base: GanConfig) -> Objective:
    default, reported = base.objective, base.reported_metrics
    if not isinstance(raw, dict):
        raise reader.fail(("objective",), "expected {metric: NAME, mode: min|max}")
    metric = raw.get("metric", default.metric)
    mode = raw.get("mode", default.mode)
    if not isinstance(metric, str) or mode not in ("min", "max"):
        raise reader.fail(("objective",), "expected {metric: NAME, mode: min|max}")
    if metric in RENAMED_METRICS and not base.data.is_mixture:
        # A name of earlier versions ('fid' read as Inception-FID): say what it is now and go on.
        log.warning("objective metric %r is now named %r", metric, default.metric)
        metric = default.metric
    if metric not in reported:
        raise reader.fail(
            ("objective", "metric"),
            f"{metric!r} is not reported for {base.data.name!r}; expected one of {list(reported)}",
        )
    return Objective(metric, mode)


def _read_budget(reader: _Reader, b: Any) -> Budget:
    if not isinstance(b, dict):
        raise reader.fail(("budget",), "expected a mapping")
    bad = sorted(set(b) - set(Budget.__dataclass_fields__))
    if bad:
        raise reader.fail(
            ("budget", bad[0]), f"unknown key; expected some of {list(Budget.__dataclass_fields__)}"
        )

    def number(key: str, default: Any, kind: type, allow_zero: bool = False) -> Any:
        return _positive(reader, ("budget", key), b.get(key, default), kind, allow_zero=allow_zero)

    concurrent = b.get("max_concurrent_trials")
    budget = Budget(
        num_samples=number("num_samples", 16, int),
        max_concurrent_trials=None if concurrent is None else number("max_concurrent_trials", None, int),
        workers_per_trial=number("workers_per_trial", 1, int),
        cpus_per_worker=number("cpus_per_worker", 1.0, float),
        gpus_per_worker=number("gpus_per_worker", 0.0, float, allow_zero=True),
        time_budget_s=None if b.get("time_budget_s") is None else number("time_budget_s", None, float),
    )
    if budget.gpus_per_worker > 1:
        raise reader.fail(
            ("budget", "gpus_per_worker"), "a DDP worker uses at most one GPU (a fraction packs trials)"
        )
    return budget


def _apply_budget(reader: _Reader, base: GanConfig, budget: Budget) -> GanConfig:
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
        raise reader.fail(("budget",), str(err)) from None


def _read_search(reader: _Reader, search: Any, params: list[Param]) -> dict[str, Any]:
    if not isinstance(search, dict):
        raise reader.fail(("search",), "expected a mapping like {sampler: tpe, seed: 0}")
    sampler = search.get("sampler", "tpe")
    if sampler not in ("tpe", "random"):
        raise reader.fail(("search", "sampler"), f"expected 'tpe' or 'random', got {sampler!r}")
    initial_points = _initial_points(reader, search.get("initial_points") or [], params)
    stratify = search.get("stratify")
    if stratify is not None:
        target = next((p for p in params if p.key == stratify), None)
        if target is None or target.kind != "choice" or target.when:
            raise reader.fail(
                ("search", "stratify"), f"{stratify!r} must be an unconditional choice parameter"
            )
        if initial_points:
            raise reader.fail(
                ("search", "stratify"), "stratify draws every point itself; drop initial_points"
            )
    seed = _positive(reader, ("search", "seed"), search.get("seed", 0), int, allow_zero=True)
    final = search.get("final_eval") or {}
    if not isinstance(final, dict) or set(final) - {"top", "samples"}:
        raise reader.fail(("search", "final_eval"), "expected a mapping like {top: 3, samples: 20000}")
    top = _positive(reader, ("search", "final_eval", "top"), final.get("top", 3), int, allow_zero=True)
    samples = _positive(reader, ("search", "final_eval", "samples"), final.get("samples", 20_000), int)
    return {
        "sampler": sampler,
        "seed": seed,
        "initial_points": initial_points,
        "stratify": stratify,
        "final_top": top,
        "final_samples": samples,
    }


def _read_scheduler(reader: _Reader, sched: Any) -> dict[str, Any]:
    if not isinstance(sched, dict):
        raise reader.fail(("scheduler",), "expected a mapping like {type: asha, grace_period: 2}")
    sched_type = sched.get("type", "asha")
    if sched_type not in ("asha", "pbt", "none"):
        raise reader.fail(("scheduler", "type"), f"expected 'asha', 'pbt' or 'none', got {sched_type!r}")
    if sched_type == "pbt":
        return {"scheduler": sched_type, "pbt": _read_pbt(reader, sched)}
    grace = _positive(reader, ("scheduler", "grace_period"), sched.get("grace_period", 1), int)
    factor = _positive(reader, ("scheduler", "reduction_factor"), sched.get("reduction_factor", 3), int)
    if factor < 2:
        raise reader.fail(("scheduler", "reduction_factor"), f"must be >= 2, got {factor}")
    return {"scheduler": sched_type, "grace_period": grace, "reduction_factor": factor}


def _read_pbt(reader: _Reader, sched: dict[str, Any]) -> Pbt:
    unknown = sorted(set(sched) - set(PBT_KEYS))
    if unknown:
        raise reader.fail(("scheduler", unknown[0]), f"not a PBT setting; expected some of {list(PBT_KEYS)}")
    mutate = sched.get("mutate")
    if not isinstance(mutate, list) or not mutate or not all(isinstance(k, str) for k in mutate):
        raise reader.fail(
            ("scheduler", "mutate"), "expected a list of searched keys, e.g. [optim.lr_g, optim.lr_d]"
        )
    fraction = sched.get("quantile_fraction", 0.25)
    if not isinstance(fraction, (int, float)) or not 0 < fraction <= 0.5:
        raise reader.fail(
            ("scheduler", "quantile_fraction"), f"expected a number in (0, 0.5], got {fraction!r}"
        )
    resample = sched.get("resample_probability", 0.25)
    if not isinstance(resample, (int, float)) or not 0 <= resample <= 1:
        raise reader.fail(
            ("scheduler", "resample_probability"), f"expected a number in [0, 1], got {resample!r}"
        )
    interval = _positive(
        reader, ("scheduler", "perturbation_interval"), sched.get("perturbation_interval", 2), int
    )
    return Pbt(interval, tuple(mutate), float(fraction), float(resample))


def _check_pbt(reader: _Reader, space: SearchSpace) -> None:
    """A PBT space mutates only searched keys that a restored run takes on (:data:`PBT_MUTABLE`)."""
    assert space.pbt is not None
    path = ("scheduler", "mutate")
    params = {p.key: p for p in space.params}
    for key in space.pbt.mutate:
        if key not in PBT_MUTABLE:
            raise reader.fail(
                path,
                f"{key!r} cannot change mid-run: a PBT trial continues another trial's checkpoint, so it may "
                f"mutate only {list(PBT_MUTABLE)} (search the rest in the initial population)",
            )
        p = params.get(key)
        if p is None or p.kind not in DISTRIBUTIONS or p.when:
            raise reader.fail(
                path, f"{key!r} must be a searched parameter without 'when' (it gives the mutation its range)"
            )
    if space.budget.workers_per_trial != 1:
        raise reader.fail(("budget", "workers_per_trial"), "PBT runs trials of one worker each")
    if space.stratify:
        raise reader.fail(("search", "stratify"), "PBT draws its own population; drop stratify")
    every, steps = space.base.train.eval_every, space.base.train.steps
    if space.pbt.perturbation_interval * every >= steps:
        raise reader.fail(
            ("scheduler", "perturbation_interval"),
            f"{space.pbt.perturbation_interval} evals of {every} steps leave no perturbation in {steps} steps",
        )


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a sweep file (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise SearchSpaceError(f"search space file not found: {path}")
    return parse_search_space(path.read_text(), source=str(path), base_dir=path.parent)
