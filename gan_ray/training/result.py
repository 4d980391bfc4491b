"""What a run gives back, local or under Ray: one :class:`RunResult`, read from the run's latest checkpoint.

Its latest checkpoint is a run-state folder (its history inside) or a divergence record
(:mod:`gan_ray.training.checkpoint`); the observers' end of a run is derived from the same result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gan_ray.config import GanConfig
from gan_ray.errors import DivergedError
from gan_ray.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, read_divergence
from gan_ray.training.observers import RunOutcome, RunStatus, final_status, outcome_of

#: The keys :func:`diverged_metrics` adds to a diverged eval's own metrics.
_DIVERGED_KEYS = ("step", "diverged", "objective", "best_objective")


@dataclass
class RunResult:
    """A finished run (one that raised returns none).

    ``output``: the run's folder, ``output_dir/name`` locally, ``storage_path/name`` under Ray (a URI
    on remote storage). ``metrics``: its last report (a diverged run's: ``diverged`` 1, objective NaN).
    ``checkpoint``: the run-state folder of its latest model (a diverged run's: the last one kept),
    ``best_checkpoint``: its best by the objective where the backend keeps one (Ray), else None.
    """

    config: GanConfig
    output: str
    status: RunStatus
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    best_checkpoint: str | None = None

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


def diverged_metrics(step: int, metrics: Mapping[str, float]) -> dict[str, float]:
    """The last report of a run that diverged at ``step``. Its objective is NaN, which Optuna records as
    a failed trial (inf would count as a real value)."""
    nan = math.nan
    return {**metrics, "step": step, "diverged": 1.0, "objective": nan, "best_objective": nan}


def divergence(result: RunResult) -> DivergedError | None:
    """The error a diverged run ended with (None for any other run)."""
    if not result.diverged:
        return None
    numbers = {
        k: float(v)
        for k, v in result.metrics.items()
        if k not in _DIVERGED_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return DivergedError(int(result.metrics.get("step", 0)), numbers)


def result_of(
    config: GanConfig,
    output: str,
    folder: Path | None,
    checkpoint: str | None,
    best_checkpoint: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> RunResult:
    """The result of a run whose latest checkpoint, kept at ``checkpoint``, is ``folder`` here (a local
    copy); a run that kept none (``folder`` None) has only its last report, ``metrics``."""
    if folder is None:
        return RunResult(
            config, output, "completed", metrics=dict(metrics or {}), best_checkpoint=best_checkpoint
        )
    record = read_divergence(folder)
    if record is not None:
        # A local output folder keeps its last model beside the record; Ray's record stands alone.
        kept = checkpoint if (folder / CHECKPOINT_FILE).is_file() else None
        last = diverged_metrics(record["step"], record["metrics"])
        return RunResult(
            config, output, "diverged", record["history"], last, best_checkpoint or kept, best_checkpoint
        )
    history = list(load_checkpoint(folder).get("history", []))
    last = dict(history[-1]) if history else dict(metrics or {})
    return RunResult(
        config, output, final_status("completed", history), history, last, checkpoint, best_checkpoint
    )


def run_outcome(result: RunResult | None, error: BaseException | None, folder: Path | None) -> RunOutcome:
    """How a run ended for its observers: raised ``error`` (None: it ran to its end, ``result``), with
    ``folder`` the run-state folder of its latest model."""
    if error is None and result is not None:
        error = divergence(result)
    return outcome_of(error, result.history if result is not None else [], folder)
