"""A sweep whose driver died (``kill -9``) leaves its parent run and its running trials RUNNING in MLflow;
the sweep that resumes its study ends them with the reason and links to the interrupted one. A real
SQLite MLflow store; the interrupted sweep is recorded by the same classes a sweep uses."""

from __future__ import annotations

from gan_ray.objective import Objective
from gan_ray.search.load import parse_search_space
from gan_ray.search.trials import SweepResult
from gan_ray.tracking.store import make_client
from gan_ray.tracking.sweep import MlflowSweep
from gan_ray.training.observers import EvalRecord, RunOutcome

SPACE = """\
name: t_interrupted
base:
  data: {name: ring8}
  train: {steps: 20, eval_every: 10}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
budget: {num_samples: 3}
"""
STUDY = "t_interrupted-20261202-120000"


def _start_trial(sweep: MlflowSweep, trial_id: str, lr: float):
    values = sweep.space.resolve({"optim.lr_g": lr})
    cfg = sweep.space.trial_config(values)
    run = sweep.trial(trial_id, cfg, values)
    run.start(cfg)
    return run


def test_a_resumed_sweep_ends_what_a_dead_driver_left_running_and_links_to_it(store):
    space = parse_search_space(SPACE)
    first = MlflowSweep(store, space, STUDY, register=False)
    done = _start_trial(first, "a0001", 1e-5)
    for step, value, path in (
        (10, 0.25, "/storage/a0001/checkpoint_1"),
        (20, 0.5, "/storage/a0001/checkpoint_2"),
    ):
        done.on_eval(EvalRecord(step, {"step": step, "mode_distance": value, "checkpoint_path": path}))
    done.end(RunOutcome("completed", [{"step": 20, "mode_distance": 0.5}], None))
    running = _start_trial(first, "a0002", 2e-3)
    first.writer.flush()  # what the driver had queued by the time it was killed
    # ... and the driver is killed: nothing else is written.

    other = MlflowSweep(store, space, "t_interrupted-20261201-000000", register=False)  # another study
    other_running = _start_trial(other, "b0001", 1e-3)

    resumed = MlflowSweep(store, space, STUDY, register=False, resume=True)
    client = make_client(store)
    killed = client.get_run(running.run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["gan_ray.status"] == "killed"
    assert "driver ended while this trial ran" in killed.data.tags["gan_ray.error"]
    assert client.get_run(done.run_id).info.status == "FINISHED"
    parent = client.get_run(first.parent_run_id)
    assert parent.info.status == "KILLED" and parent.data.tags["gan_ray.status"] == "interrupted"
    assert parent.data.tags["mlflow.note.content"].startswith("**Interrupted**")
    assert "1 trial(s) running" in parent.data.tags["mlflow.note.content"]
    # Another study's sweep is not touched (it may be running now).
    assert client.get_run(other_running.run_id).info.status == "RUNNING"
    assert client.get_run(other.parent_run_id).info.status == "RUNNING"

    new_parent = client.get_run(resumed.parent_run_id)
    assert new_parent.data.tags["gan_ray.resumes"] == first.parent_run_id
    # The finished trial of the killed sweep is a champion candidate, with the checkpoint of its best eval.
    (earlier,) = resumed.earlier_trials()
    assert (earlier.trial_id, earlier.mlflow_run_id, earlier.status) == ("a0001", done.run_id, "completed")
    assert earlier.best_checkpoint == "/storage/a0001/checkpoint_1" and earlier.best_objective == 0.25
    assert earlier.params == {"optim.lr_g": 1e-5}
    # A sweep that reached its end (also after Ctrl-C) chose its champion among its trials: they
    # have competed already, and are no candidates again.
    client.log_param(first.parent_run_id, "best.trial_id", "a0001")
    assert resumed.earlier_trials() == []
    resumed.finish(SweepResult(space.name, STUDY, Objective("mode_distance", "min")), "FINISHED", None)
    new_parent = client.get_run(resumed.parent_run_id)
    assert new_parent.info.status == "FINISHED" and new_parent.data.tags["gan_ray.status"] == "finished"
    assert f"runs/{first.parent_run_id})" in new_parent.data.tags["mlflow.note.content"]


def test_a_sweep_that_was_not_resumed_links_to_nothing(store):
    space = parse_search_space(SPACE)
    sweep = MlflowSweep(store, space, "t_interrupted-20261203-000000", register=False, resume=True)
    assert sweep.resumes is None
    sweep.finish(SweepResult(space.name, sweep.study_name, Objective("mode_distance", "min")), "KILLED", None)
    run = make_client(store).get_run(sweep.parent_run_id)
    assert "gan_ray.resumes" not in run.data.tags and run.data.tags["gan_ray.status"] == "interrupted"
