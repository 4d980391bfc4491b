"""Ray Train layer: the core's alternating loop as PyTorch DDP across Ray workers (gloo on CPU, NCCL on GPU).

Batch semantics: ``train.batch_size`` is *per worker*, so N workers train with a global batch of
N x batch_size and DDP averages G's and D's gradients over it. Each rank draws its own noise and
its own shard of the real data. Scaling the global batch by N usually wants the learning rates
scaled too (linearly for small N, by sqrt(N) for Adam at large N); gan_ray leaves them as given.

Checkpoints are run-state folders (:mod:`gan_ray.training.checkpoint`) under ``storage_path/name``:
every eval, the best by the objective and the latest are kept. The same (storage_path, name)
resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
from ray.train import UserCallback

from gan_ray import settings
from gan_ray.config import GanConfig, validate_config
from gan_ray.errors import DivergedError
from gan_ray.models import unwrap
from gan_ray.objective import Objective
from gan_ray.ray.cluster import check_fits, cluster_capacity, connect
from gan_ray.training.checkpoint import load_checkpoint, write_run_state
from gan_ray.training.loop import Training, build_training, default_evaluator, run_loop
from gan_ray.training.observers import EvalRecord, RunObserver, outcome_of


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


def _maybe_inject_crash(training: Training) -> None:
    switches = settings.crash_switches()
    at, marker = switches.get(settings.CRASH_AT_STEP), switches.get(settings.CRASH_MARKER)
    if at and marker and training.rank == int(switches.get(settings.CRASH_RANK, "0")):
        training.step_fn = _CrashOnce(training.step_fn, training.step, int(at), Path(marker))


def replica_param_spread(training: Training) -> float:
    """The largest difference of any G or D parameter between ranks: 0 when DDP keeps replicas in step.

    A collective: every rank must call it at the same point.
    """
    import torch
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


def train_worker(loop_config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs: the core loop, reporting each eval to Ray."""
    cfg = validate_config(loop_config["config"])
    objective = Objective(*loop_config["objective"])
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    training = build_training(
        cfg,
        device=device,
        rank=rank,
        world_size=world_size,
        wrap_model=lambda m: ray.train.torch.prepare_model(m, move_to_device=device),
    )
    history: list[dict[str, float]] = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory, map_location=device)
        training.load_state_dict(state)
        history = list(state.get("history", []))
    _maybe_inject_crash(training)
    evaluator = default_evaluator(cfg, device) if rank == 0 else None
    try:
        for report in run_loop(training, evaluator, objective=objective):
            metrics = dict(report.metrics)
            if world_size > 1:
                metrics["replica_param_spread"] = replica_param_spread(training)
            if rank != 0:
                ray.train.report(metrics)
                continue
            history.append(metrics)
            with tempfile.TemporaryDirectory() as tmp:
                write_run_state(tmp, training.state_dict(history), report.samples_of(training), cfg)
                ray.train.report(
                    metrics,
                    checkpoint=ray.train.Checkpoint.from_directory(tmp),
                    checkpoint_dir_name=f"checkpoint_{report.step:08d}",
                )
    except DivergedError as err:
        # Every rank sees the same averaged losses, so all of them end here at the same eval. The
        # objective is NaN, which Optuna records as a failed trial (inf would count as a real value).
        ray.train.report({**err.metrics, "step": err.step, "diverged": 1.0, "objective": math.nan})


@dataclass
class RayTrainResult:
    config: GanConfig
    metrics: dict[str, Any]
    path: str
    checkpoint_path: str | None = None
    best_checkpoint_path: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return bool(self.metrics.get("diverged"))


@contextlib.contextmanager
def checkpoint_folder(path: str) -> Iterator[Path]:
    """A Ray checkpoint (local, or on S3 and the like) as a local run-state folder, for as long as needed."""
    with ray.train.Checkpoint(path).as_directory() as directory:
        yield Path(directory)


