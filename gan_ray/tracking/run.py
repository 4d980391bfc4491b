"""The one MLflow run lifecycle, for local runs, Ray Train runs and sweep trials alike.

:class:`MlflowRun` is a :class:`~gan_ray.training.observers.RunObserver`: ``start`` creates the run
(tags, params, ``config.yaml``), ``on_eval`` logs the eval's metrics, the best objective so far (where
it improved), its health (a tag, where it changed) and its sample grid (``log_image``, keyed by step),
``end`` logs the outcome (status, health and error tags, loss curves,
the checkpoint, the generator as a model) and ends the run FINISHED, FAILED or KILLED. MLflow
failures at the end never hide a training error.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan_ray.config import GanConfig
from gan_ray.data.catalog import REFERENCE_FILE_KEY, REFERENCE_KEY
from gan_ray.objective import Objective
from gan_ray.search.trials import Clone
from gan_ray.tracking.model import log_generator_from_folder
from gan_ray.tracking.params import finite_metrics, log_config, log_metrics
from gan_ray.tracking.store import (
    BATCH,
    TAG_BEST_CHECKPOINT,
    TAG_DATASET,
    TAG_DIVERGED_AT,
    TAG_ERROR,
    TAG_FEATURE_EXTRACTOR,
    TAG_HEALTH,
    TAG_KIND,
    TAG_LOSS,
    TAG_MODEL_FAMILY,
    TAG_MODEL_URI,
    TAG_NOTE,
    TAG_PARENT_RUN,
    TAG_PBT_CLONED_FROM,
    TAG_PBT_LINEAGE,
    TAG_PBT_PARAMS,
    TAG_REFERENCE,
    TAG_STATUS,
    check_tracking_server,
    clip,
    code_tags,
    ensure_experiment,
    make_client,
    resolve_tracking_uri,
)
from gan_ray.training.checkpoint import CHECKPOINT_FILE, SAMPLES_FILE
from gan_ray.training.health import explain
from gan_ray.training.observers import (
    CHECKPOINT_PATH,
    FINISHED,
    EvalRecord,
    RunOutcome,
    RunStatus,
    last_health,
)
from gan_ray.visualize import save_loss_curves

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from gan_ray.tracking.writer import TrackingWriter

_log = logging.getLogger(__name__)

#: A PBT trial's exploits so far, as a metric at the step of each: the runs table's column and a chart.
PBT_EXPLOITS = "pbt_exploits"
#: The prefix of the metrics holding a PBT trial's hyperparameters from each exploit on (params cannot
#: change once logged, so they keep the values the trial started with).
PBT_PARAM_PREFIX = "pbt."

#: The key of the sample grids logged with ``log_image``: MLflow keeps them under ``images/``.
SAMPLES_KEY = "samples"

#: gan_ray.status -> MLflow's run status
MLFLOW_STATUS: dict[RunStatus, str] = {
    "running": "RUNNING",
    "completed": "FINISHED",
    "stopped_early": "FINISHED",
    "collapsed": "FINISHED",  # it ran to its end; gan_ray.status and gan_ray.health say what it is worth
    "diverged": "FAILED",
    "failed": "FAILED",
    "killed": "KILLED",
}


class MlflowRun:
    """Records one training run as one MLflow run (see the module docstring).

    ``parent_run_id`` nests it under a sweep's parent run. ``objective`` (default: the dataset's) names
    the ``best_<metric>`` and ``best_<metric>_step`` metrics logged at every eval that reaches a new best. ``log_model`` logs the generator of the
    final checkpoint as an MLflow model when the run completed (not when it collapsed);
    ``log_checkpoint`` logs the checkpoint file itself (when at most ``checkpoint_max_mb``). A sweep's
    trials turn both off: their checkpoints stay in Ray's storage and the champion alone becomes a model.

    ``writer``: log through a :class:`~gan_ray.tracking.writer.TrackingWriter` (a sweep's trials): every
    call returns at once, the writes are retried and batched in the background, and a logging failure
    is a tagged loss rather than an error here.

    Picklable once started (the client is rebuilt where it lands, without the writer): a Ray Train
    callback carries it to the Train controller.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        *,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        objective: Objective | None = None,
        log_model: bool = True,
        log_checkpoint: bool = True,
        checkpoint_max_mb: float = 32.0,
        writer: TrackingWriter | None = None,
    ):
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.tags = dict(tags or {})
        self.objective = objective
        self.log_model = log_model
        self.log_checkpoint = log_checkpoint
        self.checkpoint_max_mb = checkpoint_max_mb
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.model_uri: str | None = None
        self._feature_extractor: str | None = None  # tagged once it is known (image runs)
        self._reference: str | None = None
        self._health: str | None = None  # the health tag as last set (tagged again only when it changes)
        self._best: float | None = None  # the objective's best value logged so far
        self._client: MlflowClient | None = None
        self._writer = writer

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_writer": None}

    @property
    def client(self) -> MlflowClient:
        if self._writer is not None:
            return self._writer.client  # type: ignore[return-value]
        if self._client is None:
            self._client = make_client(self.tracking_uri)
        return self._client

    def start(self, config: GanConfig) -> None:
        """Create the run and log the config. Idempotent."""
        if self.run_id is not None:
            return
        tags = {
            TAG_KIND: "run",
            TAG_LOSS: config.loss.name,
            TAG_DATASET: config.data.name,
            TAG_MODEL_FAMILY: config.model_name,
            TAG_STATUS: "running",
            **code_tags(),
            **self.tags,
        }
        if self.parent_run_id:
            tags[TAG_PARENT_RUN] = self.parent_run_id
        client = self.client
        self.experiment_id = ensure_experiment(client, self.experiment or config.name, self.tracking_uri)
        run = client.create_run(
            self.experiment_id, run_name=self.run_name, tags={k: clip(str(v)) for k, v in tags.items()}
        )
        self.run_id = run.info.run_id
        self.objective = self.objective or config.objective
        log_config(client, self.run_id, config)

    def on_eval(self, record: EvalRecord) -> None:
        """The eval's finite metrics at its step (and the best objective, where it improved), its health as
        a tag where it changed, and its sample grid as the step-keyed image ``samples`` (the UI's step
        slider, and side by side across runs)."""
        assert self.run_id is not None, "start() first"
        metrics = finite_metrics(record.metrics)
        best = self._best_so_far(record.step, metrics)
        log_metrics(self.client, self.run_id, record.step, {**metrics, **best})
        checkpoint = record.metrics.get(CHECKPOINT_PATH)
        if best and isinstance(checkpoint, str) and checkpoint:
            self.client.set_tag(self.run_id, TAG_BEST_CHECKPOINT, checkpoint)
        health = record.metrics.get("health")
        if isinstance(health, str) and health != self._health:
            self.client.set_tag(self.run_id, TAG_HEALTH, health)
            self._health = health
        extractor = record.metrics.get("feature_extractor")
        if isinstance(extractor, str) and extractor != self._feature_extractor:
            self.client.set_tag(self.run_id, TAG_FEATURE_EXTRACTOR, extractor)
            self._feature_extractor = extractor
        self._log_reference(record.metrics)
        image = record.folder / SAMPLES_FILE if record.folder is not None else None
        if image is not None and image.is_file():
            from PIL import Image

            with Image.open(image) as grid:
                grid.load()
                self.client.log_image(self.run_id, grid, key=SAMPLES_KEY, step=record.step)

    def _log_reference(self, report: Mapping[str, Any]) -> None:
        """The reference statistics' identity as a tag and, where this node holds it, the file of its real
        features as the artifact ``reference/`` (once a run: what scores its suite metrics)."""
        line = report.get(REFERENCE_KEY)
        if not isinstance(line, str) or line == self._reference:
            return
        self.client.set_tag(self.run_id, TAG_REFERENCE, line)
        self._reference = line
        file = report.get(REFERENCE_FILE_KEY)
        if isinstance(file, str) and Path(file).is_file():
            self.client.log_artifact(self.run_id, file, "reference")

    def on_clone(self, clone: Clone, lineage: tuple[Clone, ...]) -> None:
        """A PBT exploit: which trial's checkpoint (and step) this run continues from, as tags; how many
        exploits so far, and the numeric hyperparameters it goes on with, as metrics at the cloned step."""
        assert self.run_id is not None, "start() first"
        self.client.set_tag(self.run_id, TAG_PBT_CLONED_FROM, str(clone))
        self.client.set_tag(self.run_id, TAG_PBT_LINEAGE, clip(" > ".join(str(c) for c in lineage)))
        # All of them, the categorical ones too: a clone takes over its source's loss, noise and penalty.
        self.client.set_tag(self.run_id, TAG_PBT_PARAMS, clip(json.dumps(clone.params)))
        if "loss.name" in clone.params:
            self.client.set_tag(self.run_id, TAG_LOSS, str(clone.params["loss.name"]))
        numbers = {
            PBT_PARAM_PREFIX + k: float(v)
            for k, v in clone.params.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        log_metrics(self.client, self.run_id, clone.source_step, {PBT_EXPLOITS: len(lineage), **numbers})

    def _best_so_far(self, step: int, metrics: Mapping[str, float]) -> dict[str, float]:
        """``best_<metric>`` and ``best_<metric>_step`` where this eval reached the best value so far (the
        runs table shows a metric's latest value: so the best, not the last eval's).

        A tie counts as reaching it: the objective's rule gives ties to the later eval, and so names the
        step of the checkpoint a sweep keeps as the trial's best.
        """
        assert self.objective is not None
        metric = self.objective.metric
        value = metrics.get(metric)
        if value is None or (self._best is not None and self.objective.better(self._best, value)):
            return {}
        self._best = value
        return {f"best_{metric}": value, f"best_{metric}_step": float(step)}

    def end(self, outcome: RunOutcome) -> None:
        """Log the outcome and end the run. A logging failure is raised only if the run itself succeeded."""
        assert self.run_id is not None, "start() first"
        logging_error: Exception | None = None
        try:
            self._log_outcome(outcome)
        except Exception as err:  # the run must still be ended, and a training error must win
            logging_error = err
        finally:
            try:
                self.client.set_tag(self.run_id, TAG_STATUS, outcome.status)
                self.client.set_terminated(self.run_id, MLFLOW_STATUS[outcome.status])
            except Exception as err:
                logging_error = logging_error or err
        if logging_error is not None:
            if outcome.status in FINISHED:
                raise logging_error
            warnings.warn(
                f"MLflow logging at the end of run {self.run_id} failed: {logging_error}", stacklevel=2
            )

    def _log_outcome(self, outcome: RunOutcome) -> None:
        from mlflow.entities import RunTag

        tags = {}
        if outcome.history:  # the last eval's health, also where no on_eval was heard here (Ray Train)
            tags[TAG_HEALTH] = last_health(outcome.history)
        if outcome.status == "collapsed":
            # The UI shows MLflow's status (FINISHED) first: the Description says what the run is worth.
            last = outcome.history[-1]
            tags[TAG_NOTE] = (
                f"**Collapsed** at step {last.get('step')}: {explain(last_health(outcome.history), last)}. "
                "Its generator is not usable; a sweep never makes it the champion."
            )
        if outcome.error:
            tags[TAG_ERROR] = clip(outcome.error)
        if outcome.diverged_at is not None:
            tags[TAG_DIVERGED_AT] = str(outcome.diverged_at)
        for i in range(0, len(tags), BATCH):
            self.client.log_batch(
                self.run_id, tags=[RunTag(k, v) for k, v in list(tags.items())[i : i + BATCH]]
            )
        curve = [h for h in outcome.history if all(k in h for k in ("step", "loss_d", "loss_g"))]
        if curve:
            with tempfile.TemporaryDirectory() as tmp:
                self.client.log_artifact(
                    self.run_id, str(save_loss_curves(curve, Path(tmp) / "loss_curves.png"))
                )
        folder = outcome.folder
        if folder is None or not (folder / CHECKPOINT_FILE).is_file():
            return
        if self.log_checkpoint:
            self._log_checkpoint(folder / CHECKPOINT_FILE)
        if self.log_model and outcome.status == "completed":
            self.model_uri = log_generator_from_folder(folder, self.run_id, self.tracking_uri)
            self.client.set_tag(self.run_id, TAG_MODEL_URI, self.model_uri)

    def _log_checkpoint(self, checkpoint: Path) -> None:
        size_mb = checkpoint.stat().st_size / 2**20
        if size_mb <= self.checkpoint_max_mb:
            self.client.log_artifact(self.run_id, str(checkpoint), "checkpoint")
        else:
            _log.info(
                "checkpoint %s (%.0f MB) not logged: over %s MB", checkpoint, size_mb, self.checkpoint_max_mb
            )


def logged_sample_steps(client: MlflowClient, run_id: str) -> list[int]:
    """The steps of a run's sample grids, read from MLflow's file names for step-keyed images
    (``images/samples+step+N+timestamp+T+UUID.png``)."""
    prefix = f"images/{SAMPLES_KEY}+step+"
    paths = (a.path for a in client.list_artifacts(run_id, "images"))
    return sorted(
        int(p[len(prefix) :].split("+")[0]) for p in paths if p.startswith(prefix) and p.endswith(".png")
    )


def tracked_run(
    cfg: GanConfig,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    **options: Any,
) -> MlflowRun:
    """An :class:`MlflowRun` for ``cfg`` (experiment ``cfg.name`` by default), after checking that the
    tracking store can be reached: a :class:`~gan_ray.errors.TrackingUnavailableError` now, not later."""
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_server(uri)
    return MlflowRun(uri, experiment or cfg.name, run_name, **options)
