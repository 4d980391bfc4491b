"""What a sweep knows of its trials, independent of who ran them (Ray Tune) or recorded them (MLflow):
each trial's status and scores, the best trial by the one rule of :class:`~gan_ray.objective.Objective`,
and the summary a person reads at the end."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gan_ray.config import GanConfig
from gan_ray.objective import Objective, choose_from_front, pareto_front
from gan_ray.training.observers import USABLE, RunObserver, RunStatus


def trial_name(trial_id: str) -> str:
    """A trial's one name: its MLflow run, its row in Tune's table, its folder of checkpoints."""
    return f"trial-{trial_id}"


@dataclass(frozen=True)
class Clone:
    """One exploit of population-based training: at its step ``step`` the trial was replaced by trial
    ``source``'s checkpoint of step ``source_step``, and went on with ``params`` (its new searched values)."""

    step: int
    source: str
    source_step: int
    params: dict[str, Any]

    def __str__(self) -> str:
        return f"{trial_name(self.source)}@{self.source_step}"


@dataclass
class TrialSummary:
    trial_id: str
    status: RunStatus  # completed / stopped_early / collapsed / diverged / failed (running while it runs)
    params: dict[str, Any]
    objective: float | None  # at the trial's last eval
    best_objective: float | None  # the best over its evals: what the champion is chosen by
    last_step: int | None
    best_checkpoint: str | None
    mlflow_run_id: str | None = None
    # Its last eval's health: "ok", or why it collapsed (gan_ray.training.health).
    health: str | None = None
    # What scored it: the feature extractor of image runs (None for the 2-D mixtures).
    feature_extractor: str | None = None
    # Its best checkpoint scored again on ``final_samples`` samples (the sweep's best few only).
    final_objective: float | None = None
    final_samples: int | None = None
    # Population-based training: the checkpoints it continued from, oldest first (params: its last ones).
    lineage: tuple[Clone, ...] = ()
    # A multi-objective sweep: each objective's metric at its last eval (what Optuna was told).
    values: tuple[float | None, ...] = ()

    @property
    def champion_score(self) -> float | None:
        """What the champion is chosen by: the larger final evaluation where there is one."""
        return self.final_objective if self.final_objective is not None else self.best_objective


@dataclass
class SweepResult:
    name: str
    study_name: str
    objective: Objective
    trials: list[TrialSummary] = field(default_factory=list)
    best: TrialSummary | None = None
    # A resumed sweep's other champion candidates: usable trials of the study's earlier sweeps that no
    # model version came from (those of a killed sweep); ``best`` may be one of them.
    earlier: list[TrialSummary] = field(default_factory=list)
    experiment_path: str | None = None
    stratify: str | None = None
    # Filled in by a recorder (MLflow), when one recorded the sweep.
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    promoted: bool = False
    kept_because: str = "it is better"
    # Interrupted (Ctrl-C): the trials still running were killed; the best finished one still counts.
    interrupted: bool = False
    # The whole study as its report reads it (earlier sweeps' trials of a resumed one too).
    study: StudyRecord | None = None
    # A multi-objective sweep: the Pareto front of its usable trials, and the rule that picked ``best``.
    front: list[TrialSummary] = field(default_factory=list)
    champion_rule: str | None = None
    objectives: tuple[Objective, ...] = ()

    def rows(self) -> list[dict[str, Any]]:
        """One row per trial: id, status, scores, run id and the parameters (the ``trials.csv`` table)."""
        return [
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "objective": t.objective,
                "best_objective": t.best_objective,
                "final_objective": t.final_objective,
                "last_step": t.last_step,
                "health": t.health,
                "mlflow_run_id": t.mlflow_run_id,
                **t.params,
            }
            for t in self.trials
        ]


@dataclass(frozen=True)
class StudyTrial:
    """One trial of a sweep's Optuna study, as the study recorded it."""

    number: int
    state: str  # Optuna's: COMPLETE, FAIL, PRUNED, RUNNING, WAITING
    value: float | None  # the trial's best objective (COMPLETE), or at the eval it was stopped at (PRUNED)
    params: dict[str, Any]
    values: tuple[float | None, ...] = ()  # a multi-objective study's values (``value`` is the first)


