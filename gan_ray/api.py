"""The public entry points; the CLI maps one-to-one onto these."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from gan_ray.config import GanConfig, load_config
from gan_ray.datasets import check_available

Backend = Literal["auto", "local", "ray"]


def _as_config(config: GanConfig | str | Path) -> GanConfig:
    return config if isinstance(config, GanConfig) else load_config(config)


def uses_ray(cfg: GanConfig, backend: Backend = "auto") -> bool:
    """``auto`` runs under Ray Train when the config asks for several workers or GPUs, or a cluster is set."""
    if backend != "auto":
        return backend == "ray"
    return cfg.scaling.num_workers > 1 or cfg.scaling.use_gpu or bool(os.environ.get("RAY_ADDRESS"))


def train(
    config: GanConfig | str | Path,
    *,
    workers: int | None = None,
    gpu: bool | None = None,
    backend: Backend = "auto",
    resume: bool = False,
    verbose: bool = True,
    tracking: bool = True,
    tracking_uri: str | None = None,
):
    """Train one GAN from a config object or YAML path.

    In this process (``backend="local"``: returns a :class:`gan_ray.runner.TrainResult`) or under Ray
    Train with ``workers`` data-parallel workers (``backend="ray"``, or ``auto`` with several workers
    or a GPU: returns a :class:`gan_ray.distributed.RayTrainResult`). Bad configs and missing datasets
    fail here, before Ray or any worker starts.

    With ``tracking`` (the default) the run is recorded as one MLflow run in experiment ``config.name``
    at ``tracking_uri`` (default ``$MLFLOW_TRACKING_URI`` or ``./mlflow.db``); an unreachable
    tracking server fails here too.
    """
    cfg = _as_config(config)
    overrides: dict[str, object] = {}
    if workers is not None:
        overrides["scaling.num_workers"] = workers
    if gpu is not None:
        overrides["scaling.use_gpu"] = gpu
    if overrides:
        cfg = cfg.with_overrides(overrides)
    check_available(cfg.data)
    if workers is not None or gpu:
        backend = "ray" if backend == "auto" else backend
    if tracking:
        from gan_ray.tracking import check_tracking_server, resolve_tracking_uri

        tracking_uri = resolve_tracking_uri(tracking_uri)
        check_tracking_server(tracking_uri)
    if uses_ray(cfg, backend):
        return _train_ray(cfg, tracking_uri if tracking else None)
    from gan_ray.runner import train as train_local
    from gan_ray.tracking import tracked_observers

    observers = tracked_observers(cfg, tracking_uri) if tracking else []
    return train_local(cfg, resume=resume, verbose=verbose, observers=observers)


def _train_ray(cfg: GanConfig, tracking_uri: str | None):
    from gan_ray.distributed import check_cluster, fit

    if tracking_uri is None:
        return fit(cfg)
    check_cluster(cfg)  # before an MLflow run exists for a run that could never start (fit checks again)
    from gan_ray.ray_tracking import TrainRunTracker, end_run, log_checkpoint_generator, start_run
    from gan_ray.tracking import ensure_experiment, make_client

    client = make_client(tracking_uri)
    run_id = start_run(client, ensure_experiment(client, cfg.name, tracking_uri), cfg, cfg.name, {})
    status, error = "failed", None
    result = None
    try:
        result = fit(cfg, callbacks=[TrainRunTracker(tracking_uri, run_id)])
        status = "diverged" if result.diverged else "completed"
        if not result.diverged and result.checkpoint_path:
            log_checkpoint_generator(tracking_uri, run_id, result.checkpoint_path, cfg)
        return result
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
        raise
    finally:
        end_run(client, run_id, status, result.history if result else [], error)
