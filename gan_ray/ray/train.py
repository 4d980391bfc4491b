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
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray.train
from ray.train import UserCallback

from gan_ray import settings
from gan_ray.config import GanConfig, check_resumable
from gan_ray.errors import DivergedError
from gan_ray.objective import Objective
from gan_ray.ray.cluster import check_fits, cluster_capacity, connect
from gan_ray.ray.worker import loop_config, refuse_diverged, train_worker
from gan_ray.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, read_divergence
from gan_ray.training.health import health_warning
from gan_ray.training.observers import EvalRecord, RunObserver, RunStatus, final_status, outcome_of


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

    @property
    def status(self) -> RunStatus:
        """``diverged``, ``collapsed`` (its last eval's health was not ok) or ``completed``."""
        return "diverged" if self.diverged else final_status("completed", self.history)


@contextlib.contextmanager
def checkpoint_folder(path: str) -> Iterator[Path]:
    """A Ray checkpoint (local, or on S3 and the like) as a local run-state folder, for as long as needed."""
    with ray.train.Checkpoint(path).as_directory() as directory:
        yield Path(directory)


def checkpoint_exists(path: str) -> bool:
    """Whether the Ray checkpoint at ``path`` (local, or on S3 and the like) is still there."""
    import pyarrow.fs

    checkpoint = ray.train.Checkpoint(path)
    return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound


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
    objective = objective or cfg.objective
    env = settings.crash_switches()
    return TorchTrainer(
        train_worker,
        train_loop_config=loop_config(cfg, objective),
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=s.storage(storage_path),
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


def latest_checkpoint(storage_path: str, name: str) -> Path | None:
    """The newest checkpoint folder of run ``name`` under a local ``storage_path`` (None if none, or remote)."""
    if "://" in storage_path:
        return None
    folders = sorted(Path(storage_path, name).glob("checkpoint_*"))
    return next((f for f in reversed(folders) if (f / CHECKPOINT_FILE).is_file() or read_divergence(f)), None)


def check_resume(cfg: GanConfig, storage_path: str, name: str) -> None:
    """Refuse, before any worker starts, to resume run ``name`` if it diverged, or under a config that
    changes its game. (Workers check again when they load the checkpoint, which covers remote storage.)
    """
    folder = latest_checkpoint(storage_path, name)
    if folder is not None:
        refuse_diverged(folder, name)
        check_resumable(load_checkpoint(folder)["config"], cfg, f" run {name!r} from {folder}")


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

    ``observer`` hears of the start, of every eval and of the end (completed, collapsed, diverged,
    failed, killed). A run that ends collapsed says so in a warning line.
    """
    check_cluster(cfg, name)
    check_resume(cfg, cfg.scaling.storage(storage_path), name or cfg.name)
    if observer is not None:
        observer.start(cfg)
    callbacks = [ObserverCallback(observer)] if observer is not None else []
    out: RayTrainResult | None = None
    error: BaseException | None = None
    try:
        result = make_trainer(cfg, name or cfg.name, storage_path, callbacks).fit()
        out = _result_of(cfg, result)
        if out.status == "collapsed":
            last = out.history[-1]
            warning = health_warning(name or cfg.name, int(last["step"]), last, ended=True)
            print(warning, file=sys.stderr, flush=True)
        return out
    except BaseException as err:
        error = err
        raise
    finally:
        if observer is not None:
            _end(observer, out, error)


def _result_of(cfg: GanConfig, result) -> RayTrainResult:
    """What a finished Train run left: its latest checkpoint (a model's, or a divergence record, and
    then the best model is the last one kept) and its best by the objective."""
    out = RayTrainResult(cfg, dict(result.metrics or {}), str(result.path))
    models = [(c, m) for c, m in result.best_checkpoints or [] if not m.get("diverged")]
    best = cfg.objective.best_of(models, lambda cm: cm[1].get("objective"))
    if best is not None:
        out.best_checkpoint_path = best[0].path
    latest = result.checkpoint
    if latest is None:
        return out
    with latest.as_directory() as directory:
        record = read_divergence(directory)
        if record is None:
            out.checkpoint_path = latest.path
            out.history = list(load_checkpoint(directory).get("history", []))
            return out
    out.history = record["history"]
    out.checkpoint_path = out.best_checkpoint_path
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