def make_trainer(
    cfg: GanConfig,
    name: str,
    storage_path: str | None = None,
    callbacks: list | None = None,
    objective: Objective | None = None,
):
    """The TorchTrainer for ``cfg`` (not started): resources, failures and checkpoints from the config.

    ``objective`` is reported as ``objective`` and keeps the best checkpoint; default the dataset's.
    """
    from ray.train.torch import TorchConfig, TorchTrainer

    s = cfg.scaling
    resources: dict[str, float] = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    objective = objective or cfg.data.info.objective
    env = settings.crash_switches()
    return TorchTrainer(
        train_worker,
        train_loop_config={
            "config": cfg.model_dump(mode="json"),
            "objective": [objective.metric, objective.mode],
        },
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path or s.storage_path or settings.storage_path(),
            failure_config=ray.train.FailureConfig(max_failures=s.max_failures),
            # Keeps the best checkpoint by the objective; Ray always keeps the latest as well.
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute="objective", checkpoint_score_order=objective.mode
            ),
            callbacks=callbacks or [],
            worker_runtime_env={"env_vars": env} if env else None,
        ),
    )


def check_cluster(cfg: GanConfig, name: str | None = None) -> None:
    """Connect to (or start) Ray and refuse a run whose workers the cluster could never hold."""
    connect()
    check_fits(cfg.scaling, cluster_capacity(), f"run {name or cfg.name!r}")


class ObserverCallback(UserCallback):
    """A Ray Train callback handing rank 0's reports to an observer, as run-state folders.

    It runs in the Train controller (another process): the observer travels there pickled, started.
    """

    def __init__(self, observer: RunObserver):
        self.observer = observer

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        result = dict(metrics[0])
        if "step" not in result or result.get("diverged"):
            return
        if checkpoint is None:
            self.observer.on_eval(EvalRecord(int(result["step"]), result))
            return
        with checkpoint_folder(checkpoint.path) as folder:
            self.observer.on_eval(EvalRecord(int(result["step"]), result, folder))


def fit(
    cfg: GanConfig,
    *,
    name: str | None = None,
    storage_path: str | None = None,
    observer: RunObserver | None = None,
) -> RayTrainResult:
    """Run ``cfg`` under Ray Train and wait for it; a finished run of the same name resumes from its checkpoint.

    ``observer`` hears of the start, of every eval and of the end (completed, diverged, failed, killed).
    """
    check_cluster(cfg, name)
    if observer is not None:
        observer.start(cfg)
    callbacks = [ObserverCallback(observer)] if observer is not None else []
    out: RayTrainResult | None = None
    error: BaseException | None = None
    try:
        result = make_trainer(cfg, name or cfg.name, storage_path, callbacks).fit()
        out = _result_of(cfg, result)
        return out
    except BaseException as err:
        error = err
        raise
    finally:
        if observer is not None:
            _end(observer, out, error)


def _result_of(cfg: GanConfig, result) -> RayTrainResult:
    out = RayTrainResult(cfg, dict(result.metrics or {}), str(result.path))
    if result.checkpoint is not None:
        out.checkpoint_path = result.checkpoint.path
        with result.checkpoint.as_directory() as directory:
            out.history = list(load_checkpoint(directory).get("history", []))
    best = cfg.data.info.objective.best_of(result.best_checkpoints or [], lambda cm: cm[1].get("objective"))
    if best is not None:
        out.best_checkpoint_path = best[0].path
    return out


def _end(observer: RunObserver, out: RayTrainResult | None, error: BaseException | None) -> None:
    if error is None and out is not None and out.diverged:
        numbers = {k: float(v) for k, v in out.metrics.items() if isinstance(v, (int, float))}
        error = DivergedError(int(out.metrics.get("step", 0)), numbers)
    history = out.history if out is not None else []
    if out is None or out.checkpoint_path is None:
        observer.end(outcome_of(error, history, None))
        return
    with checkpoint_folder(out.checkpoint_path) as folder:
        observer.end(outcome_of(error, history, folder))