@dataclass(frozen=True)
class StudyRecord:
    """A sweep's study read back for its report: every trial, how each parameter was searched, and which
    parameters mattered. Plain data, so the recorder that draws it needs no Optuna."""

    name: str
    objective: Objective
    trials: tuple[StudyTrial, ...]
    searched: tuple[str, ...]  # the searched parameters, in the search space's order
    log_scale: frozenset[str] = frozenset()  # searched on a log scale
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # the categorical ones, in order
    stratify: str | None = None
    importances: dict[str, float] = field(default_factory=dict)  # largest first; empty: see the note
    importance_note: str = ""  # how they were computed, or why there are none
    objectives: tuple[Objective, ...] = ()  # a multi-objective study's (``objective`` is the first)
    champion_rule: str = "first_objective"
    champion_weights: tuple[float, ...] = ()

    @property
    def completed(self) -> list[StudyTrial]:
        """The trials with a value: those that ran out (COMPLETE) and those the scheduler stopped (PRUNED,
        at the value they had reached there; their best checkpoint may still be the champion)."""
        return [t for t in self.trials if t.state in ("COMPLETE", "PRUNED") and t.value is not None]

    def best_so_far(self) -> list[tuple[StudyTrial, float]]:
        """Each completed trial, in trial order, with the best value of it and every completed one before."""
        out: list[tuple[StudyTrial, float]] = []
        best: float | None = None
        for t in sorted(self.completed, key=lambda t: t.number):
            if best is None or self.objective.better(t.value, best):
                best = t.value
            out.append((t, best))
        return out

    def groups(self) -> dict[Any, list[float]]:
        """The completed trials' values for each value of ``stratify`` (in the order of its choices)."""
        assert self.stratify is not None
        order = list(self.choices.get(self.stratify, ()))
        found: dict[Any, list[float]] = {}
        for t in sorted(self.completed, key=lambda t: t.number):
            found.setdefault(t.params.get(self.stratify), []).append(t.value)
        order += [v for v in found if v not in order]
        return {v: found[v] for v in order if v in found}


def expected_best_of_k(values: list[float], objective: Objective) -> list[float]:
    """The expected best of ``k`` trials drawn at random (without replacement) from ``values``, for
    k = 1..n: the "best score for a given budget" curve of Lucic et al. (2018), exact instead of
    estimated by resampling, and free of the order the trials happened to run in.

    With the values sorted best first, the best of a random k-subset is the i-th with probability
    C(n-i, k-1) / C(n, k).
    """
    ranked = sorted(values, reverse=objective.mode == "max")
    n = len(ranked)
    return [
        sum(v * math.comb(n - i, k - 1) for i, v in enumerate(ranked, start=1)) / math.comb(n, k)
        for k in range(1, n + 1)
    ]


class TrialObserver(RunObserver, Protocol):
    """A trial's recorder: a run's, and told of every population-based-training exploit."""

    def on_clone(self, clone: Clone, lineage: tuple[Clone, ...]) -> None: ...


class SweepObserver(Protocol):
    """A sweep's recorder: one :class:`TrialObserver` per trial, and the sweep's end."""

    def trial(self, trial_id: str, config: GanConfig, params: dict[str, Any]) -> TrialObserver: ...

    def finish(self, result: SweepResult, status: str, best_folder: Path | None) -> None: ...


def best_trial(trials: list[TrialSummary], objective: Objective) -> TrialSummary | None:
    """The best trial among those that ended usable (never a collapsed, diverged or failed one, whatever
    its objective): by the final evaluation among the trials that had one, else by the best objective
    over its evals."""
    usable = [t for t in trials if t.status in USABLE]
    rescored = [t for t in usable if t.final_objective is not None and math.isfinite(t.final_objective)]
    return objective.best_of(rescored or usable, lambda t: t.champion_score)


