"""What runs where a run trains: the core loop, reporting every eval (and its checkpoint) to a Ray session.

Two sessions host it. A Ray Train worker (:class:`TrainSession`): one of N DDP ranks, started by a
TorchTrainer. A Tune trial process itself (:class:`TuneSession`): a sweep's single-worker trial, which
then needs no Train controller and no worker group of its own (their start-up was most of a short
trial's time: bench/RESULTS.md). Either way a report is the eval's metrics and, from rank 0, a
run-state folder that Ray persists as the checkpoint to resume from.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from gan_ray import settings
from gan_ray.config import validate_config
from gan_ray.errors import ConfigError, DivergedError
from gan_ray.models import unwrap
from gan_ray.objective import Objective
from gan_ray.ray.storage import local_file
from gan_ray.training.checkpoint import load_checkpoint, read_divergence, write_divergence, write_run_state
from gan_ray.training.loop import Training, build_training, default_evaluator, run_loop

#: Seconds rank 0 took to write an eval's run-state folder (before Ray persists it), in its report.
TIME_CHECKPOINT = "time_checkpoint_s"
#: How many times the run's workers started again from its checkpoint: after a lost worker or node
#: (``scaling.max_failures``), or a resume of a run of the same name. In every report, 0 before any.
RESTARTS = "restarts"
#: Of a run of several workers: how many Ray nodes its ranks ran on, and their node ids by rank.
WORKER_NODES = "worker_nodes"
WORKER_NODE_IDS = "worker_node_ids"


class Session(Protocol):
    """Where a worker runs: its rank, its device, the checkpoint to resume from, and how it reports."""

    rank: int
    world_size: int
    name: str

    def device(self) -> torch.device: ...

    def node_id(self) -> str: ...

    def wrap_model(self, module: torch.nn.Module) -> torch.nn.Module: ...

    def checkpoint(self): ...

    def report(self, metrics: dict[str, Any], folder: str | None, dir_name: str) -> None: ...


class TrainSession:
    """A Ray Train worker's session: a DDP rank whose models ``prepare_model`` wraps."""

    def __init__(self):
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.name = ctx.get_experiment_name()

    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def wrap_model(self, module: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(module, move_to_device=self.device())

    def checkpoint(self):
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, Any], folder: str | None, dir_name: str) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=dir_name if folder else None)


class TuneSession:
    """A Tune trial's own process as the one and only worker: no DDP, Tune keeps the checkpoints."""

    rank, world_size = 0, 1

    def __init__(self, use_gpu: bool):
        from ray import tune

        self.name = tune.get_context().get_trial_name()
        self.use_gpu = use_gpu

    def device(self) -> torch.device:
        # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU (a share of one, with fractional GPUs).
        return torch.device("cuda", 0) if self.use_gpu and torch.cuda.is_available() else torch.device("cpu")

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def wrap_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def checkpoint(self):
        from ray import tune

        return tune.get_checkpoint()

    def report(self, metrics: dict[str, Any], folder: str | None, dir_name: str) -> None:
        from ray import tune

        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)


class _CrashOnce:
    """Wraps a step function; exits this process without cleanup at the chosen step (tests only)."""

    def __init__(self, step_fn, start_step: int, at_step: int, marker: Path):
        self.step_fn, self.step, self.at_step, self.marker = step_fn, start_step, at_step, marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.step_fn, name)

    def __call__(self) -> None:
        self.step += 1
        if self.step == self.at_step and not self.marker.exists():
            self.marker.write_text(str(self.step))
            os._exit(1)
        self.step_fn()


def _maybe_inject_faults(training: Training, switches: Mapping[str, str]) -> None:
    """The test-only fault switches of :mod:`gan_ray.settings`: a crash at a step, NaN eval samples."""
    at, marker = switches.get(settings.CRASH_AT_STEP), switches.get(settings.CRASH_MARKER)
    if at and marker and training.rank == int(switches.get(settings.CRASH_RANK, "0")):
        training.step_fn = _CrashOnce(training.step_fn, training.step, int(at), Path(marker))
    nan_rank = switches.get(settings.NAN_SAMPLES_RANK)
    if nan_rank is not None and training.rank == int(nan_rank):
        sample = training.sample
        training.sample = lambda n=None: sample(n) * float("nan")


