"""MLflow tracking of a training run: URI resolution, failing fast on an unreachable store, and what one
run records (only the applicable params, one metric point per eval, artifacts, completed / diverged /
failed status), against a real SQLite store and a real ``mlflow server`` on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import gan_ray
from gan_ray.config import GanConfig, validate_config
from gan_ray.errors import TrackingUnavailableError
from gan_ray.objective import Objective
from gan_ray.tracking.params import run_params
from gan_ray.tracking.run import MlflowRun, logged_sample_steps, tracked_run
from gan_ray.tracking.store import (
    TAG_DATASET,
    TAG_DIVERGED_AT,
    TAG_ERROR,
    TAG_GIT_COMMIT,
    TAG_HEALTH,
    TAG_LOSS,
    TAG_MLFLOW_GIT_COMMIT,
    TAG_MODEL_FAMILY,
    TAG_MODEL_URI,
    TAG_STATUS,
    TAG_VERSION,
    check_tracking_server,
    checkout_commit,
    git_commit,
    make_client,
    resolve_tracking_uri,
)
from gan_ray.training.local import run_local as train
from gan_ray.training.observers import EvalRecord, RunOutcome, outcome_of


def _ring8(tmp: Path, **overrides) -> GanConfig:
    """A tiny MLP GAN on ring8: 200 steps, an eval every 100 (about a second on 2 cores)."""
    base = {
        "name": "ring8-tiny",
        "output_dir": str(tmp / "outputs"),
        "model": {"hidden_dim": 32, "hidden_layers": 2},
        "train": {"steps": 200, "eval_every": 100, "batch_size": 64, "eval_samples": 500},
    }
    return validate_config(base).with_overrides(overrides)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here trains tiny models (see conftest.one_thread)."""


# --- URIs and fail-fast checks (no training) -------------------------------------------------


def test_resolve_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///rel/x.db") == f"sqlite:///{tmp_path / 'rel' / 'x.db'}"
    assert resolve_tracking_uri("http://host:5000") == "http://host:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert resolve_tracking_uri(None) == "http://from-env:5000"
    assert resolve_tracking_uri("sqlite:////abs/y.db") == "sqlite:////abs/y.db"


def test_unreachable_server_fails_fast():
    uri = f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="unreachable"):
        tracked_run(GanConfig(), uri)
    assert time.monotonic() - start < 10
    assert issubclass(TrackingUnavailableError, RuntimeError)


