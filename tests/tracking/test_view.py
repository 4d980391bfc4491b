"""The runs table a sweep's experiment opens with: MLflow shared views naming its objectives, the standard
suite's metrics and the searched parameters as columns, sorted by each objective in its own direction."""

from __future__ import annotations

import json

from gan_ray.search.load import parse_search_space
from gan_ray.tracking.store import make_client
from gan_ray.tracking.sweep import MlflowSweep
from gan_ray.tracking.view import TAG_SHARED_VIEW, runs_views, view_link

SPACE = """\
name: view_fm
base:
  data: {name: fashion_mnist, root: /nowhere}
  metrics: {suite: full}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
  loss.name: {choice: [hinge, non_saturating]}
objective: [{metric: fid_classifier, mode: min}, {metric: recall, mode: max}]
"""


def test_each_objective_has_a_view_sorted_its_own_way_with_the_suite_and_params_as_columns():
    views = {
        k.removeprefix(TAG_SHARED_VIEW): json.loads(v)
        for k, v in runs_views(parse_search_space(SPACE)).items()
    }
    assert set(views) == {"gan_ray", "gan_ray-recall"}
    assert (views["gan_ray"]["orderByKey"], views["gan_ray"]["orderByAsc"]) == (
        "metrics.`best_fid_classifier`",
        True,
    )
    assert (views["gan_ray-recall"]["orderByKey"], views["gan_ray-recall"]["orderByAsc"]) == (
        "metrics.`recall`",
        False,
    )
    columns = views["gan_ray"]["selectedColumns"]
    metrics = [c.removeprefix("metrics.`").removesuffix("`") for c in columns if c.startswith("metrics.")]
    assert metrics[:3] == ["fid_classifier", "recall", "best_fid_classifier"]
    assert {"kid_classifier", "kid_classifier_std", "precision", "density", "coverage"} <= set(metrics)
    assert "loss_d" not in metrics and len(metrics) == len(set(metrics))
    assert columns[-2:] == ["params.`optim.lr_g`", "params.`loss.name`"]


def test_a_sweep_puts_its_views_on_its_experiment_and_links_the_table(store):
    space = parse_search_space(SPACE.replace("name: view_fm", "name: view_fm_store"))
    sweep = MlflowSweep(store, space, "view_fm_store-1", register=False)
    tags = make_client(store).get_experiment(sweep.experiment_id).tags
    assert json.loads(tags[TAG_SHARED_VIEW + "gan_ray"])["orderByKey"] == "metrics.`best_fid_classifier`"
    assert view_link(sweep.experiment_id).endswith("&viewStateShareKey=gan_ray")
