"""MLflow tracking for one training run: an observer that logs params, metrics, pictures and the outcome.

Every call goes through an ``MlflowClient`` with an explicit run id (never MLflow's global active
run), so several runs (a sweep's trials) can be logged from one process or thread at once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from gan_ray.config import GanConfig, config_yaml
from gan_ray.loop import DivergedError, EvalReport, Training
from gan_ray.visualize import save_loss_curves

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from gan_ray.runner import RunObserver, TrainResult

_log = logging.getLogger(__name__)

DEFAULT_DB_FILE = "mlflow.db"
# MLflow's own limits (mlflow.utils.validation): longer values are rejected, not truncated.
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
_BATCH = 100  # params / tags per log_batch call

TAG_LOSS = "gan_ray.loss"
TAG_DATASET = "gan_ray.dataset"
TAG_MODEL_FAMILY = "gan_ray.model_family"
TAG_STATUS = "gan_ray.status"
TAG_ERROR = "gan_ray.error"
TAG_DIVERGED_AT = "gan_ray.diverged_at_step"
TAG_MODEL_URI = "gan_ray.model_uri"


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking store cannot be reached or written; the message names the URI and why."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``.

    A relative SQLite path is made absolute here, so Ray workers that run in another working
    directory still write to the same database.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB_FILE}"
    db = _sqlite_path(uri)
    if db is not None and not db.is_absolute():
        uri = f"sqlite:///{Path.cwd() / db}"
    return uri


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (None for other stores and in-memory SQLite)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        return None
    return Path(uri[len(prefix) :].split("?", 1)[0])


def check_tracking_server(uri: str, timeout_s: float = 5.0, *, must_exist: bool = False) -> None:
    """Fail fast, with a :class:`TrackingUnavailableError`, when ``uri`` cannot be used.

    http(s): one ``GET <uri>/health`` with a ``timeout_s`` timeout (MLflow's own client would retry
    for minutes). SQLite: the database's folder must exist and be writable, and with ``must_exist``
    (reading, not logging) the database itself. Other stores (databricks, postgresql, ...) are not probed.
    """
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        import requests

        url = uri.rstrip("/") + "/health"
        try:
            response = requests.get(url, timeout=timeout_s)
        except requests.RequestException as err:
            raise TrackingUnavailableError(
                f"MLflow tracking server {uri} is unreachable ({type(err).__name__}: {err}); start it "
                f"(`mlflow server --host ... --port ...`) or point --tracking-uri / $MLFLOW_TRACKING_URI "
                f"at a running one"
            ) from None
        # 401/403: the server is there and the MLflow client will authenticate itself.
        if response.status_code >= 400 and response.status_code not in (401, 403):
            raise TrackingUnavailableError(
                f"MLflow tracking server {uri} answered {url} with HTTP {response.status_code}; "
                f"expected 200 from an MLflow server"
            )
        return
    db = _sqlite_path(uri)
    if db is not None:
        folder = db.absolute().parent
        if must_exist and not db.is_file():
            raise TrackingUnavailableError(
                f"tracking URI {uri}: database {db} does not exist (nothing logged there)"
            )
        if not folder.is_dir():
            raise TrackingUnavailableError(f"tracking URI {uri}: folder {folder} does not exist")
        target = db if db.exists() else folder
        if not os.access(target, os.W_OK):
            raise TrackingUnavailableError(f"tracking URI {uri}: {target} is not writable")


def make_client(tracking_uri: str) -> MlflowClient:
    """A client bound to ``tracking_uri`` for tracking *and* the model registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created if missing (safe against a concurrent creator).

    With a SQLite store, new experiments keep their artifacts in ``mlruns/`` beside the database
    (MLflow's default would be ``./mlruns`` of whatever the working directory happens to be).
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    db = _sqlite_path(tracking_uri)
    location = (db.parent / "mlruns").as_uri() if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)  # another process created it meanwhile
        if experiment is None:
            raise
        return experiment.experiment_id


def run_params(cfg: GanConfig) -> dict[str, str]:
    """The config as MLflow params: dotted keys, only the current loss's parameters, None left out."""
    return {k: str(v)[:MAX_PARAM_LENGTH] for k, v in cfg.flat().items() if v is not None}


def log_config(client: MlflowClient, run_id: str, cfg: GanConfig) -> None:
    """The config as params (:func:`run_params`, in batches MLflow accepts) and as ``config.yaml``."""
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in run_params(cfg).items()]
    for i in range(0, len(params), _BATCH):
        client.log_batch(run_id, params=params[i : i + _BATCH])
    client.log_text(run_id, config_yaml(cfg), "config.yaml")


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _status_of(error: BaseException | None) -> tuple[str, str]:
    """(gan_ray.status tag, MLflow run status) for how a run ended."""
    if error is None:
        return "completed", "FINISHED"
    if isinstance(error, DivergedError):
        return "diverged", "FAILED"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "killed", "KILLED"
    return "failed", "FAILED"