def test_sqlite_store_needs_an_existing_folder(tmp_path):
    with pytest.raises(TrackingUnavailableError, match="does not exist"):
        check_tracking_server(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")
    check_tracking_server(f"sqlite:///{tmp_path / 'mlflow.db'}")  # folder exists: fine


def test_params_hold_only_the_loss_own_parameters():
    wgan = run_params(GanConfig().with_overrides({"loss.name": "wasserstein"}))
    assert "loss.params.clip" in wgan and "loss.params.gp_weight" not in wgan
    gp = run_params(GanConfig().with_overrides({"loss.name": "wgan_gp"}))
    assert "loss.params.gp_weight" in gp and "loss.params.clip" not in gp
    assert "data.root" not in wgan  # None values are left out
    assert all(isinstance(v, str) and len(v) <= 6000 for v in wgan.values())
    assert wgan["model.name"] == "mlp" and wgan["noise.dim"] == "8"


# --- runs in a real SQLite store --------------------------------------------------------------


@pytest.fixture(scope="module")
def completed_run(store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("completed")
    cfg = _ring8(tmp, **{"loss.name": "wasserstein"})
    logger = tracked_run(cfg, store, experiment="tracking-tests", run_name="wgan-ok")
    result = train(cfg, observers=[logger], verbose=False)
    return logger, result


@pytest.mark.slow
def test_completed_run_records_params_metrics_artifacts(store, completed_run):
    logger, result = completed_run
    client = make_client(store)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "wgan-ok"
    assert run.data.tags[TAG_STATUS] == "completed" and run.data.tags[TAG_HEALTH] == "ok"
    assert run.data.tags[TAG_LOSS] == "wasserstein" and run.data.tags[TAG_DATASET] == "ring8"
    assert run.data.tags[TAG_MODEL_FAMILY] == "mlp"
    assert run.data.params == run_params(result.config)
    assert "loss.params.clip" in run.data.params and "loss.params.gp_weight" not in run.data.params

    for name in (
        "loss_d",
        "loss_g",
        "d_real",
        "d_fake",
        "images_per_s",
        "modes_covered",
        "mode_distance",
        "objective",
    ):
        history = client.get_metric_history(logger.run_id, name)
        assert [m.step for m in history] == [100, 200], name
    assert "step" not in run.data.metrics and "health" not in run.data.metrics  # a string, not a metric
    last = client.get_metric_history(logger.run_id, "mode_distance")[-1].value
    assert last == pytest.approx(result.metrics["mode_distance"])

    top = {a.path for a in client.list_artifacts(logger.run_id)}
    assert {"config.yaml", "loss_curves.png", "images", "checkpoint"} <= top
    assert logged_sample_steps(client, logger.run_id) == [100, 200]  # log_image's step slider
    assert run.data.tags["mlflow.loggedImages"] == "True"  # what makes the UI show its image grid
    config_text = Path(client.download_artifacts(logger.run_id, "config.yaml")).read_text()
    assert validate_config(yaml.safe_load(config_text)) == result.config

    # The generator was logged as a model of this run.
    assert logger.model_uri and run.data.tags[TAG_MODEL_URI] == logger.model_uri
    assert [o.model_id for o in run.outputs.model_outputs] == [logger.model_uri.removeprefix("models:/")]


@pytest.mark.slow
def test_diverged_run_is_tagged_and_failed(store, tmp_path):
    cfg = _ring8(tmp_path, **{"loss.name": "least_squares", "optim.lr_d": 1e6, "optim.lr_g": 1e6})
    logger = tracked_run(cfg, store, experiment="tracking-tests", run_name="diverges")
    result = train(cfg, observers=[logger], verbose=False)  # a diverged run returns, as under Ray
    assert result.diverged and result.metrics["step"] == 100 and result.history == []
    run = make_client(store).get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[TAG_STATUS] == "diverged"
    assert run.data.tags[TAG_DIVERGED_AT] == "100"
    assert run.data.tags[TAG_ERROR].startswith("DivergedError")
    assert logger.model_uri is None and TAG_MODEL_URI not in run.data.tags


@pytest.mark.slow
def test_a_run_where_d_wins_ends_collapsed_with_its_health_recorded(store, tmp_path, capsys):
    """D at lr 1e-2 against G at 1e-6 on ring8: mean D(x) 0.93, 0.9997, 0.9999 and D(G(z)) 0.076,
    0.0004, 0.0001 over the three eval intervals (seeds 0-4 alike), so D has won at the last two evals
    and the run ends collapsed with health d_won: finished, but no model is logged, and the console
    says so."""
    cfg = _ring8(
        tmp_path,
        **{"loss.name": "non_saturating", "optim.lr_d": 1e-2, "optim.lr_g": 1e-6, "train.steps": 300},
    )
    logger = tracked_run(cfg, store, experiment="tracking-tests", run_name="d-wins")
    result = train(cfg, observers=[logger], verbose=False)
    assert result.status == "collapsed"
    assert [h["health"] for h in result.history] == ["ok", "ok", "d_won"]
    assert result.metrics["d_real"] >= 0.99 and result.metrics["d_fake"] <= 0.01

    client = make_client(store)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"  # it ran; what it is worth is in the tags
    assert run.data.tags[TAG_STATUS] == "collapsed" and run.data.tags[TAG_HEALTH] == "d_won"
    # ... and in the Description the UI shows under the status.
    assert run.data.tags["mlflow.note.content"].startswith("**Collapsed** at step 300: D has won (D(x) ")
    assert logger.model_uri is None and TAG_MODEL_URI not in run.data.tags
    assert not run.outputs.model_outputs
    assert "health" not in run.data.metrics
    assert [m.step for m in client.get_metric_history(logger.run_id, "d_real")] == [100, 200, 300]

    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 2, warnings
    turned, ended = warnings
    assert turned.startswith(
        "gan_ray: warning: ring8-tiny is unhealthy (d_won) at step 300: D has won (D(x) "
    )
    assert ended.startswith("gan_ray: warning: ring8-tiny collapsed at step 300: D has won (D(x) ")
    assert ended.endswith("at two evals in a row)")


@pytest.mark.slow
def test_failed_killed_and_child_runs(store, tmp_path):
    """Status from the error alone (no training), and nesting under a sweep's parent run."""
    client = make_client(store)
    cfg = _ring8(tmp_path)
    parent = MlflowRun(store, "tracking-tests", "parent", log_model=False)
    parent.start(cfg)
    outcomes = {}
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        child = MlflowRun(store, "tracking-tests", parent_run_id=parent.run_id, tags={"trial": "t1"})
        child.start(cfg)
        assert client.get_run(child.run_id).data.tags[TAG_STATUS] == "running"
        child.end(outcome_of(error, [], None))
        outcomes[type(error).__name__] = client.get_run(child.run_id)
    parent.end(RunOutcome("completed"))

    failed, killed = outcomes["RuntimeError"], outcomes["KeyboardInterrupt"]
    assert (failed.info.status, failed.data.tags[TAG_STATUS]) == ("FAILED", "failed")
    assert failed.data.tags[TAG_ERROR] == "RuntimeError: boom"
    assert (killed.info.status, killed.data.tags[TAG_STATUS]) == ("KILLED", "killed")
    for child_run in (failed, killed):
        assert child_run.data.tags["mlflow.parentRunId"] == parent.run_id
        assert child_run.data.tags["trial"] == "t1"
    assert client.get_run(parent.run_id).info.status == "FINISHED"


def test_best_objective_is_logged_where_it_improves_with_its_step(store, tmp_path):
    """``best_<metric>`` and ``best_<metric>_step`` at the evals that reached a new best (a tie counts: it
    names the later checkpoint, as the sweep keeps it), so the runs table's latest value is the best."""
    client = make_client(store)
    evals = [(100, 0.5), (200, 0.3), (300, 0.4), (400, 0.3), (500, 0.6)]
    for objective, expected in (
        (None, [(100, 0.5), (200, 0.3), (400, 0.3)]),  # ring8's own: mode_distance, minimised
        (Objective("mode_distance", "max"), [(100, 0.5), (500, 0.6)]),
    ):
        run = MlflowRun(store, "tracking-tests", "best-so-far", objective=objective, log_model=False)
        run.start(_ring8(tmp_path))
        for step, value in evals:
            run.on_eval(EvalRecord(step, {"mode_distance": value, "loss_d": 1.0, "step": step}))
        run.end(RunOutcome("completed"))
        best = client.get_metric_history(run.run_id, "best_mode_distance")
        at = client.get_metric_history(run.run_id, "best_mode_distance_step")
        assert sorted((m.step, m.value) for m in best) == expected
        assert sorted((m.step, m.value) for m in at) == [(s, float(s)) for s, _ in expected]
        latest = client.get_run(run.run_id).data.metrics
        assert (latest["best_mode_distance"], latest["best_mode_distance_step"]) == expected[-1][::-1]


def test_runs_are_tagged_with_the_code_version(store, tmp_path):
    tags = make_client(store).get_run(_started(store, tmp_path).run_id).data.tags
    assert tags[TAG_VERSION] == gan_ray.__version__
    assert tags.get(TAG_GIT_COMMIT) == git_commit()
    if git_commit() is not None:
        assert tags[TAG_MLFLOW_GIT_COMMIT] == git_commit().removesuffix("-dirty")


def test_the_commit_comes_from_git_where_a_checkout_is_else_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GAN_RAY_GIT_COMMIT", raising=False)
    assert checkout_commit(tmp_path) is None
    monkeypatch.setenv("GAN_RAY_GIT_COMMIT", "abc1234")  # what `ray job submit` passes: no .git there
    assert checkout_commit(tmp_path) == "abc1234"
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("one")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert checkout_commit(repo) == head  # the checkout wins over the environment
    (repo / "f.txt").write_text("two")
    assert checkout_commit(repo) == head + "-dirty"


def _started(store: str, tmp: Path) -> MlflowRun:
    run = MlflowRun(store, "tracking-tests", "tagged", log_model=False)
    run.start(_ring8(tmp))
    run.end(RunOutcome("completed"))
    return run


def test_long_errors_keep_their_end_within_mlflow_limits(store, tmp_path):
    """A traceback longer than MLflow's tag limit is cut at its start: its last line says what went wrong."""
    cfg = _ring8(tmp_path)
    run = MlflowRun(store, "tracking-tests", "long-error", log_model=False)
    run.start(cfg)
    text = "Traceback:\n" + "  frame\n" * 3000 + "ValueError: the real reason"
    run.end(RunOutcome("failed", error=text))
    tag = make_client(store).get_run(run.run_id).data.tags[TAG_ERROR]
    assert len(tag) <= 8000 and tag.endswith("ValueError: the real reason") and tag.startswith("...")


# --- a real tracking server -------------------------------------------------------------------


@pytest.fixture
def mlflow_server(store, tmp_path, monkeypatch):
    """``mlflow server`` on a free loopback port, with proxied artifacts; stopped afterwards.

    It serves the module's (already migrated) SQLite store: creating fresh tables is most of a
    server's start-up time."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a dead server fails a test, not hangs it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    port = _free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    cmd = [
        str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
    ]
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                check_tracking_server(uri, timeout_s=1)
                break
            except TrackingUnavailableError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mlflow server did not start: {(tmp_path / 'server.log').read_text()}"
                    ) from None
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_logs_registers_and_loads_through_a_tracking_server(mlflow_server, tmp_path):
    from gan_ray.sampling import load_generator
    from gan_ray.tracking.registry import register_champion

    cfg = _ring8(tmp_path)
    logger = tracked_run(cfg, mlflow_server, experiment="server-tests")
    result = train(cfg, observers=[logger], verbose=False)
    client = make_client(mlflow_server)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[TAG_STATUS] == "completed"
    assert [m.step for m in client.get_metric_history(logger.run_id, "loss_g")] == [100, 200]
    assert {"config.yaml", "images", "loss_curves.png"} <= {
        a.path for a in client.list_artifacts(logger.run_id)
    }
    assert logged_sample_steps(client, logger.run_id) == [100, 200]

    version, promoted = register_champion(
        logger.model_uri, "served-gan", "mode_distance", result.metrics["mode_distance"], "min",
        logger.run_id, cfg, mlflow_server,
    )  # fmt: skip
    assert (version, promoted) == (1, True)
    generator = load_generator("models:/served-gan@champion", tracking_uri=mlflow_server)
    samples = generator.sample(32, seed=0)
    assert samples.shape == (32, 2)
    assert generator.sample(32, seed=0).equal(samples)


def test_the_suite_metrics_and_the_reference_reach_the_run(store, tmp_path):
    """An eval report with the suite (what ``metrics.suite: full`` adds) is logged metric by metric; the
    reference's identity is a tag and its real-feature file an artifact under ``reference/``, once."""
    from gan_ray.data.catalog import REFERENCE_FILE_KEY, REFERENCE_KEY
    from gan_ray.tracking.store import TAG_REFERENCE

    reference = tmp_path / "real-features-demo.pt"
    reference.write_bytes(b"features")
    suite = {"kid_classifier": 0.01, "kid_classifier_std": 0.001, "precision": 0.8, "recall": 0.6}
    suite |= {"density": 0.9, "coverage": 0.7}
    run = MlflowRun(store, "tracking-tests", "suite", log_model=False)
    run.start(_ring8(tmp_path))
    line = "fashion_mnist/train/1x28x28/classifier-abc/n10000"
    for step in (100, 200):
        report = {"mode_distance": 0.5, "step": step, **suite, REFERENCE_KEY: line}
        run.on_eval(EvalRecord(step, {**report, REFERENCE_FILE_KEY: str(reference)}))
    run.end(RunOutcome("completed"))
    client = make_client(store)
    logged = client.get_run(run.run_id)
    assert {k: logged.data.metrics[k] for k in suite} == suite
    assert logged.data.tags[TAG_REFERENCE] == line
    assert [a.path for a in client.list_artifacts(run.run_id, "reference")] == [
        "reference/real-features-demo.pt"
    ]
