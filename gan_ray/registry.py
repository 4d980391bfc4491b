"""The generator as an MLflow model, and a model registry whose ``champion`` alias only moves to a better one.

A logged generator is one MLflow model directory holding three views of the same weights, none of
which runs pickled code when loaded:

- ``data/model.pt2``: a ``torch.export`` program (MLflow's ``pt2`` format, dynamic batch size),
  loadable with plain ``mlflow.pytorch.load_model`` / pyfunc; MLflow checks it is pickle-free.
- ``extra_files/generator.pt``: the state dict (tensors only, read with ``weights_only=True``) and
- ``extra_files/config.yaml``: the run's config, from which :func:`gan_ray.sampling.load_generator`
  rebuilds the exact eager module on any device.

Not a pyfunc ``PythonModel`` (MLflow cloudpickles that object) and not ``serialization_format="pickle"``.
Logging takes ~0.3-0.6 s (the first call in a process ~1-3 s more, for one-time imports) because
the pip requirements are given rather than inferred.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from gan_ray.config import GanConfig, config_yaml
from gan_ray.datasets import data_shape
from gan_ray.models import generator_from_state
from gan_ray.noise import get_noise
from gan_ray.step import unwrap
from gan_ray.tracking import TAG_DATASET, TAG_LOSS, make_client, resolve_tracking_uri, run_params

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

GENERATOR_NAME = "generator"
CONFIG_FILE = "config.yaml"
STATE_FILE = "generator.pt"
EXTRA_FILES_DIR = "extra_files"  # where mlflow.pytorch.save_model puts ``extra_files``
CHAMPION = "champion"
EXAMPLE_BATCH = 4  # > 1, or torch.export specialises the batch dimension to a constant

TAG_METRIC_NAME = "gan_ray.metric_name"
TAG_METRIC_VALUE = "gan_ray.metric_value"
TAG_METRIC_MODE = "gan_ray.metric_mode"
TAG_SOURCE_RUN = "gan_ray.source_run_id"
TAG_CONFIG = "gan_ray.config"
TAG_LOGGED_MODEL = "gan_ray.logged_model_id"


def default_model_name(sweep_name: str) -> str:
    """The registered model a sweep's best generators go to."""
    return f"gan_ray-{sweep_name}".replace("/", "-")


