"""The runs table a sweep's experiment opens with in the MLflow UI: its objectives, quality metrics and
searched parameters as columns, sorted by the objective (MLflow 3's table starts with no metric column).

The views are MLflow's own shared views (what the UI's Share button writes): an experiment tag
``mlflow.sharedViewState.<key>`` holding the table's state as JSON, opened by ``?viewStateShareKey=<key>``.
"""

from __future__ import annotations

import json

from gan_ray.data.catalog import TRAINING_METRICS
from gan_ray.search.space import SearchSpace

#: MLflow's experiment tag prefix for a shared view of the runs table.
TAG_SHARED_VIEW = "mlflow.sharedViewState."
#: The view sorted by the (first) objective's best; ``gan_ray-<metric>`` sorts by another objective.
VIEW_KEY = "gan_ray"
#: The UI's "Model training" view, whatever a browser remembers (see docs/getting-started.md).
MODEL_TRAINING = "workflowType=machine_learning"


def _column(kind: str, name: str) -> str:
    """A column's key as the UI spells it (its ``makeCanonicalSortKey``)."""
    return f"{kind}.`{name}`"


def view_columns(space: SearchSpace) -> list[str]:
    """The registered model, each objective, the first one's best so far, the other quality metrics (the
    standard suite's too), then the searched parameters: what a person compares trials by."""
    first = space.objective.metric
    objectives = [o.metric for o in (space.objectives or (space.objective,))]
    quality = [m for m in space.base.reported_metrics if m not in TRAINING_METRICS]
    metrics = list(dict.fromkeys([*objectives, f"best_{first}", *quality]))
    return [
        _column("attributes", "Models"),
        *(_column("metrics", m) for m in metrics),
        *(_column("params", p) for p in space.searched_keys),
    ]


def runs_views(space: SearchSpace) -> dict[str, str]:
    """The experiment tags to set: one view sorted by the first objective's best (``gan_ray``), and for a
    multi-objective sweep one per further objective, sorted by its value at the last eval."""
    columns = view_columns(space)
    sorts = {VIEW_KEY: (f"best_{space.objective.metric}", space.objective.mode)}
    for o in space.objectives[1:]:
        sorts[f"{VIEW_KEY}-{o.metric}"] = (o.metric, o.mode)
    return {
        TAG_SHARED_VIEW + key: json.dumps(
            {
                "orderByKey": _column("metrics", metric),
                "orderByAsc": mode == "min",
                "selectedColumns": columns,
            }
        )
        for key, (metric, mode) in sorts.items()
    }


def view_link(experiment_id: str, key: str = VIEW_KEY) -> str:
    """The UI's address of a view, after the server's root (``http://HOST:PORT/``)."""
    return f"#/experiments/{experiment_id}/runs?{MODEL_TRAINING}&viewStateShareKey={key}"
