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
):
    """Train one GAN from a config object or YAML path.

    In this process (``backend="local"``: returns a :class:`gan_ray.runner.TrainResult`) or under Ray
    Train with ``workers`` data-parallel workers (``backend="ray"``, or ``auto`` with several workers
    or a GPU: returns a :class:`gan_ray.distributed.RayTrainResult`). Bad configs and missing datasets
    fail here, before Ray or any worker starts.
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
    if uses_ray(cfg, backend):
        from gan_ray.distributed import fit

        return fit(cfg)
    from gan_ray.runner import train as train_local

    return train_local(cfg, resume=resume, verbose=verbose)
