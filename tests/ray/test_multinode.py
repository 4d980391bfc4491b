"""Sweeps on a real multi-node Ray cluster on loopback, as on a cluster of GPU workers: trials whose two
DDP ranks run on two nodes, and a node lost mid-trial (a spot preemption).

The cluster: a head with no CPUs and the ``train_driver`` resource (the sweep's driver, the trial
drivers and Ray Train's controllers run there, as on ``cluster.yaml``'s head), and worker nodes of 1 CPU
each, so a trial of 2 workers of 1 CPU can only run on two nodes. Checkpoints go to a folder every node
reaches (``GAN_RAY_SHARED_FS=1``). The sweep runs as a user runs it: ``gan-ray sweep`` in its own
process, joining the cluster through ``RAY_ADDRESS``.

What the tests measure (the restart latency, the steps trained again) is printed; the manual's fault
table (docs/cluster.md) quotes it.

The cluster is made of ``ray start`` processes, each its own raylet with its own resources, ports and
temp dir, and each in its own process session. A node is lost the way a spot preemption loses it: every
process of its session (raylet, agents, the workers it spawned) gets SIGKILL at once. Teardown stops
exactly the sessions started here, never ``ray stop`` (that kills every Ray on the machine by process
name: other tests' and other users'). Nothing here calls ``ray.init``: a Ray this pytest process
started (``ray_session``) is neither reached nor stopped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from process_tree import command_line, free_ports, session_tree, signal_sessions, stop_sessions

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
WORKER_NODES = 3  # a trial takes two; the third is where a trial that lost a node restarts
SWEEP_TIMEOUT_S = 300
EVAL_EVERY = 200
#: After an eval is seen: so the kill lands inside an eval interval (2-4 s here), not at its start.
KILL_DELAY_S = 1.0

SPACE = """\
name: {name}
base:
  data: {{name: ring8}}
  noise: {{dim: 8}}
  model: {{hidden_dim: 32, hidden_layers: 2}}
  train: {{steps: {steps}, eval_every: {eval_every}, batch_size: 64, eval_samples: 500}}
  scaling: {{max_failures: {max_failures}}}
parameters:
  optim.lr_g: {{log_uniform: [5.0e-4, 2.0e-3]}}
{more_parameters}budget: {{num_samples: {trials}, workers_per_trial: 2, max_concurrent_trials: 1}}
scheduler: {{type: none}}
search: {{seed: 0{initial_points}}}
"""


# --- the cluster on loopback ----------------------------------------------------------------------


@dataclass
class Node:
    name: str
    session_id: int  # the pid of its `ray start`, which leads the session
    temp_dir: Path
    alive: bool = True

    def processes(self) -> set[int]:
        return session_tree(self.session_id)

    def runs(self, text: str) -> bool:
        """Whether one of the node's processes has ``text`` in its command line (e.g. a Train worker)."""
        return any(text in command_line(pid) for pid in self.processes())


