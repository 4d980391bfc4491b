"""Access to the MLflow tracking store: which URI, whether it can be used, a client, an experiment,
and the names and limits every gan_ray run shares.

Every call goes through an ``MlflowClient`` with an explicit run id (never MLflow's global active
run), so several runs (a sweep's trials) can be logged from one process or thread at once.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from gan_ray import __version__, settings
from gan_ray.errors import TrackingUnavailableError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow's own limits (mlflow.utils.validation): longer values are rejected, not truncated.
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
BATCH = 100  # params / tags / metrics per log_batch call

TAG_PARENT_RUN = "mlflow.parentRunId"  # MLflow's own tag: nests a run under its parent in the UI
TAG_KIND = "gan_ray.kind"  # "run" (one training run) or "sweep" (a sweep's parent run)
TAG_LOSS = "gan_ray.loss"
TAG_DATASET = "gan_ray.dataset"
TAG_MODEL_FAMILY = "gan_ray.model_family"
TAG_STATUS = "gan_ray.status"
TAG_HEALTH = "gan_ray.health"  # "ok" or the first sign of a run that stopped learning (d_won, ...)
TAG_ERROR = "gan_ray.error"
TAG_DIVERGED_AT = "gan_ray.diverged_at_step"
TAG_MODEL_URI = "gan_ray.model_uri"
TAG_TRIAL_ID = "gan_ray.trial_id"
TAG_STUDY = "gan_ray.study"
# On a sweep trial's run: where its best checkpoint so far stays (what a resumed sweep may register).
TAG_BEST_CHECKPOINT = "gan_ray.best_checkpoint"
TAG_RESUMES = "gan_ray.resumes"  # on a resumed sweep's parent run: the parent run of the sweep it resumes
TAG_NOTE = "mlflow.note.content"  # MLflow's own tag: a run's Description in the UI (Markdown)
# MLflow's own experiment tag: the UI files the experiment under "Model training", not GenAI traces.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
TAG_FEATURE_EXTRACTOR = "gan_ray.feature_extractor"  # which extractor scored an image run (its weights' hash)
TAG_REFERENCE = (
    "gan_ray.reference"  # the real statistics it was scored against: dataset/split/resolution/extractor/n
)
TAG_EVAL_SAMPLES = "gan_ray.eval_samples"  # how many generated samples a registered score was measured on
# The searched parameters (comma-separated dotted keys): what to pick as the UI's columns and axes.
TAG_SEARCHED = "gan_ray.searched_params"
TAG_VERSION = "gan_ray.version"
TAG_GIT_COMMIT = "gan_ray.git_commit"
# Population-based training: the checkpoint a trial last continued from, and all of them in order.
TAG_PBT_CLONED_FROM = "gan_ray.pbt.cloned_from"
TAG_PBT_LINEAGE = "gan_ray.pbt.lineage"
TAG_PBT_PARAMS = "gan_ray.pbt.params"  # the searched values it trains with since its latest clone (JSON)
# Records the tracking writer gave up on (the store was away past its retry window): kind -> count, JSON.
TAG_LOST = "gan_ray.tracking_lost"
TAG_MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own tag: the run page shows it


def code_tags() -> dict[str, str]:
    """The version of gan_ray that ran, and its git commit where known (:func:`git_commit`)."""
    tags = {TAG_VERSION: __version__}
    commit = git_commit()
    if commit:
        tags[TAG_GIT_COMMIT] = commit
        tags[TAG_MLFLOW_GIT_COMMIT] = commit.removesuffix("-dirty")
    return tags


@functools.cache
def git_commit() -> str | None:
    """The git commit of the code that runs (see :func:`checkout_commit`), looked up once per process."""
    return checkout_commit(Path(__file__).resolve().parents[2])


def checkout_commit(root: Path) -> str | None:
    """The commit of the checkout at ``root`` (``-dirty`` when it has uncommitted changes), else
    ``$GAN_RAY_GIT_COMMIT``, else None.

    Only a ``.git`` at ``root`` counts: an installed copy inside some other repository (a virtual
    environment in a project) must not be tagged with that repository's commit.
    """
    if (root / ".git").exists():
        commit = _git(root, "rev-parse", "HEAD")
        if commit:
            dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
            return commit + ("-dirty" if dirty else "")
    return settings.git_commit()


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git installed, or not a repository after all: the commit is unknown
    return done.stdout.strip()


def clip(text: str, limit: int = MAX_TAG_LENGTH) -> str:
    """``text`` within MLflow's length limit; a long text keeps its end (a traceback's last lines say why)."""
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``.

    A relative SQLite path is made absolute here, so Ray workers that run in another working
    directory still write to the same database.
    """
    uri = uri or settings.tracking_uri()
    db = sqlite_path(uri)
    if db is not None and not db.is_absolute():
        uri = f"sqlite:///{Path.cwd() / db}"
    return uri


def sqlite_path(uri: str) -> Path | None:
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
    if urlparse(uri).scheme in ("http", "https"):
        _check_http(uri, timeout_s)
        return
    db = sqlite_path(uri)
    if db is None:
        return
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


def _check_http(uri: str, timeout_s: float) -> None:
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


def make_client(tracking_uri: str) -> MlflowClient:
    """A client bound to ``tracking_uri`` for tracking, and to ``$MLFLOW_REGISTRY_URI`` (default: the
    same store) for the model registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=settings.registry_uri() or tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created if missing (safe against a concurrent creator).

    With a SQLite store, new experiments keep their artifacts in ``mlruns/`` beside the database
    (MLflow's default would be ``./mlruns`` of whatever the working directory happens to be). New
    experiments are marked as model training, so the UI does not ask or open them as GenAI traces.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    db = sqlite_path(tracking_uri)
    location = (db.parent / "mlruns").as_uri() if db is not None else None
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: "custom_model_development"}
        )
    except MlflowException:
        experiment = client.get_experiment_by_name(name)  # another process created it meanwhile
        if experiment is None:
            raise
        return experiment.experiment_id
