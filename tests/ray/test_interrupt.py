"""Ctrl-C in a sweep, as a person presses it: ``gan-ray sweep`` in its own process gets SIGINT while a
trial trains. Tune stops its trials and returns without ending them; nothing may stay RUNNING in
MLflow or Optuna, and the trials that finished still count: the best is registered.

The sweep joins the session's Ray (``RAY_ADDRESS``): two local Rays on one machine break Ray Train's
placement-group cleaner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

pytestmark = pytest.mark.slow

SPACE = """\
name: t_interrupt
base:
  data: {name: ring8}
  noise: {dim: 8}
  model: {hidden_dim: 32, hidden_layers: 2}
  train: {steps: 100000, eval_every: 100, batch_size: 64, eval_samples: 500}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-3]}
  train.steps: {choice: [200, 100000]}
budget: {num_samples: 3, max_concurrent_trials: 1}
scheduler: {type: none}
search:
  initial_points:      # one trial that finishes, then one that trains until Ctrl-C
    - {optim.lr_g: 5.0e-4, train.steps: 200}
    - {optim.lr_g: 5.0e-4, train.steps: 100000}
"""


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _sweep_then_ctrl_c(ray_session, space, tracking: str, study: str) -> tuple[int, str]:
    """Run ``gan-ray sweep`` in its own process; SIGINT it once a trial trains. (return code, output)"""
    from mlflow import MlflowClient

    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    cmd = [sys.executable, "-m", "gan_ray", "sweep", str(space), "--tracking-uri", tracking]
    cmd += ["--study-storage", study, "--storage-path", str(space.parent / "ray_results")]

    def training_trial():
        client = MlflowClient(tracking)
        exp = client.get_experiment_by_name("t_interrupt")
        if exp is None:
            return None
        runs = client.search_runs([exp.experiment_id], "tags.`gan_ray.kind` = 'run'")
        # The short trial has finished, and the long one reported an eval: it is training, not starting.
        finished = [r for r in runs if r.info.status == "FINISHED"]
        training = [r for r in runs if r.info.status == "RUNNING" and "mode_distance" in r.data.metrics]
        return finished and training

    # Files, not pipes: Tune's progress tables would fill a pipe nobody reads until the end.
    with open(space.parent / "sweep.log", "w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_for(training_trial, 180, "a trial to train and report")
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        return proc.returncode, log.read()


def test_ctrl_c_leaves_nothing_running_and_keeps_the_finished_trials_best(ray_session, store, tmp_path):
    from mlflow import MlflowClient

    space = tmp_path / "t_interrupt.yaml"
    space.write_text(SPACE)
    # A store whose tables exist: the test reads it while the sweep writes it.
    tracking, study = store, f"sqlite:///{tmp_path / 'optuna.db'}"
    returncode, output = _sweep_then_ctrl_c(ray_session, space, tracking, study)
    assert returncode == 130, output[-3000:]
    assert "interrupted: the running trials were killed" in output

    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("t_interrupt")
    runs = client.search_runs([exp.experiment_id])
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    parent = next(r for r in runs if r.data.tags.get("gan_ray.kind") == "sweep")
    assert parent.info.status == "KILLED" and "Interrupted" in parent.data.tags["mlflow.note.content"]
    killed = [r for r in runs if r.data.tags.get("gan_ray.status") == "killed"]
    assert len(killed) == 1 and killed[0].info.status == "KILLED"
    assert killed[0].data.params["train.steps"] == "100000"
    (done,) = [r for r in runs if r.data.tags.get("gan_ray.status") == "completed"]

    (summary,) = optuna.get_all_study_summaries(storage=study)
    states = [t.state for t in optuna.load_study(study_name=summary.study_name, storage=study).trials]
    assert sorted(s.name for s in states) == ["COMPLETE", "FAIL"]
    # The finished trial is kept where a resumed sweep will have to beat it.
    (model,) = client.search_registered_models()
    champion = client.get_model_version_by_alias(model.name, "champion")
    assert champion.run_id == done.info.run_id
