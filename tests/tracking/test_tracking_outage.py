"""A tracking server that goes away mid-sweep costs no record: a real ``mlflow server`` (SQLite behind
it) is killed while a sweep's trial logs through the sweep's own classes, and started again on the same
port and database. Past the retry window, what was given up is tagged on the run, and said."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from gan_ray.objective import Objective
from gan_ray.search.load import parse_search_space
from gan_ray.search.trials import SweepResult
from gan_ray.tracking.run import logged_sample_steps
from gan_ray.tracking.store import TAG_LOST, make_client
from gan_ray.tracking.sweep import MlflowSweep
from gan_ray.training.observers import EvalRecord, RunOutcome

pytestmark = pytest.mark.slow

SPACE = """\
name: t_outage
base:
  data: {name: ring8}
  train: {steps: 120, eval_every: 10}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
budget: {num_samples: 1}
"""
METRICS = ("mode_distance", "loss_d", "loss_g")


@pytest.fixture
def server(servers, tmp_path, monkeypatch):
    # MLflow's own HTTP retries would wait out a short outage inside one request (minutes, by default):
    # cut to one quick retry, so that the writer's retries are what carries the run through here.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    server = servers.MlflowServer(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "server", workers=1)
    yield server.start()
    server.kill()


def _eval(run, step: int, folder) -> dict:
    metrics = {"step": step, **{k: step / 1000 + i for i, k in enumerate(METRICS)}}
    Image.fromarray(np.full((16, 16, 3), step % 255, np.uint8)).save(folder / "samples.png")
    run.on_eval(EvalRecord(step, metrics, folder))
    return metrics


def _trial(server, retry_s: float, study: str):
    space = parse_search_space(SPACE)
    sweep = MlflowSweep(server.uri, space, study, register=False)
    sweep.writer.retry_s = retry_s
    values = space.resolve({"optim.lr_g": 1e-3})
    cfg = space.trial_config(values)
    run = sweep.trial("o0001", cfg, values)
    run.start(cfg)
    return sweep, run


def _finish(sweep, run, history) -> None:
    run.end(RunOutcome("completed", history, None))
    sweep.finish(
        SweepResult("t_outage", sweep.study_name, Objective("mode_distance", "min")), "FINISHED", None
    )


def test_a_server_killed_mid_sweep_and_started_again_loses_nothing(server, tmp_path, caplog):
    sweep, run = _trial(server, retry_s=300, study="t_outage-restart")
    history = [_eval(run, step, tmp_path) for step in range(10, 50, 10)]
    server.kill()
    with caplog.at_level(logging.INFO, logger="gan_ray.tracking.writer"):
        # Logged while the server is away: the driver's calls return at once, nothing raises.
        history += [_eval(run, step, tmp_path) for step in range(50, 130, 10)]
        server.start()
        _finish(sweep, run, history)
    assert "retrying in" in caplog.text  # the writes did meet the outage

    client = make_client(server.uri)
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.data.tags["gan_ray.status"] == "completed"
    for key in METRICS:
        assert [m.step for m in client.get_metric_history(run.run_id, key)] == list(range(10, 130, 10))
    assert sorted(set(logged_sample_steps(client, run.run_id))) == list(range(10, 130, 10))
    assert TAG_LOST not in logged.data.tags and sweep.writer.lost() == {}
    assert client.get_run(sweep.parent_run_id).info.status == "FINISHED"


def test_records_given_up_past_the_retry_window_are_tagged_on_the_run_and_said(server, tmp_path, caplog):
    sweep, run = _trial(server, retry_s=2, study="t_outage-lost")
    history = [_eval(run, 10, tmp_path)]
    sweep.writer.flush()
    server.kill()
    with caplog.at_level(logging.WARNING, logger="gan_ray.tracking.writer"):
        history += [_eval(run, step, tmp_path) for step in (20, 30, 40)]
        sweep.writer.flush()  # each write retried for 2 s, then given up
    assert f"records of run {run.run_id} given up" in caplog.text
    assert "not tagged on their runs" in caplog.text  # the store is still away: said, not hidden
    server.start()
    _finish(sweep, run, history)

    client = make_client(server.uri)
    logged = client.get_run(run.run_id)
    lost = json.loads(logged.data.tags[TAG_LOST])
    # Three evals' metrics (with their best_* values), and their sample grids.
    assert lost["images"] == 3 and lost["metrics"] >= 3 * len(METRICS)
    assert [m.step for m in client.get_metric_history(run.run_id, "mode_distance")] == [10]
    assert logged.info.status == "FINISHED"  # the end, queued once the server was back, arrived


def test_a_full_buffer_gives_up_new_records_with_a_tag_but_never_a_runs_end(server, tmp_path):
    sweep, run = _trial(server, retry_s=300, study="t_outage-full")
    sweep.writer.flush()
    sweep.writer.max_pending = 6
    server.kill()
    # The writer retries the first write while the server is away: the rest wait, up to the bound.
    history = [_eval(run, step, tmp_path) for step in range(10, 130, 10)]
    lost = sweep.writer.lost()[run.run_id]
    assert lost["images"] >= 6 and lost["metrics"] >= 6 * len(METRICS)
    server.start()
    _finish(sweep, run, history)  # the end goes past the bound

    client = make_client(server.uri)
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    kept = [m.step for m in client.get_metric_history(run.run_id, "mode_distance")]
    assert kept == list(range(10, 10 * len(kept) + 1, 10)) and 3 <= len(kept) <= 6  # the first, in order
    tagged = json.loads(logged.data.tags[TAG_LOST])
    assert tagged["images"] + len(set(logged_sample_steps(client, run.run_id))) == 12
