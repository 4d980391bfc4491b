"""A sweep whose trials train in their Tune trial's own process, which Tune reuses for the next trial:
on a real local Ray with real Optuna and MLflow stores.

ASHA stops a trial at an eval, and the next trial starts in the same process once the stopped one's
training thread has ended. Tune waits for that thread only so long; a trial it could not start there is
lost to Tune, and must still end as a failed trial, in the summary and in the Optuna study.
"""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest
from faults import inject

pytestmark = pytest.mark.slow

SPACE = """\
name: {name}
base:
  data: {{name: ring8}}
  noise: {{dim: 8}}
  train: {{steps: 200, eval_every: 100, batch_size: 256, eval_samples: 200}}
parameters:
  optim.lr_g: {{log_uniform: [1.0e-3, 10.0]}}
budget: {{num_samples: {trials}, max_concurrent_trials: 1}}
scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
search:
  seed: 0
  # A sane first trial sets the bar; the second's G dies at once (the collapse of tests/ray/test_sweep.py),
  # so ASHA stops it at its first eval, and the third trial starts in its process.
  initial_points:
    - {{optim.lr_g: 2.0e-3}}
    - {{optim.lr_g: 10.0}}
"""


class _Errors(logging.Handler):
    """Collects a logger's error lines (Ray's own loggers do not propagate to pytest's capture)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _sweep(tmp_path: Path, name: str, trials: int):
    """The sweep, and the error lines Tune logged meanwhile."""
    from gan_ray.api import sweep

    space = tmp_path / f"{name}.yaml"
    space.write_text(SPACE.format(name=name, trials=trials))
    errors = _Errors()
    tune_logger = logging.getLogger("ray.tune")
    tune_logger.addHandler(errors)
    try:
        result = sweep(
            space,
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            storage_path=str(tmp_path / "ray_results"),
            study_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
            verbose=0,
        )
    finally:
        tune_logger.removeHandler(errors)
    return result, errors.lines


def _study_states(tmp_path: Path, result) -> list:
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    return [t.state for t in study.trials]


def test_the_next_trial_waits_for_a_stopped_trials_thread_to_end(ray_session, tmp_path, monkeypatch):
    # The stopped trial's thread ends 4 s after its stop: longer than Tune's default wait (2 s).
    starts = tmp_path / "starts"
    inject(monkeypatch, "LingerAfterStop", seconds=4.0, starts=str(starts))
    result, errors = _sweep(tmp_path, "t_reuse_wait", trials=3)
    assert not [line for line in errors if "re-use actor" in line], errors
    pids = starts.read_text().split()
    assert len(pids) == 3 and len(set(pids)) < 3, pids  # every trial trained, one in a reused process
    ended = [(t.status, t.last_step) for t in result.trials]
    assert len(ended) == 3 and any(step == 100 for _, step in ended), ended  # ASHA stopped one
    assert not {"failed", "running", "killed"} & {status for status, _ in ended}, ended
    states = _study_states(tmp_path, result)
    stopped = [step < 200 for _, step in ended]  # the study holds the trial ASHA stopped as PRUNED
    ok = optuna.trial.TrialState
    assert sorted(states) == sorted(ok.PRUNED if s else ok.COMPLETE for s in stopped), states


def test_a_trial_tune_could_not_start_ends_failed(ray_session, tmp_path, monkeypatch):
    # Tune waits 1 s here for a thread that ends 3 s after its stop: the third trial is never started.
    starts = tmp_path / "starts"
    inject(monkeypatch, "LingerAfterStop", seconds=3.0, starts=str(starts), thread_timeout_s=1)
    result, errors = _sweep(tmp_path, "t_reuse_lost", trials=3)
    assert [line for line in errors if "re-use actor" in line], "the case under test did not happen"
    assert len(starts.read_text().split()) == 2
    statuses = sorted(t.status for t in result.trials)
    assert len(statuses) == 3 and statuses.count("failed") == 1, statuses
    (lost,) = [t for t in result.trials if t.status == "failed"]
    assert lost.last_step is None and lost.params, lost
    states = _study_states(tmp_path, result)
    assert len(states) == 3 and optuna.trial.TrialState.RUNNING not in states, states
    assert states.count(optuna.trial.TrialState.FAIL) == 1, states
