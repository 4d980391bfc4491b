"""Ray Train layer: the core's alternating loop as PyTorch DDP across Ray workers (gloo on CPU, NCCL on GPU).

Batch semantics: ``train.batch_size`` is *per worker*, so N workers train with a global batch of
N x batch_size and DDP averages G's and D's gradients over it. Each rank draws its own noise and
its own shard of the real data. Scaling the global batch by N usually wants the learning rates
scaled too (linearly for small N, by sqrt(N) for Adam at large N); gan_ray leaves them as given.

Checkpoints go to ``storage_path/name``: every eval, the best by the search objective and the
latest are kept. The same (storage_path, name) resumes from the latest checkpoint.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gan_ray.checkpoint import load_checkpoint, save_checkpoint
from gan_ray.config import GanConfig, config_yaml, validate_config
from gan_ray.loop import DivergedError, EvalReport, Training, build_training, default_evaluator, run_loop
from gan_ray.metrics import objective_for
from gan_ray.visualize import save_samples

# Test-only fault injection: the worker of rank CRASH_RANK exits abruptly when it reaches step
# CRASH_AT_STEP, once (the marker file records that it happened).
CRASH_AT_STEP_ENV = "GAN_RAY_TEST_CRASH_AT_STEP"
CRASH_MARKER_ENV = "GAN_RAY_TEST_CRASH_MARKER"
CRASH_RANK_ENV = "GAN_RAY_TEST_CRASH_RANK"
_FORWARDED_ENV = (CRASH_AT_STEP_ENV, CRASH_MARKER_ENV, CRASH_RANK_ENV)

SAMPLES_FILE = "samples.png"
CONFIG_FILE = "config.yaml"


def default_storage_path() -> str:
    """``$GAN_RAY_STORAGE`` (e.g. ``s3://bucket/ray-results`` on a cluster), else ``./ray_results``."""
    return os.environ.get("GAN_RAY_STORAGE") or str(Path("ray_results").resolve())


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
    at = os.environ.get(CRASH_AT_STEP_ENV)
    marker = os.environ.get(CRASH_MARKER_ENV)
    if at and marker and training.rank == int(os.environ.get(CRASH_RANK_ENV, "0")):
        training.step_fn = _CrashOnce(training.step_fn, training.step, int(at), Path(marker))


def replica_param_spread(training: Training) -> float:
    """The largest difference of any G or D parameter between ranks: 0 when DDP keeps replicas in step.

    A collective: every rank must call it at the same point.
    """
    import torch
    import torch.distributed as dist

    from gan_ray.step import unwrap

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


def _checkpoint_dir(
    training: Training, report: EvalReport, history: list[dict[str, float]], directory: Path
) -> None:
    save_checkpoint(
        directory,
        {**training.state_dict(), "history": history, "hyperparameters": training.hyperparameters()},
    )
    save_samples(report.samples_of(training), directory / SAMPLES_FILE, training.config.data.name)
    (directory / CONFIG_FILE).write_text(config_yaml(training.config))


def train_worker(loop_config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs: the core loop, reporting each eval to Ray."""
    import ray.train
    import ray.train.torch

    cfg = validate_config(loop_config["config"])
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
    metric, _ = loop_config.get("objective") or objective_for(cfg.data.name)
    try:
        for report in run_loop(training, evaluator, objective=metric):
            metrics = dict(report.metrics)
            if world_size > 1:
                metrics["replica_param_spread"] = replica_param_spread(training)
            if rank != 0:
                ray.train.report(metrics)
                continue
            history.append(metrics)
            with tempfile.TemporaryDirectory() as tmp:
                _checkpoint_dir(training, report, history, Path(tmp))
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


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect to the cluster at ``$RAY_ADDRESS`` or start a local Ray, once per process."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, num_cpus=num_cpus, log_to_driver=True)


def make_trainer(
    cfg: GanConfig,
    name: str,
    storage_path: str | None = None,
    callbacks: list | None = None,
    objective: tuple[str, str] | None = None,
):
    """The TorchTrainer for ``cfg`` (not started): resources, failures and checkpoints from the config.

    ``objective`` is (metric, "min"|"max"), reported as ``objective`` and used to keep the best
    checkpoint; default the dataset's (see :func:`gan_ray.metrics.objective_for`).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    s = cfg.scaling
    resources: dict[str, float] = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    objective = objective or objective_for(cfg.data.name)
    mode = objective[1]
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    return TorchTrainer(
        train_worker,
        train_loop_config={"config": cfg.model_dump(mode="json"), "objective": list(objective)},
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path or s.storage_path or default_storage_path(),
            failure_config=ray.train.FailureConfig(max_failures=s.max_failures),
            # Keeps the best checkpoint by the objective; Ray always keeps the latest as well.
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute="objective", checkpoint_score_order=mode
            ),
            callbacks=callbacks or [],
            worker_runtime_env={"env_vars": env} if env else None,
        ),
    )


def check_cluster(cfg: GanConfig, name: str | None = None) -> None:
    """Connect to (or start) Ray and refuse a run whose workers the cluster could never hold."""
    from gan_ray.cluster import check_fits, cluster_capacity

    ensure_ray()
    check_fits(cfg.scaling, cluster_capacity(), f"run {name or cfg.name!r}")


def fit(
    cfg: GanConfig, *, name: str | None = None, storage_path: str | None = None, callbacks: list | None = None
) -> RayTrainResult:
    """Run ``cfg`` under Ray Train and wait for it; a finished run of the same name resumes from its checkpoint."""
    check_cluster(cfg, name)
    trainer = make_trainer(cfg, name or cfg.name, storage_path, callbacks)
    result = trainer.fit()
    out = RayTrainResult(cfg, dict(result.metrics or {}), str(result.path))
    if result.checkpoint is not None:
        out.checkpoint_path = result.checkpoint.path
        with result.checkpoint.as_directory() as directory:
            out.history = list(load_checkpoint(directory).get("history", []))
    best = result.best_checkpoints
    if best:
        _, mode = objective_for(cfg.data.name)
        pick = min if mode == "min" else max
        out.best_checkpoint_path = pick(best, key=lambda cm: cm[1].get("objective", math.inf))[0].path
    return out


def checkpoint_config(path: str) -> GanConfig:
    """The config a checkpoint was trained with."""
    return validate_config(load_checkpoint(path)["config"])
