"""A sweep submitted as a Ray job to a real ``ray start --head`` cluster with token authentication.

What a user does on a cluster (docs/cluster.md: ``ray job submit --working-dir . -- gan-ray sweep ...``),
on loopback: the head is started by the ``ray`` CLI in a subprocess, with its own ports and temp
dir, so a Ray that this pytest process started with ``ray.init()`` (``ray_session``) is neither
reached nor stopped. Nothing here calls ``ray.init``.

Token auth (Ray 2.60): ``RAY_AUTH_MODE=token`` turns it on; the token comes from ``RAY_AUTH_TOKEN``,
else the file at ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``. The cluster and the job client
both get a fresh random ``RAY_AUTH_TOKEN``, so the user's ``~/.ray/auth_token`` is neither read nor
written. Every Ray process inherits that environment from ``ray start`` (the job driver too, which
needs the token for its own ``ray.init()``).

Teardown is not ``ray stop``: that kills every raylet/GCS on the machine by process name, the
in-process test Ray included. ``ray start`` runs in a new session, every process it spawns stays in
that session, and the teardown signals exactly those (plus their descendants, e.g. the job driver,
which Ray's job supervisor starts in a session of its own).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from process_tree import free_ports, stop_sessions

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
JOB_TIMEOUT_S = 240

SPACE = """\
name: t_job_submit
base:
  data: {name: ring8}
  noise: {dim: 8}
  train: {steps: 200, eval_every: 100, batch_size: 64}
parameters:
  optim.lr_g: {log_uniform: [1.0e-3, 3.0e-3]}
  optim.lr_d: {log_uniform: [1.0e-3, 3.0e-3]}