def front_champion(
    trials: list[TrialSummary], objectives: tuple[Objective, ...], rule: str, weights: tuple[float, ...] = ()
) -> tuple[TrialSummary | None, list[TrialSummary]]:
    """A multi-objective sweep's champion, chosen by ``rule`` (:func:`gan_ray.objective.choose_from_front`)
    from the Pareto front of its usable trials' values, and that front."""
    usable = [t for t in trials if t.status in USABLE and len(t.values) == len(objectives)]
    points = [t.values for t in usable]
    front = [usable[i] for i in pareto_front(points, objectives)]
    pick = choose_from_front(points, objectives, rule, weights)
    return (usable[pick] if pick is not None else None), front


def best_per(result: SweepResult, key: str) -> dict[Any, TrialSummary]:
    """The best trial for each value of parameter ``key`` (e.g. the best per loss)."""
    groups: dict[Any, list[TrialSummary]] = {}
    for t in result.trials:
        groups.setdefault(t.params.get(key), []).append(t)
    best = {value: best_trial(ts, result.objective) for value, ts in groups.items()}
    return {value: t for value, t in best.items() if t is not None}


def status_counts(result: SweepResult) -> dict[str, int]:
    """How many trials ended in each status, in the order they first appear."""
    return dict(Counter(t.status for t in result.trials))


def registration(result: SweepResult) -> str:
    """What registering the best trial did to the champion alias."""
    return (
        "now the champion" if result.promoted else f"registered; the champion stays ({result.kept_because})"
    )


def _best_lines(b: TrialSummary, objective: Objective) -> list[str]:
    metric = objective.metric
    lines = [f"best trial {b.trial_id}: {metric} = {b.best_objective:.4g} ({objective.mode})"]
    if b.final_objective is not None:
        lines.append(f"  on {b.final_samples} samples: {metric} = {b.final_objective:.4g}")
    lines += [f"  {key}: {value}" for key, value in b.params.items()]
    if b.lineage:
        lines.append(f"  continued from (PBT): {' > '.join(str(c) for c in b.lineage)}")
    lines.append(f"  checkpoint: {b.best_checkpoint}")
    return lines


def champion_note(result: SweepResult) -> str:
    """A multi-objective sweep: the rule that picked ``best`` from the front, and its value of each objective."""
    assert result.best is not None
    values = ", ".join(
        f"{o.metric} = {v:.4g}" if v is not None else f"{o.metric} = none"
        for o, v in zip(result.objectives, result.best.values, strict=False)
    )
    usable = sum(t.status in USABLE for t in result.trials + result.earlier)
    return (
        f"the `{result.champion_rule}` pick of the Pareto front ({len(result.front)} of {usable} usable "
        f"trials), at its last eval: {values}"
    )


def format_summary(result: SweepResult) -> str:
    counts = status_counts(result)
    lines = [f"sweep {result.name}: study {result.study_name}, {len(result.trials)} trials {counts}"]
    if result.interrupted:
        lines.append(
            "interrupted: the running trials were killed; the best finished trial is below; "
            "--resume adds trials to this study"
        )
    collapsed = [f"{t.trial_id} ({t.health})" for t in result.trials if t.status == "collapsed"]
    if collapsed:
        lines.append(f"collapsed (never the champion): {', '.join(collapsed)}")
    if result.best is None:
        lines.append("no usable trial (completed or stopped early, with a finite objective)")
        return "\n".join(lines)
    b = result.best
    metric = result.objective.metric
    best = _best_lines(b, result.objective)
    if result.champion_rule is not None:
        best.insert(1, f"  champion: {champion_note(result)}")
    lines += best
    if result.parent_run_id:
        lines.append(f"  mlflow: {result.tracking_uri} run {b.mlflow_run_id} (parent {result.parent_run_id})")
    if result.stratify:
        lines.append(f"best per {result.stratify}:")
        for value, t in best_per(result, result.stratify).items():
            lines.append(f"  {value}: {metric} = {t.best_objective:.4g} (trial {t.trial_id})")
    if result.model_name:
        lines.append(
            f"  model: models:/{result.model_name}/{result.model_version} ({registration(result)}); "
            f"load models:/{result.model_name}@champion"
        )
    return "\n".join(lines)