def pip_requirements() -> list[str]:
    """What serving the pt2 program needs. Given explicitly: MLflow's inference of them takes seconds."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]


def export_ready_generator(generator: nn.Module, cfg: GanConfig) -> nn.Module:
    """A fresh CPU fp32 copy of ``generator`` in eval mode (BatchNorm on running statistics).

    Rebuilt from ``cfg`` and loaded with the trained weights, so what is logged is exactly what
    :func:`gan_ray.sampling.load_generator` rebuilds (and a DDP wrapper or channels_last layout
    from training does not leak into it).
    """
    state = {
        k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu())
        for k, v in unwrap(generator).state_dict().items()
    }
    return generator_from_state(cfg, state)


def _signature_and_example(cfg: GanConfig):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    noise_dim = cfg.noise_dim
    g = torch.Generator().manual_seed(0)
    example = (
        get_noise(cfg.noise.distribution)(EXAMPLE_BATCH, noise_dim, generator=g).numpy().astype(np.float32)
    )
    f32 = np.dtype(np.float32)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, noise_dim), "noise")]),
        outputs=Schema([TensorSpec(f32, (-1, *data_shape(cfg.data)), "samples")]),
    )
    return signature, example


def log_generator(
    generator: nn.Module,
    cfg: GanConfig,
    run_id: str,
    tracking_uri: str | None = None,
    registered_model_name: str | None = None,
    *,
    name: str = GENERATOR_NAME,
    step: int = 0,
) -> str:
    """Log ``generator`` as an MLflow model of run ``run_id``; returns its URI ``models:/<model id>``.

    With ``registered_model_name`` it also becomes a new version of that registered model (no alias;
    see :func:`register_champion` for that).
    """
    import mlflow.pytorch
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    tracking_uri = resolve_tracking_uri(tracking_uri)
    client = make_client(tracking_uri)
    module = export_ready_generator(generator, cfg)
    signature, example = _signature_and_example(cfg)
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        params=run_params(cfg),
        tags={TAG_LOSS: cfg.loss.name, TAG_DATASET: cfg.data.name},
        model_type="gan_generator",
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            mlflow_model = Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                run_id=run_id,
                model_id=logged.model_id,
                metadata={
                    "gan_ray": {
                        "dataset": cfg.data.name,
                        "noise_distribution": cfg.noise.distribution,
                        "noise_dim": cfg.noise_dim,
                        "sample_shape": list(data_shape(cfg.data)),
                    }
                },
            )
            mlflow.pytorch.save_model(
                module,
                str(model_dir),
                mlflow_model=mlflow_model,
                serialization_format="pt2",
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
            _add_extra_files(model_dir, {CONFIG_FILE: config_yaml(cfg)}, module.state_dict())
            client.log_model_artifacts(logged.model_id, str(model_dir))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    model_uri = f"models:/{logged.model_id}"
    if registered_model_name:
        register_version(client, model_uri, registered_model_name)
    return model_uri


def _add_extra_files(model_dir: Path, texts: dict[str, str], state: dict[str, torch.Tensor]) -> None:
    """Write the config and the state dict into ``extra_files/`` and list them in the MLmodel, as
    ``save_model(extra_files=...)`` would (that route copies them through MLflow's artifact
    download machinery, progress bars included)."""
    from mlflow.models import Model

    extra = model_dir / EXTRA_FILES_DIR
    extra.mkdir()
    for name, text in texts.items():
        (extra / name).write_text(text)
    torch.save(state, extra / STATE_FILE)
    mlmodel = model_dir / "MLmodel"
    model = Model.load(str(mlmodel))
    model.flavors["pytorch"]["extra_files"] = [
        {"path": f"{EXTRA_FILES_DIR}/{p.name}"} for p in sorted(extra.iterdir())
    ]
    model.save(str(mlmodel))


# --- the registry -----------------------------------------------------------------------------


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` -> (NAME, None, ALIAS); ``models:/NAME/3`` -> (NAME, "3", None);
    ``models:/m-<id>`` (a logged model) -> (id, None, None)."""
    rest = uri.removeprefix("models:").strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return name, None, alias
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        if version.isdigit():
            return name, version, None
    elif rest.startswith("m-"):
        return rest, None, None
    raise ValueError(
        f"cannot read model URI {uri!r}; expected models:/NAME@ALIAS, models:/NAME/VERSION or "
        f"models:/<logged model id>"
    )


def _resolve_source(client: MlflowClient, model_uri: str) -> tuple[str, str | None, str | None]:
    """(artifact location, logged model id, source run id) of a models:/, runs:/ or plain artifact URI."""
    if model_uri.startswith("models:"):
        name, version, alias = _parse_models_uri(model_uri)
        if version is None and alias is None:
            logged = client.get_logged_model(name)
            return logged.artifact_location, logged.model_id, logged.source_run_id
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
        return client.get_model_version_download_uri(mv.name, mv.version), mv.model_id, mv.run_id
    if model_uri.startswith("runs:"):
        run_id, _, path = model_uri.removeprefix("runs:").strip("/").partition("/")
        path = path.strip("/") or GENERATOR_NAME
        run = client.get_run(run_id)
        outputs = run.outputs.model_outputs if run.outputs else []
        for output in sorted(outputs, key=lambda o: o.step, reverse=True):
            logged = client.get_logged_model(output.model_id)
            if logged.name == path:
                return logged.artifact_location, logged.model_id, run_id
        return f"{run.info.artifact_uri.rstrip('/')}/{path}", None, run_id
    return model_uri, None, None


def resolve_model_uri(model_uri: str, tracking_uri: str | None = None) -> str:
    """Where the artifacts of ``model_uri`` (models:/..., runs:/..., or an artifact URI) are stored.

    Resolved with a client bound to ``tracking_uri`` (MLflow's own resolution of models:/ URIs
    ignores an explicit registry URI and reads the global one).
    """
    return _resolve_source(make_client(resolve_tracking_uri(tracking_uri)), model_uri)[0]


