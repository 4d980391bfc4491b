"""The settings sections of a sweep file (``budget``, ``search``, ``scheduler``, ``objective``) as pydantic
models: each default is stated here once, and each check says what was expected and what was found."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, field_validator

from gan_ray.objective import CHAMPION_RULES
from gan_ray.search.parameters import Param, initial_points

SamplerName = Literal["tpe", "random"]
SchedulerName = Literal["asha", "pbt", "none"]


def _count(kind: type, allow_zero: bool = False) -> PlainValidator:
    """A number of ``kind`` (an int given as 2.0 too, never a bool or a string), > 0 or >= 0."""
    sign = "non-negative" if allow_zero else "positive"

    def check(value: Any) -> Any:
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (value >= 0 if allow_zero else value > 0)
        )
        if not ok or (kind is int and not float(value).is_integer()):
            raise ValueError(f"expected a {sign} {kind.__name__}, got {value!r}")
        return kind(value)

    return PlainValidator(check)


def _fraction(low: float, high: float, include_low: bool) -> PlainValidator:
    """A number in [low, high] (or (low, high]), as a float."""
    shown = f"{'[' if include_low else '('}{low:g}, {high:g}]"

    def check(value: Any) -> float:
        inside = (
            isinstance(value, (int, float))
            and (low <= value if include_low else low < value)
            and value <= high
        )
        if not inside:
            raise ValueError(f"expected a number in {shown}, got {value!r}")
        return float(value)

    return PlainValidator(check)


def _one_of(*names: str) -> PlainValidator:
    shown = " or ".join(filter(None, [", ".join(repr(n) for n in names[:-1]), repr(names[-1])]))

    def check(value: Any) -> str:
        if value not in names:
            raise ValueError(f"expected {shown}, got {value!r}")
        return value

    return PlainValidator(check)


PositiveInt = Annotated[int, _count(int)]
NonNegativeInt = Annotated[int, _count(int, allow_zero=True)]
PositiveFloat = Annotated[float, _count(float)]
NonNegativeFloat = Annotated[float, _count(float, allow_zero=True)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Section):
    """How many trials, how many at once, and what each one takes."""

    num_samples: PositiveInt = 16
    max_concurrent_trials: PositiveInt | None = None  # None: as many as the cluster's CPUs/GPUs allow
    workers_per_trial: PositiveInt = 1
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: NonNegativeFloat = 0.0  # a fraction packs several trials on one GPU
    # Wall-clock seconds for the whole sweep (None: none): Tune starts no trial after it and stops the
    # running ones, which end as stopped early (their best checkpoints still count).
    time_budget_s: PositiveFloat | None = None

    @field_validator("gpus_per_worker")
    @classmethod
    def _one_gpu_at_most(cls, value: float) -> float:
        if value > 1:
            raise ValueError("a DDP worker uses at most one GPU (a fraction packs trials)")
        return value


class FinalEval(_Section):
    """The champion is chosen among the best ``top`` trials by their best checkpoints scored again on
    ``samples`` samples (0 trials: by the training evals alone)."""

    top: NonNegativeInt = 3
    samples: PositiveInt = 20_000


#: How a sweep file writes ``search.final_eval``: its defaults.
FINAL_EVAL_SHAPE = "{" + ", ".join(f"{k}: {v}" for k, v in FinalEval().model_dump().items()) + "}"


class Champion(_Section):
    """How a multi-objective sweep picks its champion from the Pareto front (:func:`gan_ray.objective.
    choose_from_front`): ``first_objective``, ``knee`` (nearest the ideal corner, objectives scaled over
    the front) or ``weighted`` (``weights``, one per objective, on the scaled objectives)."""

    rule: Annotated[str, _one_of(*CHAMPION_RULES)] = "first_objective"
    weights: tuple[float, ...] = ()


class Search(_Section):
    """Who draws the trials: the sampler and its seed, the points to try first, a stratified draw.
    Validated with the parsed parameters as its context (``{"params": [...]}``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sampler: Annotated[SamplerName, _one_of("tpe", "random")] = "tpe"
    # Configurations to try first (e.g. known-good defaults): dotted keys -> values.
    initial_points: tuple[dict[str, Any], ...] = ()
    # A choice parameter whose every value gets the same number of trials (num_samples each), drawn at
    # random: the fair-comparison protocol of Lucic et al. (2018) when it is loss.name.
    stratify: str | None = None
    seed: NonNegativeInt = 0
    final_eval: FinalEval = FinalEval()
    champion: Champion = Champion()

    @field_validator("initial_points", mode="plain")
    @classmethod
    def _points(cls, value: Any, info: ValidationInfo) -> tuple[dict[str, Any], ...]:
        return initial_points(value or [], _params(info))

    @field_validator("stratify", mode="plain")
    @classmethod
    def _stratify(cls, value: Any, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        target = next((p for p in _params(info) if p.key == value), None)
        if target is None or target.kind != "choice" or target.when:
            raise ValueError(f"{value!r} must be an unconditional choice parameter")
        if info.data.get("initial_points"):
            raise ValueError("stratify draws every point itself; drop initial_points")
        return value

    @field_validator("final_eval", mode="before")
    @classmethod
    def _final_eval(cls, value: Any) -> Any:
        value = value or {}
        if not isinstance(value, dict) or set(value) - set(FinalEval.model_fields):
            raise ValueError(f"expected a mapping like {FINAL_EVAL_SHAPE}")
        return value


def _params(info: ValidationInfo) -> list[Param]:
    return (info.context or {}).get("params", [])


class Scheduler(_Section):
    """Which scheduler stops or replaces trials; the rest of the section is its own settings."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Annotated[SchedulerName, _one_of("asha", "pbt", "none")] = "asha"


class Asha(_Section):
    """ASHA's settings (read for ``type: none`` too, where no scheduler uses them)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    grace_period: PositiveInt = 1  # evals before ASHA may stop a trial
    reduction_factor: PositiveInt = 3

    @field_validator("reduction_factor")
    @classmethod
    def _at_least_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"must be >= 2, got {value}")
        return value


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


class Pbt(_Section):
    """Population-based training (Jaderberg et al. 2017): every ``perturbation_interval`` evals a trial
    in the worst ``quantile_fraction`` of the population continues from a trial of the best fraction's
    checkpoint, with each ``mutate`` key resampled from its distribution (probability
    ``resample_probability``) or else moved: a number times 0.8 or 1.2 (kept in its range), a choice or
    a small int range to a neighbouring value."""

    perturbation_interval: PositiveInt = 2  # evals
    # No default: the check says what is expected when the file gives none.
    mutate: tuple[str, ...] = Field(default=None, validate_default=True)
    quantile_fraction: Annotated[float, _fraction(0.0, 0.5, include_low=False)] = 0.25
    resample_probability: Annotated[float, _fraction(0.0, 1.0, include_low=True)] = 0.25

    @field_validator("mutate", mode="plain")
    @classmethod
    def _searched_keys(cls, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(k, str) for k in value):
            raise ValueError("expected a list of searched keys, e.g. [optim.lr_g, optim.lr_d]")
        return tuple(value)


#: The keys of a PBT ``scheduler:`` section.
PBT_KEYS = ("type", *Pbt.model_fields)


class ObjectiveChoice(_Section):
    """The ``objective:`` section: the metric and direction, each the base config's where left out."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    metric: str | None = None
    mode: Literal["min", "max"] | None = None

    @field_validator("metric", "mode", mode="before")
    @classmethod
    def _given(cls, value: Any) -> Any:
        if value is None:  # an empty value is not the default: say what the section takes
            raise ValueError("null")
        return value