class MlflowRunLogger:
    """A :class:`~gan_ray.runner.RunObserver` that records one training run as one MLflow run.

    Params (``cfg.flat()``) and ``config.yaml`` are logged at :meth:`start`; each eval logs every
    numeric metric at its step plus the step's sample image under ``samples/``; the end logs the
    loss curves, the checkpoint (when at most ``checkpoint_max_mb``), the generator as an MLflow
    model (``log_model``, completed runs only), the ``gan_ray.status`` tag (completed / diverged /
    failed / killed) and ends the run FINISHED, FAILED or KILLED.

    ``parent_run_id`` nests the run under a sweep's parent run; ``run_id`` continues an existing
    run (a restarted trial) instead of creating one.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        *,
        run_id: str | None = None,
        log_model: bool = True,
        checkpoint_max_mb: float = 32.0,
    ):
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.tags = dict(tags or {})
        self.run_id = run_id
        self.log_model = log_model
        self.checkpoint_max_mb = checkpoint_max_mb
        self.experiment_id: str | None = None
        self.model_uri: str | None = None
        self._training: Training | None = None
        self._started = False
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = make_client(self.tracking_uri)
        return self._client

    def start(self, cfg: GanConfig) -> str:
        """Create (or reopen) the run and log the config; returns the run id. Idempotent."""
        if self._started:
            return self.run_id  # type: ignore[return-value]
        from mlflow.entities import RunTag
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        client = self.client
        tags = {
            TAG_LOSS: cfg.loss.name,
            TAG_DATASET: cfg.data.name,
            TAG_MODEL_FAMILY: cfg.model_family,
            **self.tags,
        }
        if self.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        tags = {k: str(v)[:MAX_TAG_LENGTH] for k, v in tags.items()}
        if self.run_id is None:
            self.experiment_id = ensure_experiment(client, self.experiment or cfg.name, self.tracking_uri)
            run = client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
            self.run_id = run.info.run_id
        else:
            run = client.get_run(self.run_id)
            self.experiment_id = run.info.experiment_id
            client.update_run(self.run_id, status="RUNNING")
            for stale in (TAG_STATUS, TAG_ERROR, TAG_DIVERGED_AT):  # from how the run ended last time
                if stale in run.data.tags:
                    client.delete_tag(self.run_id, stale)
            for i in range(0, len(tags), _BATCH):
                client.log_batch(
                    self.run_id, tags=[RunTag(k, v) for k, v in list(tags.items())[i : i + _BATCH]]
                )
        self._started = True
        log_config(client, self.run_id, cfg)
        return self.run_id

    def on_eval(self, report: EvalReport, training: Training, artifacts: dict[str, Path]) -> None:
        from mlflow.entities import Metric

        self.start(training.config)
        self._training = training
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, report.step)
            for key, value in report.metrics.items()
            if key != "step" and _numeric(value)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)
        samples = artifacts.get("samples")
        if samples is not None and Path(samples).is_file():
            self.client.log_artifact(self.run_id, str(samples), "samples")

    def on_end(self, result: TrainResult, error: BaseException | None) -> None:
        """Log the run's outcome and end it. MLflow failures never hide the training's own error."""
        self.start(result.config)
        status_tag, run_status = _status_of(error)
        logging_error: Exception | None = None
        try:
            self._log_outcome(result, error)
        except Exception as err:  # the run must still be ended, and a training error must win
            logging_error = err
        finally:
            try:
                self.client.set_tag(self.run_id, TAG_STATUS, status_tag)
                self.client.set_terminated(self.run_id, run_status)
            except Exception as err:
                logging_error = logging_error or err
        if logging_error is not None:
            if error is None:
                raise logging_error
            warnings.warn(
                f"MLflow logging at the end of run {self.run_id} failed: {logging_error}", stacklevel=2
            )

    def _log_outcome(self, result: TrainResult, error: BaseException | None) -> None:
        client = self.client
        if error is not None:
            client.set_tag(self.run_id, TAG_ERROR, f"{type(error).__name__}: {error}"[:MAX_TAG_LENGTH])
            if isinstance(error, DivergedError):
                client.set_tag(self.run_id, TAG_DIVERGED_AT, str(error.step))
        history = [h for h in result.history if all(k in h for k in ("step", "loss_d", "loss_g"))]
        if history:
            with tempfile.TemporaryDirectory() as tmp:
                client.log_artifact(
                    self.run_id, str(save_loss_curves(history, Path(tmp) / "loss_curves.png"))
                )
        checkpoint = result.checkpoint
        if checkpoint is not None and Path(checkpoint).is_file():
            size_mb = Path(checkpoint).stat().st_size / 2**20
            if size_mb <= self.checkpoint_max_mb:
                client.log_artifact(self.run_id, str(checkpoint), "checkpoint")
            else:
                _log.info(
                    "checkpoint %s (%.0f MB) not logged: over %s MB",
                    checkpoint,
                    size_mb,
                    self.checkpoint_max_mb,
                )
        if error is None and self.log_model and self._training is not None:
            from gan_ray.registry import log_generator

            self.model_uri = log_generator(
                self._training.generator,
                result.config,
                self.run_id,
                self.tracking_uri,
                step=self._training.step,
            )
            client.set_tag(self.run_id, TAG_MODEL_URI, self.model_uri)


def tracked_observers(
    cfg: GanConfig,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    *,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    log_model: bool = True,
) -> list[RunObserver]:
    """Observers that track a :func:`gan_ray.runner.train` call in MLflow (one run, started now).

    Raises :class:`TrackingUnavailableError` at once if the tracking store cannot be reached.
    The experiment defaults to ``cfg.name``.
    """
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_server(uri)
    logger = MlflowRunLogger(uri, experiment or cfg.name, run_name, parent_run_id, tags, log_model=log_model)
    logger.start(cfg)
    return [logger]
