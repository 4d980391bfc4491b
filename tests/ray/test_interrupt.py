"""Ctrl-C in a sweep, as a person presses it: ``gan-ray sweep`` in its own process gets SIGINT while a
trial trains. Tune stops its trials and returns without ending them; nothing may stay RUNNING in
MLflow or Optuna, and the trials that finished still count: the best is registered. Then the driver
killed outright (``kill -9``: nothing of it runs again): the sweep that resumes the study ends what it
left RUNNING, says why, links to it, and runs the trials the plan still misses.

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
# The same sweep resumed with short trials only (the sampler would pick 100000 steps half the time).
RESUMED = """\
name: t_interrupt
base:
  data: {name: ring8}
  noise: {dim: 8}
  model: {hidden_dim: 32, hidden_layers: 2}
  train: {steps: 200, eval_every: 100, batch_size: 64, eval_samples: 500}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-3]}
budget: {num_samples: 3, max_concurrent_trials: 1}
scheduler: {type: none}
"""


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _sweep_then_signal(
    ray_session, space, tracking: str, study: str, sig: int = signal.SIGINT
) -> tuple[int, str]:
    """Run ``gan-ray sweep`` in its own process; send it ``sig`` once a trial trains. (return code, output)"""
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
            proc.send_signal(sig)
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
    returncode, output = _sweep_then_signal(ray_session, space, tracking, study)
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
    assert parent.data.tags["gan_ray.status"] == "interrupted"

    resumed = _resume(tmp_path, tracking, study)
    _assert_resumed(client, study, resumed, parent.info.run_id)
    assert resumed.earlier == [], "the Ctrl-C'd sweep chose its champion among its finished trials"
    # The first sweep's trial, unless a resumed one beat it.
    _assert_champion_is_the_studys_best(client)


@pytest.fixture
def fresh_store(store, tmp_path_factory) -> str:
    """An MLflow store of this test's own: the module's holds the Ctrl-C test's runs and champion."""
    import shutil

    db = tmp_path_factory.mktemp("mlflow_kill") / "mlflow.db"
    shutil.copy(tmp_path_factory.getbasetemp() / "mlflow-template.db", db)
    return f"sqlite:///{db}"


def test_a_killed_driver_is_closed_and_finished_by_the_resumed_sweep(ray_session, fresh_store, tmp_path):
    """``kill -9`` of ``gan-ray sweep`` while a trial trains: its runs and its Optuna trial stay RUNNING
    (nothing of the driver runs again). ``--resume`` ends them, with the reason, and completes the plan."""
    from mlflow import MlflowClient
    from ray import tune

    space = tmp_path / "t_interrupt.yaml"
    space.write_text(SPACE)
    tracking, study = fresh_store, f"sqlite:///{tmp_path / 'optuna.db'}"
    returncode, output = _sweep_then_signal(ray_session, space, tracking, study, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, output[-3000:]

    client = MlflowClient(tracking)
    left = [r for r in _runs(client) if r.info.status == "RUNNING"]
    assert sorted(r.data.tags["gan_ray.kind"] for r in left) == ["run", "sweep"], "what kill -9 leaves"
    (killed_parent,) = [r for r in left if r.data.tags["gan_ray.kind"] == "sweep"]
    (done,) = [r for r in _runs(client) if r.data.tags.get("gan_ray.status") == "completed"]
    assert done.data.tags["gan_ray.best_checkpoint"], "where a resumed sweep finds its best checkpoint"
    assert not client.search_registered_models()
    (summary,) = optuna.get_all_study_summaries(storage=study)
    trials = optuna.load_study(study_name=summary.study_name, storage=study).trials
    assert "RUNNING" in {t.state.name for t in trials}
    # Tune could restore the experiment (its state is on the storage); the resume starts a new one.
    (experiment,) = (tmp_path / "ray_results").glob(f"{summary.study_name}-tune-*")
    assert tune.Tuner.can_restore(str(experiment))

    resumed = _resume(tmp_path, tracking, study)
    _assert_resumed(client, study, resumed, killed_parent.info.run_id)
    killed = client.get_run(next(r.info.run_id for r in left if r.data.tags["gan_ray.kind"] == "run"))
    assert killed.info.status == "KILLED" and killed.data.tags["gan_ray.status"] == "killed"
    assert "driver ended while this trial ran" in killed.data.tags["gan_ray.error"]
    old_parent = client.get_run(killed_parent.info.run_id)
    assert old_parent.info.status == "KILLED" and old_parent.data.tags["gan_ray.status"] == "interrupted"
    assert old_parent.data.tags["mlflow.note.content"].startswith("**Interrupted**")
    # The killed sweep's finished trial was never registered: the resumed sweep scores it with its own.
    assert [t.trial_id for t in resumed.earlier] == [done.data.tags["gan_ray.trial_id"]]
    _assert_champion_is_the_studys_best(client)


def _assert_champion_is_the_studys_best(client) -> None:
    """The champion is the best of all the study's finished trials by the larger evaluation, each of
    which was scored again (3 finished trials, ``final_top`` 3)."""
    (model,) = client.search_registered_models()
    champion = client.get_model_version_by_alias(model.name, "champion")
    finished = [r for r in _runs(client) if r.data.tags.get("gan_ray.status") == "completed"]
    assert len(finished) == 3 and all("final_mode_distance" in r.data.metrics for r in finished)
    best = min(finished, key=lambda r: r.data.metrics["final_mode_distance"])
    assert champion.run_id == best.info.run_id


def _runs(client) -> list:
    exp = client.get_experiment_by_name("t_interrupt")
    return client.search_runs([exp.experiment_id])


def _resume(tmp_path, tracking: str, study: str):
    """``gan-ray sweep --resume`` in this process (on the session's Ray), with short trials."""
    import gan_ray

    space = tmp_path / "t_interrupt_resumed.yaml"
    space.write_text(RESUMED)
    storage = str(tmp_path / "ray_results")
    return gan_ray.sweep(
        space, resume=True, tracking_uri=tracking, study_storage=study, storage_path=storage, verbose=0
    )


def _assert_resumed(client, study: str, resumed, interrupted_parent: str) -> None:
    """Nothing RUNNING anywhere; the study has the 3 planned trials finished; the new parent links back."""
    from gan_ray.ray.search import INTERRUPTED_ATTR, finished_trials

    assert not [r.info.run_name for r in _runs(client) if r.info.status == "RUNNING"]
    trials = optuna.load_study(study_name=resumed.study_name, storage=study).trials
    assert "RUNNING" not in {t.state.name for t in trials}
    assert finished_trials(resumed.study_name, study) == 3
    interrupted = [t for t in trials if INTERRUPTED_ATTR in t.user_attrs]
    assert interrupted and all(t.state.name == "FAIL" for t in interrupted)
    assert len(resumed.trials) == 3 - 1 and all(t.status == "completed" for t in resumed.trials)
    parent = client.get_run(resumed.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["gan_ray.resumes"] == interrupted_parent
