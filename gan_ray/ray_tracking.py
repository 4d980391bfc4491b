"""MLflow for Ray runs, logged from the driver side so Train workers need no MLflow access.

:class:`SweepTracker` is a Ray Tune callback: the sweep is a parent run, each trial a child run fed
by the trial's eval reports (each with the checkpoint that holds the step's sample image).
:class:`TrainRunTracker` is a Ray Train callback doing the same for one ``gan-ray train --workers N``.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.train import UserCallback
from ray.tune import Callback

from gan_ray.config import config_yaml
from gan_ray.search_space import SearchSpace
from gan_ray.tracking import (
    TAG_DATASET,
    TAG_ERROR,
    TAG_LOSS,
    TAG_STATUS,
    ensure_experiment,
    log_config,
    make_client,
)
from gan_ray.visualize import save_loss_curves

if TYPE_CHECKING:
    from gan_ray.tuning import TrialSummary

TAG_TRIAL_ID = "gan_ray.trial_id"
TAG_STUDY = "gan_ray.study"
_SKIP_METRICS = {
    "step",
    "checkpoint_path",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "timestamp",
}


@dataclass
class TrialRecord:
    trial_id: str
    run_id: str
    params: dict[str, Any]
    total_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    error: str | None = None


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def log_report(client, run_id: str, result: dict[str, Any]) -> None:
    """One eval report: every finite numeric metric at its step, and the step's sample image."""
    from mlflow.entities import Metric

    step = int(result["step"])
    now = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), now, step)
        for k, v in result.items()
        if k not in _SKIP_METRICS and not k.startswith("config") and _finite_number(v)
    ]
    client.log_batch(run_id, metrics=metrics)
    checkpoint = result.get("checkpoint_path")
    if checkpoint:
        _log_samples(client, run_id, checkpoint, step)


def _log_samples(client, run_id: str, checkpoint_path: str, step: int) -> None:
    from ray.train import Checkpoint

    from gan_ray.distributed import SAMPLES_FILE

    try:
        with Checkpoint(checkpoint_path).as_directory() as directory:
            image = Path(directory) / SAMPLES_FILE
            if image.is_file():
                with tempfile.TemporaryDirectory() as tmp:
                    named = Path(tmp) / f"step_{step:07d}.png"
                    named.write_bytes(image.read_bytes())
                    client.log_artifact(run_id, str(named), "samples")
    except FileNotFoundError:
        pass  # a checkpoint the keep-policy already deleted


def start_run(client, experiment_id: str, cfg, run_name: str, tags: dict[str, str]) -> str:
    """A run with the config's params (only the applicable loss parameters) and config.yaml."""
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={TAG_LOSS: cfg.loss.name, TAG_DATASET: cfg.data.name, TAG_STATUS: "running", **tags},
    )
    log_config(client, run.info.run_id, cfg)
    return run.info.run_id


def end_run(
    client, run_id: str, status: str, history: list[dict[str, Any]], error: str | None = None
) -> None:
    """Status tag, loss curves, and the MLflow run status (FAILED for diverged and failed runs)."""
    client.set_tag(run_id, TAG_STATUS, status)
    if error:
        client.set_tag(run_id, TAG_ERROR, error[:5000])
    curves = [h for h in history if "loss_d" in h and "loss_g" in h and "step" in h]
    if curves:
        with tempfile.TemporaryDirectory() as tmp:
            client.log_artifact(run_id, str(save_loss_curves(curves, Path(tmp) / "loss_curves.png")))
    client.set_terminated(run_id, "FAILED" if status in ("diverged", "failed") else "FINISHED")


def log_checkpoint_generator(client_uri: str, run_id: str, checkpoint_path: str, cfg) -> str:
    """Log the generator held by a Ray checkpoint (local or remote) as an MLflow model of ``run_id``."""
    from ray.train import Checkpoint

    from gan_ray.checkpoint import load_checkpoint
    from gan_ray.models import generator_from_state
    from gan_ray.registry import log_generator

    with Checkpoint(checkpoint_path).as_directory() as directory:
        state = load_checkpoint(directory)
    generator = generator_from_state(cfg, state["generator"])
    return log_generator(generator, cfg, run_id, client_uri, step=int(state["step"]))


