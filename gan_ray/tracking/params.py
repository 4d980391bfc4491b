"""What a run's config and metrics look like in MLflow: dotted params, ``config.yaml``, finite metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gan_ray.config import GanConfig, config_yaml
from gan_ray.tracking.store import BATCH, MAX_PARAM_LENGTH

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Report keys that are not metrics (the step is MLflow's x axis, the rest is bookkeeping).
NOT_METRICS = frozenset({"step", "checkpoint_path", "diverged"})


def run_params(cfg: GanConfig) -> dict[str, str]:
    """The config as MLflow params: dotted keys, only the current loss's parameters, None left out."""
    return {k: str(v)[:MAX_PARAM_LENGTH] for k, v in cfg.flat().items() if v is not None}


def log_config(client: MlflowClient, run_id: str, cfg: GanConfig) -> None:
    """The config as params (:func:`run_params`, in batches MLflow accepts) and as ``config.yaml``."""
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in run_params(cfg).items()]
    for i in range(0, len(params), BATCH):
        client.log_batch(run_id, params=params[i : i + BATCH])
    client.log_text(run_id, config_yaml(cfg), "config.yaml")


def finite_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's finite numbers that are metrics (a NaN would poison MLflow's charts)."""
    return {
        k: float(v)
        for k, v in report.items()
        if k not in NOT_METRICS
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    }


def log_metrics(client: MlflowClient, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
    """``metrics`` at ``step``, in as few requests as MLflow allows."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(k, v, now, step) for k, v in metrics.items()]
    for i in range(0, len(points), BATCH):
        client.log_batch(run_id, metrics=points[i : i + BATCH])