@dataclass
class LoopbackCluster:
    """Ray nodes on 127.0.0.1, started by ``ray start``; :meth:`close` stops every one of them."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    gcs_address: str = ""
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # no RAY_ADDRESS etc.
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            RAY_USAGE_STATS_ENABLED="0",
        )
        self.env = env

    def start_head(self, cpus: int, resources: str) -> Node:
        gcs, dashboard, client_server = free_ports(3)
        self.gcs_address = f"127.0.0.1:{gcs}"
        args = [
            "--head",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--include-dashboard=true",  # Ray Train's placement-group cleaner uses its state API
            f"--ray-client-server-port={client_server}",
        ]
        return self._start("head", cpus, resources, args)

    def add_node(self, name: str, cpus: int, resources: str = "{}") -> Node:
        assert self.gcs_address, "start_head() first"
        return self._start(name, cpus, resources, [f"--address={self.gcs_address}"])

    def _start(self, name: str, cpus: int, resources: str, args: list[str]) -> Node:
        agent_http, agent_grpc, runtime_env, metrics, node_manager, object_manager = free_ports(6)
        # Short: Ray puts unix sockets under it (the limit is ~107 characters), so not under tmp_path.
        temp_dir = Path(tempfile.mkdtemp(prefix=f"gr-{name[:6]}-", dir="/tmp"))
        # Every port explicit: the defaults (e.g. 52365 for the dashboard agent) may be taken by another
        # Ray, or by another node of this cluster on the same address.
        cmd = [
            str(BIN / "ray"),
            "start",
            *args,
            "--node-ip-address=127.0.0.1",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}",
            f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}",
            "--min-worker-port=0",  # workers bind OS-chosen ports, not the range another Ray uses
            "--max-worker-port=0",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            f"--resources={resources}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ]
        log = self.log_dir / f"ray_start_{name}.log"
        with open(log, "w") as out:
            # A new session: every process of this node carries its id, which is what kills and stops it.
            start = subprocess.Popen(
                cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = Node(name, start.pid, temp_dir)
        self.nodes.append(node)
        rc = start.wait(timeout=150)
        assert rc == 0, f"ray start ({name}) failed ({rc}):\n{log.read_text()[-5000:]}"
        return node

    def kill_node(self, node: Node) -> float:
        """Lose ``node`` as a spot preemption does: SIGKILL to all its processes at once. Returns when
        (``time.time()``) it was killed."""
        killed_at = time.time()
        left = signal_sessions([node.session_id], signal.SIGKILL)
        assert not left, f"processes {sorted(left)} of node {node.name} survived SIGKILL"
        node.alive = False
        return killed_at

    def close(self) -> None:
        """Stop every node this cluster started: SIGTERM to all at once, then SIGKILL to what is left
        (GCS and raylets take ~10 s to exit on SIGTERM; the cluster is thrown away, so not waiting
        longer loses nothing)."""
        try:
            stop_sessions([n.session_id for n in self.nodes])
        finally:
            for node in self.nodes:
                node.alive = False
                shutil.rmtree(node.temp_dir, ignore_errors=True)


# --- the sweeps on it ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The head and :data:`WORKER_NODES` worker nodes of 1 CPU; every node of it stopped afterwards."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the cluster's teardown reads /proc")
    if not (BIN / "ray").exists():
        pytest.skip(f"no ray script next to {sys.executable}")
    loop = LoopbackCluster(tmp_path_factory.mktemp("loopback"))
    try:
        loop.start_head(cpus=0, resources='{"train_driver": 100}')
        for i in range(WORKER_NODES):
            loop.add_node(f"worker{i}", cpus=1)
        yield loop
    finally:
        loop.close()


def _enough_workers(cluster: LoopbackCluster) -> None:
    """Add worker nodes until :data:`WORKER_NODES` live (an earlier test may have lost one)."""
    alive = [n for n in cluster.nodes if n.alive and n.name != "head"]
    for _ in range(WORKER_NODES - len(alive)):
        cluster.add_node(f"worker{len(cluster.nodes) - 1}", cpus=1)  # the head is one of the nodes


def _write_space(tmp_path: Path, name: str, steps: list[int], *, max_failures: int) -> Path:
    """A sweep of ``len(steps)`` trials, one at a time, of 2 workers each; trial i trains ``steps[i]``."""
    more, points = "", ""
    if len(steps) > 1:
        more = f"  train.steps: {{choice: {sorted(set(steps))}}}\n"
        points = (
            ", initial_points: ["
            + ", ".join(f"{{optim.lr_g: 1.0e-3, train.steps: {s}}}" for s in steps)
            + "]"
        )
    text = SPACE.format(
        name=name,
        steps=steps[0],
        eval_every=EVAL_EVERY,
        max_failures=max_failures,
        trials=len(steps),
        more_parameters=more,
        initial_points=points,
    )
    space = tmp_path / f"{name}.yaml"
    space.write_text(text)
    return space


class Sweep:
    """``gan-ray sweep`` in its own process on the cluster; killed if a test leaves it running."""

    def __init__(self, cluster: LoopbackCluster, space: Path, tracking: str):
        self.tmp = space.parent
        self.tracking = tracking
        self.study = f"sqlite:///{self.tmp / 'optuna.db'}"
        env = {**cluster.env, "RAY_ADDRESS": cluster.gcs_address, "GAN_RAY_SHARED_FS": "1"}
        for key in ("PYTHONPATH", "GAN_RAY_CACHE"):
            if key in os.environ:
                env[key] = os.environ[key]
        cmd = [sys.executable, "-m", "gan_ray", "sweep", str(space), "--tracking-uri", tracking]
        cmd += ["--study-storage", self.study, "--storage-path", str(self.tmp / "shared" / "ray_results")]
        # Files, not pipes: Tune's progress tables would fill a pipe nobody reads until the end.
        self.log = open(self.tmp / "sweep.log", "w+")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.tmp / "sweep.log").read_text()

    def wait(self, timeout: float = SWEEP_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


@pytest.fixture
def sweeps():
    """Every sweep a test starts, killed (only it) if the test ends while it runs."""
    started: list[Sweep] = []
    yield started
    for sweep in started:
        if sweep.proc.poll() is None:
            sweep.proc.kill()
            sweep.proc.wait()
        if not sweep.log.closed:
            sweep.log.close()


def _wait_for(predicate, timeout: float, what: str, sweep: Sweep):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if sweep.proc.poll() is not None:
            raise AssertionError(
                f"the sweep ended ({sweep.proc.returncode}) before {what}:\n{sweep.output()[-5000:]}"
            )
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n{sweep.output()[-5000:]}")


def _runs(client, name: str) -> list:
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], "tags.`gan_ray.kind` = 'run'") if exp else []


def _history(client, run_id: str, key: str) -> list:
    return sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))


def _states(study: str) -> list[str]:
    (summary,) = optuna.get_all_study_summaries(storage=study)
    return [t.state.name for t in optuna.load_study(study_name=summary.study_name, storage=study).trials]


def test_a_trials_two_ranks_run_on_two_nodes_and_stay_identical(cluster, store, tmp_path, sweeps):
    from mlflow import MlflowClient

    _enough_workers(cluster)
    space = _write_space(tmp_path, "t_span", [2 * EVAL_EVERY], max_failures=0)
    sweep = Sweep(cluster, space, store)
    sweeps.append(sweep)
    assert sweep.wait() == 0, sweep.output()[-5000:]

    client = MlflowClient(store)
    (run,) = _runs(client, "t_span")
    assert run.info.status == "FINISHED" and run.data.tags["gan_ray.status"] == "completed"
    # Each eval: the ranks' node ids (from the workers themselves) name two nodes, and every G and D
    # parameter is equal across them (gloo averaged the gradients between the nodes).
    evals = [EVAL_EVERY, 2 * EVAL_EVERY]
    nodes = _history(client, run.info.run_id, "worker_nodes")
    assert [(m.step, m.value) for m in nodes] == [(s, 2.0) for s in evals]
    spread = _history(client, run.info.run_id, "replica_param_spread")
    assert [(m.step, m.value) for m in spread] == [(s, 0.0) for s in evals]
    # The checkpoints are on the shared storage, where the driver (on the head) read them back.
    best = run.data.tags["gan_ray.best_checkpoint"]
    assert Path(best).is_relative_to(tmp_path / "shared") and (Path(best) / "checkpoint.pt").is_file()
    from gan_ray.training.checkpoint import load_checkpoint

    history = load_checkpoint(best)["history"]
    ids = [h["worker_node_ids"].split(",") for h in history]
    assert all(len(rank_ids) == 2 and rank_ids[0] != rank_ids[1] for rank_ids in ids), ids
    assert _states(sweep.study) == ["COMPLETE"]


def _lose_a_node_mid_trial(cluster: LoopbackCluster, sweep: Sweep, name: str) -> tuple[str, float]:
    """Once the sweep's first trial has finished and its second reported an eval, SIGKILL a worker node
    the second trial runs on. Returns that trial's run id and when (``time.time()``) the node was killed."""
    from mlflow import MlflowClient

    client = MlflowClient(sweep.tracking)

    def second_trial_training():
        runs = _runs(client, name)
        done = [r for r in runs if r.info.status == "FINISHED"]
        training = [r for r in runs if r.info.status == "RUNNING" and "mode_distance" in r.data.metrics]
        return training[0] if done and training else None

    run = _wait_for(second_trial_training, 180, "the second trial to report an eval", sweep)
    # A Train worker's process title names its actor class: the node to lose is one running one.
    nodes = [n for n in cluster.nodes if n.alive and n.name != "head" and n.runs("RayTrainWorker")]
    assert len(nodes) == 2, f"the trial's workers are on {[n.name for n in nodes]}"
    time.sleep(KILL_DELAY_S)
    return run.info.run_id, cluster.kill_node(nodes[-1])