budget: {num_samples: 2, max_concurrent_trials: 2}
scheduler: {type: none}
search: {sampler: random, seed: 0}
"""


@dataclass
class Cluster:
    dashboard: str  # http://127.0.0.1:PORT, the jobs API
    env: dict[str, str]  # what a client needs: PATH, RAY_AUTH_MODE, RAY_AUTH_TOKEN
    token: str
    temp_dir: Path
    session_id: int


def _ray(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _http_get(url: str, token: str | None) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def ray_cluster(tmp_path):
    """A one-node Ray cluster from ``ray start --head`` with token auth, stopped (only it) afterwards."""
    if not sys.platform.startswith("linux"):
        pytest.skip("teardown reads /proc")
    for script in ("ray", "gan-ray"):
        if not (BIN / script).exists():
            pytest.skip(f"no {script} script next to {sys.executable}")
    token = secrets.token_hex(32)
    # Short: Ray puts unix sockets under it (the limit is ~107 characters), so not under tmp_path.
    temp_dir = Path(tempfile.mkdtemp(prefix="gr-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # no RAY_ADDRESS etc.
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
    )
    (
        gcs,
        dashboard,
        client_server,
        agent_http,
        agent_grpc,
        runtime_env_agent,
        metrics,
        node_manager,
        object_manager,
    ) = free_ports(9)
    # Every port explicit: the defaults (e.g. 52365 for the dashboard agent) may be taken by another Ray.
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        "--include-dashboard=true",
        f"--ray-client-server-port={client_server}",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env_agent}",
        f"--metrics-export-port={metrics}",
        f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}",
        "--min-worker-port=0",  # workers bind OS-chosen ports, not the 10002-19999 range another Ray uses
        "--max-worker-port=0",
        "--num-cpus=2",
        "--num-gpus=0",
        '--resources={"train_driver": 100}',
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = tmp_path / "ray_start.log"
    with open(log, "w") as out:
        # A new session: every process of this cluster carries its id, which is what teardown stops.
        start = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        rc = start.wait(timeout=150)
        assert rc == 0, f"ray start failed ({rc}):\n{log.read_text()[-5000:]}"
        yield Cluster(f"http://127.0.0.1:{dashboard}", env, token, temp_dir, start.pid)
    finally:
        if start.poll() is None:
            start.kill()
            start.wait()
        stop_sessions([start.pid])
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_job(cluster: Cluster, job_id: str, timeout_s: float) -> str:
    """Poll the jobs API (cheap, no Ray import per poll) until the job reaches a terminal state."""
    deadline = time.monotonic() + timeout_s
    status = "UNKNOWN"
    while time.monotonic() < deadline:
        code, body = _http_get(f"{cluster.dashboard}/api/jobs/{job_id}", cluster.token)
        if code == 200:
            status = json.loads(body)["status"]
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
        time.sleep(2)
    return f"TIMEOUT after {timeout_s:.0f} s (last status {status})"


def test_sweep_as_a_ray_job_on_a_token_auth_cluster(ray_cluster, tmp_path):
    from mlflow import MlflowClient

    from gan_ray.tracking.registry import champion_version

    # Token auth is really on: the jobs API refuses a request without the token, and a wrong one.
    assert _http_get(f"{ray_cluster.dashboard}/api/jobs/", None)[0] == 401
    assert _http_get(f"{ray_cluster.dashboard}/api/jobs/", "0" * 64)[0] == 403
    assert _http_get(f"{ray_cluster.dashboard}/api/jobs/", ray_cluster.token)[0] == 200

    space = tmp_path / "t_job_submit.yaml"
    space.write_text(SPACE)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_name = "gan_ray-t_job_submit-model"
    job_id = f"gan-ray-sweep-{secrets.token_hex(4)}"
    submitted = _ray(
        ray_cluster,
        "job",
        "submit",
        f"--address={ray_cluster.dashboard}",
        f"--working-dir={REPO}",
        f"--submission-id={job_id}",
        "--no-wait",
        "--",
        "gan-ray",
        "sweep",
        str(space),
        "--tracking-uri",
        tracking_uri,
        "--storage-path",
        str(tmp_path / "ray_results"),
        "--study-storage",
        f"sqlite:///{tmp_path / 'optuna.db'}",
        "--model-name",
        model_name,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    status = _wait_for_job(ray_cluster, job_id, JOB_TIMEOUT_S)
    logs = _ray(ray_cluster, "job", "logs", f"--address={ray_cluster.dashboard}", job_id)
    assert status == "SUCCEEDED", f"job {job_id}: {status}\n{logs.stdout[-8000:]}\n{logs.stderr[-2000:]}"
    assert "sweep t_job_submit" in logs.stdout and "champion" in logs.stdout, logs.stdout[-4000:]
    job_status = _ray(ray_cluster, "job", "status", f"--address={ray_cluster.dashboard}", job_id)
    assert "succeeded" in (job_status.stdout + job_status.stderr).lower()

    # The working dir that was shipped: the repository's code, without what .gitignore (or Ray) leaves out.
    packages = list(
        ray_cluster.temp_dir.glob("session_latest/runtime_resources/working_dir_files/_ray_pkg_*/")
    )
    assert len(packages) == 1, packages
    shipped = [p for p in packages[0].rglob("*") if p.is_file()]
    names = {p.relative_to(packages[0]).parts[0] for p in shipped}
    assert {"gan_ray", "pyproject.toml"} <= names
    assert not names & {".git", ".venv", "ray_results", "mlflow.db", "optuna.db", "mlruns", "outputs"}, names
    assert not any("__pycache__" in p.parts or p.suffix == ".pyc" for p in shipped)
    size = sum(p.stat().st_size for p in shipped)
    assert size < 5 * 2**20, f"{size / 2**20:.1f} MiB shipped as the working dir"

    # MLflow, read from this process: one parent run, one child run per trial, the champion alias.
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("t_job_submit")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [r.info for r in parents]
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in children)
    champion = champion_version(model_name, tracking_uri)
    assert champion is not None, f"no champion alias on {model_name!r}"
    assert champion.run_id in {r.info.run_id for r in children}