class TrainRunTracker(UserCallback):
    """Logs one Ray Train run's reports (rank 0's) into an existing MLflow run, from the Train controller."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.tracking_uri, self.run_id = tracking_uri, run_id

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        result = dict(metrics[0])
        if "step" not in result:
            return
        if checkpoint is not None:
            result["checkpoint_path"] = checkpoint.path
        log_report(make_client(self.tracking_uri), self.run_id, result)


class SweepTracker(Callback):
    """Creates the parent run at construction; a child run per trial; summary at :meth:`finish`."""

    def __init__(self, tracking_uri: str, space: SearchSpace, study_name: str, experiment: str | None = None):
        self.tracking_uri = tracking_uri
        self.space = space
        self.study_name = study_name
        self.client = make_client(tracking_uri)
        self.experiment_id = ensure_experiment(self.client, experiment or space.name, tracking_uri)
        parent = self.client.create_run(
            self.experiment_id,
            run_name=study_name,
            tags={TAG_STUDY: study_name, TAG_DATASET: space.base.data.name, "gan_ray.kind": "sweep"},
        )
        self.parent_run_id = parent.info.run_id
        for key, value in {
            "sweep.name": space.name,
            "sweep.study": study_name,
            "sweep.metric": space.metric,
            "sweep.mode": space.mode,
            "sweep.sampler": space.sampler,
            "sweep.scheduler": space.scheduler,
            "sweep.num_samples": space.budget.num_samples,
        }.items():
            self.client.log_param(self.parent_run_id, key, str(value))
        if space.source is not None and space.source.is_file():
            self.client.log_artifact(self.parent_run_id, str(space.source))
        self.client.log_text(self.parent_run_id, config_yaml(space.base), "base_config.yaml")
        self.trials: dict[str, TrialRecord] = {}

    # --- Tune callback hooks (called in the driver process) -------------------------------------

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        if trial.trial_id in self.trials:
            return
        values = self.space.resolve(trial.config)
        cfg = self.space.trial_config(values)
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            TAG_TRIAL_ID: trial.trial_id,
            TAG_STUDY: self.study_name,
        }
        run_id = start_run(self.client, self.experiment_id, cfg, f"trial-{trial.trial_id}", tags)
        self.trials[trial.trial_id] = TrialRecord(trial.trial_id, run_id, values, cfg.train.steps)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None or "step" not in result:
            return
        record.history.append({k: v for k, v in result.items() if k in _KEEP or k == self.space.metric})
        log_report(self.client, record.run_id, result)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None:
            return
        last = record.history[-1] if record.history else {}
        if last.get("diverged"):
            record.status = "diverged"
        elif int(last.get("step", 0)) < record.total_steps:
            record.status = "stopped_early"
        else:
            record.status = "completed"
        end_run(self.client, record.run_id, record.status, record.history, record.error)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None:
            return
        last = record.history[-1] if record.history else {}
        record.status = "diverged" if last.get("diverged") else "failed"
        error_file = getattr(trial, "error_file", None)
        if error_file and Path(error_file).is_file():
            record.error = Path(error_file).read_text()[-4000:]
        end_run(self.client, record.run_id, record.status, record.history, record.error)

    def finish(
        self, summary_rows: list[dict[str, Any]], best: TrialSummary | None, status: str = "FINISHED"
    ) -> None:
        """Log the all-trials table and the best trial to the parent run, and end it."""
        if summary_rows:
            keys = sorted({k for row in summary_rows for k in row})
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=keys)
            writer.writeheader()
            writer.writerows(summary_rows)
            self.client.log_text(self.parent_run_id, buffer.getvalue(), "trials.csv")
        if best is not None:
            for key, value in best.params.items():
                self.client.log_param(self.parent_run_id, f"best.{key}", str(value))
            self.client.log_param(self.parent_run_id, "best.trial_id", best.trial_id)
            # Chosen only among finite objectives (tuning._best_of).
            self.client.log_metric(self.parent_run_id, f"best_{self.space.metric}", best.best_objective)
        self.client.set_terminated(self.parent_run_id, status)


_KEEP = {"step", "loss_d", "loss_g", "objective", "diverged", "checkpoint_path"}