def download_model(model_uri: str, dst: str | Path, tracking_uri: str | None = None) -> Path:
    """Download the model directory of ``model_uri`` into ``dst``; returns its local path.

    Raises FileNotFoundError naming the URI when the store has no such model.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    tracking_uri = resolve_tracking_uri(tracking_uri)
    try:
        location = resolve_model_uri(model_uri, tracking_uri)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except MlflowException as err:
        raise FileNotFoundError(
            f"no model at {model_uri} in tracking store {tracking_uri}: {err.message}"
        ) from None
    return Path(local)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(name)
    except MlflowException:
        client.get_registered_model(name)  # created concurrently: fine; anything else raises here


def register_version(
    client: MlflowClient,
    model_uri: str,
    name: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """A new version of registered model ``name`` (created if missing) for ``model_uri``."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    _ensure_registered_model(client, name)
    source, model_id, source_run = _resolve_source(client, model_uri)
    tags = dict(tags or {})
    if model_id:
        # The SQL registry does not keep a version's model id (mlflow 3.17): keep it as a tag.
        tags[TAG_LOGGED_MODEL] = model_id
    # The artifact location, not "models:/<id>": the SQLite registry resolves the latter through the
    # *global* tracking URI (mlflow 3.17), which need not be this client's.
    version = client.create_model_version(
        name, source=source, run_id=run_id or source_run, tags=tags, model_id=model_id, await_creation_for=0
    )
    if model_id:  # what mlflow.register_model records, so the UI links the logged model to its versions
        linked = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
        linked.append({"name": name, "version": version.version})
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(linked)})
    return version


def champion_version(
    name: str, tracking_uri: str | None = None, alias: str = CHAMPION
) -> ModelVersion | None:
    """The version of ``name`` that holds ``alias``, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    client = make_client(resolve_tracking_uri(tracking_uri))
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _beats(new: float, old: float, mode: str) -> bool:
    return new < old if mode == "min" else new > old


def register_champion(
    model_uri: str,
    name: str,
    metric_name: str,
    metric_value: float,
    mode: Literal["min", "max"],
    run_id: str | None,
    config: GanConfig,
    tracking_uri: str | None = None,
    *,
    alias: str = CHAMPION,
) -> tuple[int, bool]:
    """Register ``model_uri`` as a new version of ``name``; move ``alias`` to it only if it beats the
    current holder's ``metric_name`` (strictly, in direction ``mode``). Returns (version, promoted).

    The version is tagged with the metric (name, value, mode), the source run and the config YAML;
    the holder's metric is read back from those tags. A non-finite metric never promotes. Not
    atomic: register from one process (e.g. the sweep driver), not from concurrent trials.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    metric_value = float(metric_value)
    tracking_uri = resolve_tracking_uri(tracking_uri)
    client = make_client(tracking_uri)
    _ensure_registered_model(client, name)
    current = champion_version(name, tracking_uri, alias)
    if current is not None:
        held_by = current.tags.get(TAG_METRIC_NAME)
        if held_by is not None and held_by != metric_name:
            raise ValueError(
                f"registered model {name!r}: alias {alias!r} (version {current.version}) was ranked by "
                f"{held_by!r}, not {metric_name!r}; register under another name"
            )
    tags = {
        TAG_METRIC_NAME: metric_name,
        TAG_METRIC_VALUE: repr(metric_value),
        TAG_METRIC_MODE: mode,
        TAG_CONFIG: config_yaml(config),
        TAG_LOSS: config.loss.name,
        TAG_DATASET: config.data.name,
    }
    if run_id:
        tags[TAG_SOURCE_RUN] = run_id
    version = register_version(client, model_uri, name, run_id=run_id, tags=tags)
    held = _held_value(current) if current is not None else math.nan
    promoted = math.isfinite(metric_value) and (not math.isfinite(held) or _beats(metric_value, held, mode))
    if promoted:
        client.set_registered_model_alias(name, alias, version.version)
    return int(version.version), promoted


def _held_value(version: ModelVersion) -> float:
    """The metric the alias holder was ranked by; NaN (anything finite beats it) if unreadable."""
    try:
        value = float(version.tags[TAG_METRIC_VALUE])
    except (KeyError, ValueError):
        warnings.warn(
            f"version {version.version} of {version.name!r} has no readable {TAG_METRIC_VALUE} tag",
            stacklevel=3,
        )
        return math.nan
    return value if math.isfinite(value) else math.nan
