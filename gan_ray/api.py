"""The public entry points, and the one place that wires the floors together: the training core, the
Ray layer and the MLflow layer never import each other; this module hands one to the other.
The CLI maps one-to-one onto these functions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gan_ray import settings
from gan_ray.config import GanConfig, load_config, resolve_path
from gan_ray.data.sources import check_available
from gan_ray.search.load import load_search_space
from gan_ray.search.space import SearchSpace
from gan_ray.training.preflight import check_components

if TYPE_CHECKING:
    from gan_ray.sampling import LoadedGenerator
    from gan_ray.search.trials import StudyRecord, SweepResult
    from gan_ray.training.result import RunResult

Backend = Literal["auto", "local", "ray"]


def uses_ray(cfg: GanConfig, backend: Backend = "auto") -> bool:
    """``auto`` runs under Ray Train when the config asks for several workers or GPUs, or a cluster is set."""
    if backend != "auto":
        return backend == "ray"
    return cfg.scaling.num_workers > 1 or cfg.scaling.use_gpu or bool(settings.ray_address())


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
    overrides: dict[str, Any] | None = None,
) -> RunResult:
    """Train one GAN from a config object or YAML path; returns a :class:`gan_ray.training.result.RunResult`
    (its ``status`` says whether it completed, collapsed or diverged).

    In this process (``backend="local"``) or under Ray Train with ``workers`` data-parallel workers
    (``backend="ray"``, or ``auto`` with several workers or a GPU). Bad configs and missing datasets
    fail here, before Ray or any worker starts.

    ``resume`` continues the latest checkpoint of the run's name (``output_dir/name`` locally,
    ``storage_path/name`` under Ray); without it the run starts afresh, removing that run's earlier
    checkpoints on a local disk with a line saying so (on remote storage Ray runs refuse instead).

    With ``tracking`` (the default) the run is recorded as one MLflow run in experiment ``config.name``
    at ``tracking_uri`` (default ``$MLFLOW_TRACKING_URI`` or ``./mlflow.db``); an unreachable
    tracking server fails here too. ``overrides`` replaces dotted keys of the config first
    (``{"data.root": "~/data"}``, what ``--set`` passes), validated like the file.
    """
    cfg = config if isinstance(config, GanConfig) else load_config(config)
    overrides = dict(overrides or {})
    if workers is not None:
        overrides["scaling.num_workers"] = workers
    if gpu is not None:
        overrides["scaling.use_gpu"] = gpu
    if overrides:
        cfg = cfg.with_overrides(overrides)
    cfg = cfg.with_resolved_paths()
    check_available(cfg.data)
    check_components(cfg)
    if (workers is not None or gpu) and backend == "auto":
        backend = "ray"
    observer = None
    if tracking:
        from gan_ray.tracking.run import tracked_run

        observer = tracked_run(cfg, tracking_uri)
    if uses_ray(cfg, backend):
        from gan_ray.ray.train import fit

        return fit(cfg, observer=observer, resume=resume)
    from gan_ray.training.local import run_local

    return run_local(cfg, resume=resume, verbose=verbose, observers=[observer] if observer else [])


def sweep(
    space: SearchSpace | str | Path,
    *,
    num_samples: int | None = None,
    resume: bool = False,
    tracking: bool = True,
    tracking_uri: str | None = None,
    storage_path: str | None = None,
    study_storage: str | None = None,
    model_name: str | None = None,
    register: bool = True,
    verbose: int = 1,
    overrides: dict[str, Any] | None = None,
    initial_points: str | Path | list[dict[str, Any]] | None = None,
) -> SweepResult:
    """Run the sweep ``space`` (a :class:`SearchSpace` or a YAML path) and register its best generator.

    Everything that can be checked is checked before a trial starts: the search space, the dataset,
    the MLflow tracking store, the cluster. Diverged trials end as failed trials; the sweep goes on.
    With ``tracking=False`` nothing is recorded in MLflow (and nothing registered); the result and the
    printed summary still name the best trial. ``overrides`` replaces dotted keys of the space's base
    config (what ``--set`` passes; a searched key is refused). ``initial_points`` replaces the file's
    points to try first (a list, a YAML file of one, or ``"none"``: a search from scratch; what
    ``--initial-points`` passes). ``verbose``: 0 prints nothing, 1 (the
    default) a progress table, a line per ended trial and the summary, 2 also Tune's tables and the Ray
    workers' output (started here; a Ray already running keeps its own setting).

    ``resume`` continues the latest study of this sweep in ``study_storage`` (default
    ``$GAN_RAY_OPTUNA_STORAGE`` or ``./optuna.db``); where it holds none,
    :class:`~gan_ray.errors.StudyNotFoundError` is raised before anything starts. Without
    ``num_samples`` it runs the trials the plan (``budget.num_samples``) still misses; with it, that many
    more. What an interrupted sweep left RUNNING (its driver killed) is ended first: Optuna trials FAIL,
    MLflow runs KILLED with the reason, and the new parent run links to the interrupted one.
    """
    from gan_ray.ray.search import study_name_for
    from gan_ray.ray.sweep import prepare_cluster, run_sweep

    if not isinstance(space, SearchSpace):
        space = load_search_space(space)
    if overrides:
        space = space.with_base_overrides(overrides)
    if initial_points is not None:
        space = space.with_initial_points(initial_points)
    if num_samples is not None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        space = space.with_budget(num_samples=num_samples)
    space = dataclasses.replace(space, base=space.base.with_resolved_paths())
    check_available(space.base.data)
    check_components(space.base)
    # Before MLflow or Ray: a resume with nothing to resume must change nothing anywhere.
    study_url = study_storage or settings.study_storage()
    study_name = study_name_for(space.name, study_url, resume)
    if resume and num_samples is None:
        space = _rest_of_plan(space, study_name, study_url)
    uri = None
    if tracking:
        from gan_ray.tracking.store import check_tracking_server, resolve_tracking_uri

        uri = resolve_tracking_uri(tracking_uri)
        check_tracking_server(uri)
    storage_path = resolve_path(space.base.scaling.storage(storage_path))
    # Before a parent run exists for a sweep that cannot run. Below -v, workers' lines stay in Ray's logs.
    capacity = prepare_cluster(space, storage_path, log_to_driver=verbose >= 2)
    if resume:
        from gan_ray.ray.search import fail_running_trials

        fail_running_trials(study_name, study_url, INTERRUPTED)
    space = _with_sweep_data(space, storage_path, study_name)
    space = _with_sweep_extractor(space, storage_path, study_name)
    recorder, earlier = None, []
    if tracking:
        from gan_ray.tracking.sweep import MlflowSweep

        recorder = MlflowSweep(
            uri, space, study_name, model_name=model_name, register=register, resume=resume
        )
        earlier = recorder.earlier_trials() if resume else []
    return run_sweep(
        space,
        study_name=study_name,
        study_url=study_url,
        resume=resume,
        storage_path=storage_path,
        recorder=recorder,
        capacity=capacity,
        verbose=verbose,
        earlier=earlier,
    )


#: Why a resumed sweep ends the Optuna trials an interrupted one left RUNNING.
INTERRUPTED = "the sweep's driver ended while this trial ran (killed, or its machine lost)"


def _rest_of_plan(space: SearchSpace, study_name: str, study_url: str) -> SearchSpace:
    """``space`` with the trials its study still misses of ``budget.num_samples`` (trials an interruption
    ended do not count); a study with all of them is an error. A stratified sweep draws a new round."""
    from gan_ray.errors import ConfigError
    from gan_ray.ray.search import finished_trials

    if space.stratify:
        return space
    planned, done = space.budget.num_samples, finished_trials(study_name, study_url)
    if done >= planned:
        raise ConfigError(
            f"study {study_name!r} has {done} finished trial(s) of the {planned} planned: nothing left to "
            "resume; pass --num-samples N to add N more"
        )
    return space.with_budget(num_samples=planned - done)


def _with_sweep_data(space: SearchSpace, storage_path: str, study_name: str) -> SearchSpace:
    """For a ``folder`` sweep: the prepared file (decoded here once, or found in the cache) put on the
    storage every node reads and named in every trial's ``data.prepared``, so trials on any node read
    the same bytes memory-mapped and none decodes the source (which another node may not even see).
    The file's name holds its cache key: a changed source is a new file, never an old one reused."""
    data = space.base.data
    if data.name != "folder" or data.prepared is not None:
        return space
    from gan_ray.data.prepared import prepared_path
    from gan_ray.ray.storage import put_file

    local = prepared_path(data)
    uri = put_file(local, storage_path, f"{study_name}/data/{local.name}", keep_existing=True)
    return dataclasses.replace(space, base=space.base.with_overrides({"data.prepared": uri}))


