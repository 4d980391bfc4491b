"""Every environment variable gan_ray reads, with its default, in one place.

Each function reads the environment when called (not at import), so a test or a Ray worker that sets
a variable later still sees it. Paths are made absolute here: Ray workers run in other folders.
"""

from __future__ import annotations

import os
from pathlib import Path

#: name -> what it sets (the default is in the function that reads it). docs/architecture.md lists them.
VARIABLES: dict[str, str] = {
    "MLFLOW_TRACKING_URI": "MLflow tracking store (default: sqlite:///./mlflow.db)",
    "MLFLOW_REGISTRY_URI": "MLflow model registry (default: the tracking store)",
    "GAN_RAY_TRACKING_RETRY_S": "seconds a sweep retries a tracking write before giving it up (default 600)",
    "GAN_RAY_TRACKING_MAX_PENDING": "tracking writes a sweep's driver buffers at most (default 200000)",
    "GAN_RAY_STORAGE": "Ray Train checkpoints (default: ./ray_results; s3://... on a cluster)",
    "GAN_RAY_OPTUNA_STORAGE": "Optuna study storage (default: sqlite:///./optuna.db; an absolute path on a cluster)",
    "GAN_RAY_SHARED_FS": "set to 1 when GAN_RAY_STORAGE is a filesystem mounted on every node",
    "GAN_RAY_CACHE": "feature-extractor cache, and folder datasets' prepared files under prepared/ (default: ~/.cache/gan_ray)",
    "GAN_RAY_INCEPTION_WEIGHTS": "path of torch-fidelity's Inception weights file, where present",
    "RAY_ADDRESS": "the Ray cluster to use (default: start a local Ray)",
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "Ray Tune's: seconds a sweep's reused trial process waits for the "
    "stopped trial's thread before the next trial starts there (gan_ray's default 30; Ray's own, 2)",
    "GAN_RAY_GIT_COMMIT": "the code's git commit, tagged on runs where no .git is at hand (ray job submit)",
    "GAN_RAY_TEST_SESSION": "tests only: module:attr (or file.py:attr) that wraps every run's session",
    "GAN_RAY_TEST_SESSION_ARGS": "tests only: the JSON keyword arguments of that wrapper",
}

MLFLOW_DB_FILE = "mlflow.db"
OPTUNA_DB_FILE = "optuna.db"
RAY_RESULTS_DIR = "ray_results"


def _get(name: str) -> str | None:
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a gan_ray setting; add it to gan_ray.settings.VARIABLES")
    return os.environ.get(name) or None


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``."""
    return _get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / MLFLOW_DB_FILE}"


def registry_uri() -> str | None:
    """``$MLFLOW_REGISTRY_URI``; None: the registry lives in the tracking store."""
    return _get("MLFLOW_REGISTRY_URI")


def tracking_retry_s() -> float:
    """``$GAN_RAY_TRACKING_RETRY_S``, else 600: a tracking server restart (minutes) loses nothing."""
    return float(_get("GAN_RAY_TRACKING_RETRY_S") or 600.0)


def tracking_max_pending() -> int:
    """``$GAN_RAY_TRACKING_MAX_PENDING``, else 200,000 writes (an eval's metrics or image is one)."""
    return int(_get("GAN_RAY_TRACKING_MAX_PENDING") or 200_000)


def storage_path() -> str:
    """``$GAN_RAY_STORAGE`` (e.g. ``s3://bucket/ray-results``), else ``<cwd>/ray_results``."""
    return _get("GAN_RAY_STORAGE") or str(Path(RAY_RESULTS_DIR).resolve())


def study_storage() -> str:
    """``$GAN_RAY_OPTUNA_STORAGE``, else ``sqlite:///<cwd>/optuna.db``."""
    return _get("GAN_RAY_OPTUNA_STORAGE") or f"sqlite:///{Path(OPTUNA_DB_FILE).resolve()}"


def shared_filesystem() -> bool:
    """``$GAN_RAY_SHARED_FS`` is set: a local storage path is visible to every node."""
    return bool(_get("GAN_RAY_SHARED_FS"))


def cache_dir() -> Path:
    """``$GAN_RAY_CACHE``, else ``~/.cache/gan_ray``."""
    return Path(_get("GAN_RAY_CACHE") or Path.home() / ".cache" / "gan_ray").expanduser()


def inception_weights() -> Path | None:
    """``$GAN_RAY_INCEPTION_WEIGHTS`` as a path, if set."""
    value = _get("GAN_RAY_INCEPTION_WEIGHTS")
    return Path(value).expanduser() if value else None


def ray_address() -> str | None:
    """``$RAY_ADDRESS``: a cluster to connect to; None starts a local Ray."""
    return _get("RAY_ADDRESS")


def git_commit() -> str | None:
    """``$GAN_RAY_GIT_COMMIT``: the commit a job's code came from, where the code has no ``.git``
    (``ray job submit --working-dir`` uploads the files without it)."""
    return _get("GAN_RAY_GIT_COMMIT")


#: The test-only settings: a session factory every run driver wraps its session in (faults a test
#: injects, in tests/faults.py), and its arguments. Forwarded to Ray workers when set.
#: Ray Tune's wait for a stopped trial's thread before it reuses the process for another trial.
TUNE_THREAD_TIMEOUT = "TUNE_FUNCTION_THREAD_TIMEOUT_S"


def default_tune_thread_timeout(seconds: float = 30.0) -> None:
    """Give Tune's wait for a stopped trial's thread ``seconds`` in this (trial) process, unless set.

    Tune reads it in the trial's process when it starts the next trial there (``reset_config``); past
    it the next trial is aborted, never run. Ray's default of 2 s is shorter than a slow machine may
    take to end a thread that was training (Ray reads whole seconds: an int).
    """
    if not _get(TUNE_THREAD_TIMEOUT):
        os.environ[TUNE_THREAD_TIMEOUT] = str(int(seconds))


TEST_SESSION = "GAN_RAY_TEST_SESSION"
TEST_SESSION_ARGS = "GAN_RAY_TEST_SESSION_ARGS"


def test_switches() -> dict[str, str]:
    """The test-only settings that are set, to forward to Ray workers and trials."""
    return {k: v for k in (TEST_SESSION, TEST_SESSION_ARGS) if (v := _get(k)) is not None}