def test_a_trial_that_loses_a_node_restarts_on_the_nodes_left_and_finishes(cluster, store, tmp_path, sweeps):
    """``max_failures: 2``: the trial's worker group starts again from its latest checkpoint on the
    two nodes left, continues the step count, says it restarted, and the sweep loses nothing."""
    from mlflow import MlflowClient

    _enough_workers(cluster)
    steps = [2 * EVAL_EVERY, 8 * EVAL_EVERY]  # a short trial, then the one that loses a node
    space = _write_space(tmp_path, "t_lost_node", steps, max_failures=2)
    sweep = Sweep(cluster, space, store)
    sweeps.append(sweep)
    run_id, killed_at = _lose_a_node_mid_trial(cluster, sweep, "t_lost_node")
    assert sweep.wait() == 0, sweep.output()[-5000:]

    client = MlflowClient(store)
    runs = _runs(client, "t_lost_node")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}, [r.info for r in runs]
    assert {r.data.tags["gan_ray.status"] for r in runs} == {"completed"}
    for r in runs:
        # Every eval once (none reported twice, none missing), each with equal replicas on two nodes.
        evals = list(range(EVAL_EVERY, int(r.data.params["train.steps"]) + 1, EVAL_EVERY))
        assert [m.step for m in _history(client, r.info.run_id, "loss_d")] == evals, r.info.run_name
        assert {m.value for m in _history(client, r.info.run_id, "replica_param_spread")} == {0.0}
        assert {m.value for m in _history(client, r.info.run_id, "worker_nodes")} == {2.0}
    (other,) = [r for r in runs if r.info.run_id != run_id]
    assert {m.value for m in _history(client, other.info.run_id, "restarts")} == {0.0}

    # The restart is in the record: the evals after it report restarts 1, those before it 0.
    restarts = _history(client, run_id, "restarts")
    before = [m for m in restarts if m.value == 0.0]
    after = [m for m in restarts if m.value == 1.0]
    assert before and after and len(before) + len(after) == len(restarts) == 8
    assert before[-1].step < after[0].step
    # It went on from the checkpoint of the last eval before the kill: no eval lost, and the steps
    # trained again are those since that eval, fewer than one eval interval.
    assert after[0].step == before[-1].step + EVAL_EVERY
    assert before[-1].timestamp / 1000 <= killed_at < after[0].timestamp / 1000
    gaps = [(b.timestamp - a.timestamp) / 1000 for a, b in zip(after, after[1:], strict=False)]
    interval_s = sorted(gaps)[len(gaps) // 2] if gaps else float("nan")
    # The eval logged last before the kill: the checkpoint the restart went on from.
    since_eval_s = killed_at - before[-1].timestamp / 1000
    steps_lost = min(EVAL_EVERY, round(since_eval_s / interval_s * EVAL_EVERY))
    latency = after[0].timestamp / 1000 - killed_at
    print(
        f"\nlost node, max_failures 2: the trial reported again {latency:.1f} s after the kill "
        f"(restart, then one eval interval of {interval_s:.1f} s); killed {since_eval_s:.1f} s "
        f"after the eval at step {before[-1].step}: ~{steps_lost} steps trained again (eval_every {EVAL_EVERY})"
    )
    assert _states(sweep.study) == ["COMPLETE", "COMPLETE"]


def test_without_retries_the_trial_that_loses_a_node_fails_and_the_sweep_completes(
    cluster, store, tmp_path, sweeps
):
    from mlflow import MlflowClient

    _enough_workers(cluster)
    steps = [2 * EVAL_EVERY, 8 * EVAL_EVERY]
    space = _write_space(tmp_path, "t_lost_node_no_retry", steps, max_failures=0)
    sweep = Sweep(cluster, space, store)
    sweeps.append(sweep)
    run_id, killed_at = _lose_a_node_mid_trial(cluster, sweep, "t_lost_node_no_retry")
    code = sweep.wait()
    ended_at = time.time()
    output = sweep.output()
    assert code == 0, output[-5000:]

    client = MlflowClient(store)
    runs = {r.info.run_id: r for r in _runs(client, "t_lost_node_no_retry")}
    assert len(runs) == 2 and not [r for r in runs.values() if r.info.status == "RUNNING"]
    lost = runs.pop(run_id)
    assert lost.info.status == "FAILED" and lost.data.tags["gan_ray.status"] == "failed"
    assert lost.data.tags.get("gan_ray.error"), "the failed run says why"
    (other,) = runs.values()
    assert other.info.status == "FINISHED" and other.data.tags["gan_ray.status"] == "completed"
    assert [m.step for m in _history(client, other.info.run_id, "loss_d")] == [EVAL_EVERY, 2 * EVAL_EVERY]
    assert sorted(_states(sweep.study)) == ["COMPLETE", "FAIL"]
    # The sweep ends normally, its parent run FINISHED, with the completed trial as the champion.
    exp = client.get_experiment_by_name("t_lost_node_no_retry")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`gan_ray.kind` = 'sweep'")
    assert parent.info.status == "FINISHED"
    failed_at = lost.info.end_time / 1000
    print(
        f"\nlost node, max_failures 0: the trial's run ended FAILED {failed_at - killed_at:.1f} s after the "
        f"kill; the sweep ended {ended_at - killed_at:.1f} s after it"
    )