def _with_sweep_extractor(space: SearchSpace, storage_path: str, study_name: str) -> SearchSpace:
    """For image sweeps: the feature extractor, trained (or found in the cache) here once, put on the
    storage every node reads, and named in every trial's config, so that all trials of the study (a
    resumed sweep's too) are scored by the same one; Fréchet scores under two extractors differ by
    20-40 % for the same images."""
    base = space.base
    if base.data.is_mixture or base.metrics.extractor is not None:
        return space
    from gan_ray.metrics.features import extractor_file
    from gan_ray.ray.storage import put_file

    local, _ = extractor_file(base.data, base.metrics.features)
    if local is None:  # a pretrained extractor (Inception): the same everywhere by construction
        return space
    uri = put_file(local, storage_path, f"{study_name}/feature_extractor.pt", keep_existing=True)
    return dataclasses.replace(space, base=base.with_overrides({"metrics.extractor": uri}))


@dataclasses.dataclass(frozen=True)
class Report:
    """Where :func:`report` put a study's report, and the study as it read it."""

    study: StudyRecord
    run_id: str
    tracking_uri: str
    artifacts: list[str]


def report(
    experiment_or_study: str,
    *,
    tracking_uri: str | None = None,
    study_storage: str | None = None,
    out: str | Path | None = None,
) -> Report:
    """Log the report of a sweep's study (importances, history, per-value comparison, parallel
    coordinates, tables) under ``report/`` of its parent run, as a sweep does at its end.

    ``experiment_or_study``: an MLflow experiment (its latest sweep) or an Optuna study name (its latest
    sweep's parent run). The study is read from ``study_storage`` (default ``$GAN_RAY_OPTUNA_STORAGE`` or
    ``./optuna.db``); ``out`` also keeps the files in that folder.
    """
    from gan_ray.errors import ConfigError
    from gan_ray.ray.study import read_study
    from gan_ray.tracking.report import find_sweep_run, log_report
    from gan_ray.tracking.store import (
        TAG_SEARCHED,
        TAG_STUDY,
        check_tracking_server,
        make_client,
        resolve_tracking_uri,
    )
    from gan_ray.tracking.sweep import objectives_from_params

    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_server(uri, must_exist=True)
    client = make_client(uri)
    run = find_sweep_run(client, experiment_or_study)
    if run is None:
        raise ConfigError(
            f"no sweep found for {experiment_or_study!r} in {uri}: expected an MLflow experiment holding a "
            "sweep, or the Optuna study of one (see --tracking-uri)"
        )
    params, tags = run.data.params, run.data.tags
    searched = [k for k in tags.get(TAG_SEARCHED, "").split(",") if k] or None
    objectives, rule, weights = objectives_from_params(params)
    record = read_study(
        tags[TAG_STUDY],
        study_storage or settings.study_storage(),
        params.get("sweep.metric", "objective"),
        stratify=params.get("sweep.stratify"),
        searched=searched,
        objectives=objectives,
        champion_rule=rule,
        champion_weights=weights,
    )
    artifacts = log_report(client, run.info.run_id, record, Path(out) if out is not None else None)
    return Report(record, run.info.run_id, uri, artifacts)


