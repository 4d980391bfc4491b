"""The two ways a sweep trial trains, on a real local Ray with real MLflow and Optuna stores.

One worker per trial: the trial trains in its Tune trial's own process, which Tune restarts from the
latest checkpoint after a crash and reuses for the next trial. Several workers per trial: a Ray Train
run of DDP workers. Both must keep the same record: MLflow history, checkpoints, the champion.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from faults import inject

from gan_ray.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

BASE = """\
base:
  data: {name: ring8}
  noise: {dim: 8}
  model: {hidden_dim: 32, hidden_layers: 2}
  train: {steps: 600, eval_every: 150, batch_size: 64, eval_samples: 500}
  scaling: {max_failures: 1}
parameters:
  optim.lr_g: {log_uniform: [5.0e-4, 2.0e-3]}
scheduler: {type: none}
search: {seed: 0}
"""


def _sweep(tmp_path: Path, name: str, budget: str):
    from gan_ray.api import sweep

    space = tmp_path / f"{name}.yaml"
    space.write_text(f"name: {name}\n{BASE}budget: {budget}\n")
    result = sweep(
        space,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        storage_path=str(tmp_path / "ray_results"),
        study_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        verbose=0,
    )
    return result, f"sqlite:///{tmp_path / 'mlflow.db'}"


def _steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def _values(client, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_a_crashed_single_worker_trial_resumes_from_its_latest_checkpoint(ray_session, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    marker = tmp_path / "crashed"
    inject(monkeypatch, "CrashOnce", at_step=400, marker=str(marker))
    result, tracking = _sweep(tmp_path, "t_trial_crash", "{num_samples: 2, max_concurrent_trials: 1}")
    assert marker.read_text() == "400", "the injected crash did not happen"
    assert [t.status for t in result.trials] == ["completed", "completed"]
    client = MlflowClient(tracking)
    # The crashed trial says it restarted, from the eval after the crash on; the other never did.
    restarts = sorted(_values(client, t.mlflow_run_id, "restarts") for t in result.trials)
    assert restarts == [[0, 0, 0, 0], [0, 0, 1, 1]], restarts
    for t in result.trials:
        # Each eval once: the crashed trial went on from its step-300 checkpoint, not from step 0.
        assert _steps(client, t.mlflow_run_id, "loss_d") == [150, 300, 450, 600], t.trial_id
        assert client.get_run(t.mlflow_run_id).info.status == "FINISHED"
        steps = [h["step"] for h in load_checkpoint(t.best_checkpoint)["history"]]
        assert steps == [150, 300, 450, 600][: len(steps)]
        # Tune keeps the best checkpoint by the objective and the latest, no more.
        kept = sorted(p.name for p in Path(t.best_checkpoint).parent.glob("checkpoint_*"))
        assert 1 <= len(kept) <= 2 and Path(t.best_checkpoint).name in kept, kept
        # The timing breakdown every report carries (bench/sweep_overhead.py reads it).
        assert len(_steps(client, t.mlflow_run_id, "time_steps_s")) == 4
    assert result.best is not None and result.model_version is not None
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2


def test_trials_of_two_workers_train_as_ray_train_ddp(ray_session, tmp_path):
    from mlflow import MlflowClient

    result, tracking = _sweep(tmp_path, "t_trial_ddp", "{num_samples: 1, workers_per_trial: 2}")
    (trial,) = result.trials
    assert trial.status == "completed" and trial.best_checkpoint
    client = MlflowClient(tracking)
    # Only a DDP run of several ranks reports how far its replicas drifted apart: not at all.
    spread = client.get_metric_history(trial.mlflow_run_id, "replica_param_spread")
    assert [m.step for m in spread] == [150, 300, 450, 600] and all(m.value == 0.0 for m in spread)
    assert load_checkpoint(trial.best_checkpoint)["step"] in (150, 300, 450, 600)
    assert result.model_version is not None
