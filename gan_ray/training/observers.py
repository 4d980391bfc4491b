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

if TYPE_CHECKING:
    from gan_ray.config import GanConfig

#: How a run ended (or that it has not): the ``gan_ray.status`` of every run, local, Ray or trial.
RunStatus = Literal["running", "completed", "stopped_early", "diverged", "failed", "killed"]
#: The statuses of runs that produced a usable generator.
USABLE = ("completed", "stopped_early")


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


def outcome_of(
    error: BaseException | None, history: Sequence[Mapping[str, float]], folder: Path | None
) -> RunOutcome:
    """The :class:`RunOutcome` of a run that ended by raising ``error`` (None: it ran to the end)."""
    return RunOutcome(
        status_of(error),
        history,
        folder,
        error=None if error is None else f"{type(error).__name__}: {error}",
        diverged_at=error.step if isinstance(error, DivergedError) else None,
    )
