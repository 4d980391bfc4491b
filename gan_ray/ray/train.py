"""Ray Train layer: the core's alternating loop as PyTorch DDP across Ray workers (gloo on CPU, NCCL on GPU).

Batch semantics: ``train.batch_size`` is *per worker*, so N workers train with a global batch of
N x batch_size and DDP averages G's and D's gradients over it. Each rank draws its own noise and
its own shard of the real data. Scaling the global batch by N usually wants the learning rates
scaled too (linearly for small N, by sqrt(N) for Adam at large N); gan_ray leaves them as given.

Checkpoints are run-state folders (:mod:`gan_ray.training.checkpoint`) under ``storage_path/name``:
every eval, the best by the objective and the latest are kept. A run resumes from its latest one after
a lost worker (``scaling.max_failures``) and, with ``resume``, when started again under its name
(:func:`prepare_storage` has the rule).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray.train
from ray.train import UserCallback

from gan_ray import settings
from gan_ray.config import GanConfig
from gan_ray.errors import ConfigError
from gan_ray.objective import Objective
from gan_ray.ray.cluster import check_fits, cluster_capacity, connect
from gan_ray.ray.storage import exists
from gan_ray.ray.worker import train_worker
from gan_ray.training.checkpoint import CHECKPOINT_FILE, read_divergence
from gan_ray.training.driver import check_resume, fresh_start_line, loop_config
from gan_ray.training.observers import EvalRecord, RunObserver
from gan_ray.training.result import RunResult, result_of, run_outcome

#: The file Ray Train V2 resumes a run of the same (storage_path, name) from, when it finds it there.
RAY_RUN_SNAPSHOT = "checkpoint_manager_snapshot.json"


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
    warn: bool = True,
):
    """The TorchTrainer for ``cfg`` (not started): resources, failures and checkpoints from the config.

    ``objective`` is reported as ``objective`` and keeps the best checkpoint; default the dataset's.
    ``warn``: rank 0 prints the health warnings (a sweep prints its trials' own). Under the same
    ``(storage_path, name)`` as an earlier run, Ray resumes it: :func:`prepare_storage` first.
    """
    from ray.train.torch import TorchConfig, TorchTrainer

    s = cfg.scaling
    resources: dict[str, float] = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    objective = objective or cfg.objective
    env = settings.test_switches()
    return TorchTrainer(
        train_worker,
        train_loop_config=loop_config(cfg, objective, warn=warn),
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


def prepare_storage(cfg: GanConfig, storage_path: str, name: str, resume: bool) -> None:
    """The resume rule of every run (a local one's too): ``resume`` continues the latest checkpoint of
    run ``name``, checked here before any worker starts (workers check again when they load it, which
    covers remote storage); without it the run starts afresh.

    Ray itself resumes any run whose name already has a run snapshot in the storage, so a fresh start
    must not find one there. On a local disk the earlier run's folder is removed with a printed line, as
    a local run overwrites its output folder. Remote storage (S3 and the like, shared by a cluster's
    runs and sweeps) is never deleted from here: such a start is refused in one line instead.
    """
    if resume:
        check_resume(cfg, latest_checkpoint(storage_path, name), name)
        return
    run_dir = f"{storage_path.rstrip('/')}/{name}"
    if not exists(f"{run_dir}/{RAY_RUN_SNAPSHOT}"):
        return
    if "://" in storage_path:
        raise ConfigError(
            f"run {name!r} already has checkpoints in {run_dir}: pass --resume (resume=True) to continue "
            "it, or give the run another name"
        )
    shutil.rmtree(run_dir)
    print(fresh_start_line(name, run_dir), file=sys.stderr, flush=True)


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
    resume: bool = False,
) -> RunResult:
    """Run ``cfg`` under Ray Train and wait for it. ``resume`` continues the latest checkpoint of the run's
    name; without it the run starts afresh (:func:`prepare_storage`).

    ``observer`` hears of the start, of every eval and of the end (completed, collapsed, diverged,
    failed, killed). Rank 0 prints the health warnings (:func:`gan_ray.training.driver.run_worker`).
    """
    name = name or cfg.name
    check_cluster(cfg, name)
    prepare_storage(cfg, cfg.scaling.storage(storage_path), name, resume)
    if observer is not None:
        observer.start(cfg)
    callbacks = [ObserverCallback(observer)] if observer is not None else []
    out: RunResult | None = None
    error: BaseException | None = None
    try:
        out = _result_of(cfg, make_trainer(cfg, name, storage_path, callbacks).fit())
        return out
    except BaseException as err:
        error = err
        raise
    finally:
        if observer is not None:
            _end(observer, out, error)


def _result_of(cfg: GanConfig, result) -> RunResult:
    """What a finished Train run left: its latest checkpoint (a model's, or a divergence record, and
    then the best model is the last one kept) and its best by the objective."""
    models = [(c, m) for c, m in result.best_checkpoints or [] if not m.get("diverged")]
    best = cfg.objective.best_of(models, lambda cm: cm[1].get("objective"))
    best_path = best[0].path if best is not None else None
    latest = result.checkpoint
    if latest is None:
        return result_of(cfg, str(result.path), None, None, best_path, result.metrics)
    with latest.as_directory() as directory:
        return result_of(cfg, str(result.path), Path(directory), latest.path, best_path, result.metrics)


def _end(observer: RunObserver, out: RunResult | None, error: BaseException | None) -> None:
    if out is None or out.checkpoint is None:
        observer.end(run_outcome(out, error, None))
        return
    with checkpoint_folder(out.checkpoint) as folder:
        observer.end(run_outcome(out, error, folder))
