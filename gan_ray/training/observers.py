"""The one recorder protocol every run reports to: ``start`` / ``on_eval`` / ``end``.

Local runs, Ray Train runs and sweep trials all drive observers through it, so a back end (MLflow
today) is written once and the loop never knows which one listens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from gan_ray.errors import DivergedError
from gan_ray.training.health import HEALTHY

if TYPE_CHECKING:
    from gan_ray.config import GanConfig

#: How a run ended (or that it has not): the ``gan_ray.status`` of every run, local, Ray or trial.
#: ``collapsed``: it ran to its end (or was stopped early) but its last eval's health was not ok.
RunStatus = Literal["running", "completed", "stopped_early", "collapsed", "diverged", "failed", "killed"]
#: The statuses of runs that produced a usable generator.
USABLE = ("completed", "stopped_early")
#: The statuses of runs that ended without an error: the usable ones and the collapsed.
FINISHED = (*USABLE, "collapsed")
#: The key of an eval's metrics that says where its checkpoint stays (a sweep's storage), where the layer
#: that runs the loop keeps one: Ray Train's TuneReportCallback sets it, and a sweep for its Tune trials.
CHECKPOINT_PATH = "checkpoint_path"


@dataclass(frozen=True)
class EvalRecord:
    """One eval as an observer sees it: the step, its metrics, and the run-state folder written then
    (``checkpoint.pt``, ``samples.png``, ``config.yaml``; see :mod:`gan_ray.training.checkpoint`)."""

    step: int
    metrics: Mapping[str, float]
    folder: Path | None = None


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: its status, its eval history, the run-state folder of its last checkpoint."""

    status: RunStatus
    history: Sequence[Mapping[str, float]] = field(default_factory=list)
    folder: Path | None = None
    error: str | None = None
    diverged_at: int | None = None


class RunObserver(Protocol):
    def start(self, config: GanConfig) -> None: ...

    def on_eval(self, record: EvalRecord) -> None: ...

    def end(self, outcome: RunOutcome) -> None: ...


def status_of(error: BaseException | None) -> RunStatus:
    """The status of a run that ended by raising ``error`` (None: it ran to the end)."""
    if error is None:
        return "completed"
    if isinstance(error, DivergedError):
        return "diverged"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "killed"
    return "failed"


def last_health(history: Sequence[Mapping[str, object]]) -> str:
    """The health of a run's last eval (``"ok"`` for a run without evals, or from before health checks)."""
    return str(history[-1].get("health", HEALTHY)) if history else HEALTHY


def final_status(status: RunStatus, history: Sequence[Mapping[str, object]]) -> RunStatus:
    """The status a run ends with: a ``completed`` or ``stopped_early`` run whose last eval's health is
    not ok is ``collapsed`` (it ran, but its generator is not usable); any other status stands."""
    if status in USABLE and last_health(history) != HEALTHY:
        return "collapsed"
    return status


def outcome_of(
    error: BaseException | None, history: Sequence[Mapping[str, float]], folder: Path | None
) -> RunOutcome:
    """The :class:`RunOutcome` of a run that ended by raising ``error`` (None: it ran to the end, and
    is ``collapsed`` where its last eval's health says so: :func:`final_status`)."""
    return RunOutcome(
        final_status(status_of(error), history),
        history,
        folder,
        error=None if error is None else f"{type(error).__name__}: {error}",
        diverged_at=error.step if isinstance(error, DivergedError) else None,
    )