def prepare(
    source: str,
    *,
    size: int,
    channels: int = 3,
    labels: Literal["auto", "none"] = "auto",
    out: str | Path | None = None,
    verbose: bool = True,
) -> Path:
    """Decode the images at ``source`` (a folder, a ``.zip``, ``s3://bucket/prefix``) once into a prepared
    file, as a ``folder`` run does when it finds none: short side resized to ``size`` and centre-cropped,
    ``channels`` 1 or 3, labels from class subfolders (``auto``) or ``none``. Into the cache
    (``$GAN_RAY_CACHE/prepared``), where runs on ``source`` find it, or to ``out`` (a run reads it with
    ``data.prepared``). Returns its path; bad input is one line (a ``ConfigError`` or ``FileNotFoundError``).
    """
    from gan_ray.config import validate_config
    from gan_ray.data.prepared import Preprocessing
    from gan_ray.data.prepared import prepare as _prepare

    # The config's own checks say in one line what a bad size, channel count or labels value is.
    validate_config(
        {
            "data": {
                "name": "folder",
                "root": source,
                "image_size": size,
                "channels": channels,
                "labels": labels,
            }
        }
    )
    say = print if verbose else (lambda _line: None)
    return _prepare(source, Preprocessing(size, channels, labels), out=out, say=say).path


def load_generator(uri: str | Path, tracking_uri: str | None = None, device: str = "cpu") -> LoadedGenerator:
    """A trained generator to sample from; see :func:`gan_ray.sampling.load_generator`."""
    from gan_ray.sampling import load_generator as _load

    return _load(uri, tracking_uri=tracking_uri, device=device)


def export(model: str | Path, *, onnx: str | Path, tracking_uri: str | None = None) -> Path:
    """Write the generator at ``model`` (any URI :func:`load_generator` takes) to ``onnx`` as an ONNX file:
    input ``noise`` (batch, noise_dim) float32, output ``samples``, the batch dimension dynamic.

    A class-conditional generator's input is ``cat(noise, class)`` (batch, noise_dim + 1), the class index
    as the last column (:class:`gan_ray.models.conditional.PackedConditional`).

    Needs the ``onnx`` extra (checked before the model is loaded). Returns the file's path.
    """
    from torch import nn

    from gan_ray.models.conditional import PackedConditional
    from gan_ray.onnx_export import check_onnx_available, export_onnx

    check_onnx_available()
    generator = load_generator(model, tracking_uri=tracking_uri, device="cpu")
    if not generator.num_classes:
        return export_onnx(generator.module, generator.config.noise_dim, onnx)
    if not isinstance(generator.module, nn.Module):
        raise ValueError(
            f"{model}: a conditional generator is exported from its weights; this model has none"
        )
    return export_onnx(PackedConditional(generator.module), generator.config.noise_dim + 1, onnx)
