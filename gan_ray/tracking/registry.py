"""The model registry: versions of a registered generator, and a ``champion`` alias that only moves to a
better one (by the sweep's :class:`~gan_ray.objective.Objective`)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gan_ray.config import GanConfig, config_yaml
from gan_ray.data.catalog import RENAMED_METRICS
from gan_ray.objective import Mode, Objective
from gan_ray.tracking.card import model_card
from gan_ray.tracking.store import (
    TAG_DATASET,
    TAG_EVAL_SAMPLES,
    TAG_FEATURE_EXTRACTOR,
    TAG_LOSS,
    make_client,
    resolve_tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
GENERATOR_NAME = "generator"  # the name a logged generator has in its run (gan_ray.tracking.model)

TAG_METRIC_NAME = "gan_ray.metric_name"
TAG_METRIC_VALUE = "gan_ray.metric_value"
TAG_METRIC_MODE = "gan_ray.metric_mode"
TAG_SOURCE_RUN = "gan_ray.source_run_id"
TAG_CONFIG = "gan_ray.config"
TAG_LOGGED_MODEL = "gan_ray.logged_model_id"


def default_model_name(sweep_name: str) -> str:
    """The registered model a sweep's best generators go to."""
    return f"gan_ray-{sweep_name}".replace("/", "-")


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


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(
            name,
            description=(
                f"gan_ray generators. `@{CHAMPION}` is the best so far by the metric in each version's "
                "tags, compared only between versions scored alike (dataset, samples, feature extractor). "
                f"Use it without gan_ray: `mlflow.pyfunc.load_model('models:/{name}@{CHAMPION}').predict(noise)`, "
                f"or `mlflow models serve -m models:/{name}@{CHAMPION} --env-manager local`; each version's "
                f"description is its model card. With gan_ray: "
                f"`gan_ray.load_generator('models:/{name}@{CHAMPION}')`."
            ),
        )
    except MlflowException:
        client.get_registered_model(name)  # created concurrently: fine; anything else raises here


def register_version(
    client: MlflowClient,
    model_uri: str,
    name: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
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
        name,
        source=source,
        run_id=run_id or source_run,
        tags=tags,
        description=description,
        model_id=model_id,
        await_creation_for=0,
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


def register_champion(
    model_uri: str,
    name: str,
    metric_name: str,
    metric_value: float,
    mode: Mode,
    run_id: str | None,
    config: GanConfig,
    tracking_uri: str | None = None,
    *,
    alias: str = CHAMPION,
    scoring: Mapping[str, str] | None = None,
    searched: Mapping[str, Any] | None = None,
) -> tuple[int, bool]:
    """Register ``model_uri`` as a new version of ``name``; move ``alias`` to it only if it beats the
    current holder's ``metric_name`` (strictly, in direction ``mode``). Returns (version, promoted).

    The version is tagged with the metric (name, value, mode), the source run, the config YAML and
    ``scoring``: how the value was measured (dataset, sample count, feature extractor; see
    :func:`scoring_tags`). Its description is the model card (:func:`gan_ray.tracking.card.model_card`),
    with ``searched``, the sweep's searched parameters and this version's values. The holder is beaten only by a value measured the same way: a holder scored
    otherwise keeps the alias (:func:`incomparable` says why). A non-finite metric never promotes. Not
    atomic: register from one process (e.g. the sweep driver), not from concurrent trials.
    """
    objective = Objective(metric_name, mode)  # raises for a mode that is neither min nor max
    metric_value = float(metric_value)
    tracking_uri = resolve_tracking_uri(tracking_uri)
    client = make_client(tracking_uri)
    _ensure_registered_model(client, name)
    current = champion_version(name, tracking_uri, alias)
    if current is not None:
        held_by = current.tags.get(TAG_METRIC_NAME)
        held_by = RENAMED_METRICS.get(held_by, held_by)  # a version registered before the rename
        if held_by is not None and held_by != metric_name:
            raise ValueError(
                f"registered model {name!r}: alias {alias!r} (version {current.version}) was ranked by "
                f"{held_by!r}, not {metric_name!r}; register under another name"
            )
    scoring = dict(scoring or {TAG_DATASET: config.data.name})
    tags = {
        TAG_METRIC_NAME: metric_name,
        TAG_METRIC_VALUE: repr(metric_value),
        TAG_METRIC_MODE: mode,
        TAG_CONFIG: config_yaml(config),
        TAG_LOSS: config.loss.name,
        TAG_DATASET: config.data.name,
        **scoring,
    }
    if run_id:
        tags[TAG_SOURCE_RUN] = run_id
    measured = ", ".join(f"{k.removeprefix('gan_ray.')} {v}" for k, v in sorted(scoring.items()))
    summary = (
        f"{metric_name} = {metric_value:.4g} ({mode}; {measured}). {config.loss.name} loss, "
        f"{config.model_name} model" + (f", from run `{run_id}`." if run_id else ".")
    )
    version = register_version(client, model_uri, name, run_id=run_id, tags=tags, description=summary)
    card = model_card(
        summary=summary,
        model_uri=f"models:/{name}/{version.version}",
        metric=metric_name,
        value=metric_value,
        mode=mode,
        scoring=scoring,
        config=config,
        searched=searched,
    )
    client.update_model_version(name, version.version, description=card)  # the card names its version
    held = _held_value(current) if current is not None else math.nan
    promoted = objective.better(metric_value, held) and (
        current is None or incomparable(current, scoring) is None
    )
    if promoted:
        client.set_registered_model_alias(name, alias, version.version)
    return int(version.version), promoted


def scoring_tags(dataset: str, samples: int, feature_extractor: str | None = None) -> dict[str, str]:
    """How a registered score was measured: only scores measured alike are compared."""
    tags = {TAG_DATASET: dataset, TAG_EVAL_SAMPLES: str(samples)}
    if feature_extractor is not None:
        tags[TAG_FEATURE_EXTRACTOR] = feature_extractor
    return tags


def incomparable(holder: ModelVersion, scoring: Mapping[str, str]) -> str | None:
    """Why the alias holder's score cannot be compared with one measured as ``scoring`` says (None: it can)."""
    differences = [
        f"{key.removeprefix('gan_ray.')} {holder.tags.get(key)!r} vs {value!r}"
        for key, value in scoring.items()
        if holder.tags.get(key) != value
    ]
    if not differences:
        return None
    return f"version {holder.version} was scored otherwise: " + ", ".join(differences)


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
