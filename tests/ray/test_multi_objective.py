"""A multi-objective sweep on a real local Ray, Optuna and MLflow: ring8's modes covered against its
high-quality fraction, a study with two directions, the Pareto front in the report and the champion
the stated rule (knee) picks from it."""

from __future__ import annotations

import optuna
import pytest

from gan_ray.objective import choose_from_front
from gan_ray.training.observers import USABLE

pytestmark = pytest.mark.slow

SPACE = """\
name: t_multi
base:
  data: {name: ring8}
  noise: {dim: 8}
  train: {steps: 400, eval_every: 200, batch_size: 256}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
  optim.lr_d: {log_uniform: [1.0e-4, 1.0e-2]}
objective:
  - {metric: modes_covered, mode: max}
  - {metric: high_quality_fraction, mode: max}
budget: {num_samples: 4, max_concurrent_trials: 2}
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
search: {sampler: tpe, seed: 1, champion: {rule: knee}}
"""


@pytest.fixture(scope="module")
def swept(ray_session, tmp_path_factory):
    from gan_ray.api import sweep

    root = tmp_path_factory.mktemp("multi")
    (root / "t_multi.yaml").write_text(SPACE)
    env = {
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "study_storage": f"sqlite:///{root / 'optuna.db'}",
    }
    result = sweep(root / "t_multi.yaml", storage_path=str(root / "ray_results"), verbose=0, **env)
    return result, env


def test_optuna_holds_both_objectives_as_the_trials_reported_them(swept):
    result, env = swept
    study = optuna.load_study(study_name=result.study_name, storage=env["study_storage"])
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    told = sorted(tuple(t.values) for t in study.trials if t.state.name == "COMPLETE")
    reported = sorted(t.values for t in result.trials if t.status in USABLE)
    assert told and told == reported


def test_the_champion_is_the_knee_of_the_front_and_the_report_draws_it(swept):
    from gan_ray.objective import Objective
    from gan_ray.tracking.store import make_client

    result, env = swept
    objectives = (Objective("modes_covered", "max"), Objective("high_quality_fraction", "max"))
    usable = [t for t in result.trials if t.status in USABLE]
    assert result.front and result.best in result.front and result.champion_rule == "knee"
    assert result.best is usable[choose_from_front([t.values for t in usable], objectives, "knee")]
    client = make_client(env["tracking_uri"])
    report = {a.path.removeprefix("report/") for a in client.list_artifacts(result.parent_run_id, "report")}
    assert "pareto_front.png" in report
    readme = client.download_artifacts(result.parent_run_id, "report/README.md")
    text = open(readme).read()
    assert "Pareto front" in text and "`knee`" in text