def replica_param_spread(training: Training) -> float:
    """The largest difference of any G or D parameter between ranks: 0 when DDP keeps replicas in step.

    A collective: every rank must call it at the same point.
    """
    import torch.distributed as dist

    params = [
        p.detach().flatten().float()
        for m in (training.generator, training.discriminator)
        for p in unwrap(m).parameters()
    ]
    flat = torch.cat(params)
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max())


def rank_node_ids(session: Session) -> list[str]:
    """The Ray node id of every rank, by rank: where the worker group really runs (on a cluster, not
    necessarily one rank per node). A collective: every rank must call it at the same point."""
    import torch.distributed as dist

    ids: list[str | None] = [None] * session.world_size
    dist.all_gather_object(ids, session.node_id())
    return [str(i) for i in ids]


def _resume(training: Training, session: Session, device: torch.device) -> int:
    """Load the session's checkpoint, if any, into ``training``; returns the restart count to report:
    0 without one, else one more than the checkpoint's last eval reported."""
    checkpoint = session.checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        refuse_diverged(directory, session.name)
        training.load_state_dict(load_checkpoint(directory, map_location=device))
    history = training.history
    return int(history[-1].get(RESTARTS, 0)) + 1 if history else 1


def refuse_diverged(folder: str | Path, name: str) -> None:
    """Refuse to resume from a divergence record: it would continue a NaN model."""
    record = read_divergence(folder)
    if record is not None:
        raise ConfigError(
            f"run {name!r} diverged at step {record['step']}; a resume would continue a NaN model: "
            "start a new run (another name), with other hyperparameters"
        )


def loop_config(cfg, objective: Objective) -> dict[str, Any]:
    """What a worker needs to run ``cfg``, as plain data (it travels to other processes)."""
    return {"config": cfg.model_dump(mode="json"), "objective": [objective.metric, objective.mode]}


def run_worker(
    config: Mapping[str, Any], session: Session, switches: Mapping[str, str] | None = None
) -> None:
    """Train the run ``config`` (see :func:`loop_config`) in ``session`` from its checkpoint, if any, to the
    end, reporting every eval (a divergence as its last report). ``switches``: the test-only fault switches
    (default: this process's environment)."""
    cfg = validate_config(config["config"])
    objective = Objective(*config["objective"])
    rank, world_size = session.rank, session.world_size
    device = session.device()
    training = build_training(
        cfg, device=device, rank=rank, world_size=world_size, wrap_model=session.wrap_model
    )
    restarts = _resume(training, session, device)
    # Once per worker group: a rank's node does not change while it lives.
    node_ids = rank_node_ids(session) if world_size > 1 else []
    _maybe_inject_faults(training, settings.crash_switches() if switches is None else switches)
    evaluator = None
    if rank == 0:
        with local_file(cfg.metrics.extractor) as extractor:  # the sweep's, on storage every node reads
            evaluator = default_evaluator(cfg, device, extractor)
    try:
        for report in run_loop(training, evaluator, objective=objective):
            metrics = report.metrics  # the history's own entry: what is added here is checkpointed too
            metrics[RESTARTS] = restarts
            if world_size > 1:
                metrics["replica_param_spread"] = replica_param_spread(training)
                metrics[WORKER_NODES] = len(set(node_ids))
                metrics[WORKER_NODE_IDS] = ",".join(node_ids)
            if rank != 0:
                session.report(metrics, None, "")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                write_run_state(tmp, training.state_dict(), report.samples_of(training), cfg)
                metrics[TIME_CHECKPOINT] = time.perf_counter() - start
                session.report(metrics, tmp, f"checkpoint_{report.step:08d}")
    except DivergedError as err:
        # Every rank sees the same averaged losses, so all of them end here at the same eval. The
        # objective is NaN, which Optuna records as a failed trial (inf would count as a real value).
        # Rank 0 attaches a divergence record: a run's result is its latest *checkpoint*'s metrics,
        # so without one a diverged run would end looking like its last good eval.
        nan = math.nan
        metrics = {**err.metrics, "step": err.step, "diverged": 1.0, "objective": nan, "best_objective": nan}
        if rank != 0:
            session.report(metrics, None, "")
            return
        with tempfile.TemporaryDirectory() as tmp:
            write_divergence(tmp, err.step, err.metrics, training.history)
            session.report(metrics, tmp, f"checkpoint_{err.step:08d}_diverged")


def train_worker(config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs."""
    run_worker(config, TrainSession())
