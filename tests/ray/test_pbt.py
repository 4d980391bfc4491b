"""Population-based training on a real local Ray, a real Optuna study and a real MLflow store (SQLite).

A population of two, perturbed at every eval: the worse trial clones the better one's checkpoint again
and again. After every exploit the trial's next checkpoint must hold the new config's learning rates,
beta1 and k, read back from its live optimisers and step, not the cloned checkpoint's.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import optuna
import pytest

from gan_ray.search.load import parse_search_space
from gan_ray.search.trials import Clone
from gan_ray.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

EVERY = 50
MUTATED = ("optim.lr_g", "optim.lr_d", "optim.beta1", "train.d_steps_per_g_step")

SPACE = f"""\
name: t_pbt
base:
  data: {{name: ring8}}
  noise: {{dim: 8}}
  train: {{steps: 500, eval_every: {EVERY}, batch_size: 64}}
parameters:
  optim.lr_g: {{log_uniform: [1.0e-4, 3.0e-3]}}
  optim.lr_d: {{log_uniform: [1.0e-4, 3.0e-3]}}
  optim.beta1: {{uniform: [0.0, 0.9]}}
  train.d_steps_per_g_step: {{int: [1, 3]}}
  loss.name: {{choice: [non_saturating, hinge]}}
budget: {{num_samples: 2, max_concurrent_trials: 2}}
search: {{seed: 1}}
scheduler:
  type: pbt
  perturbation_interval: 1
  mutate: [{", ".join(MUTATED)}]
  quantile_fraction: 0.5
  resample_probability: 0.25
"""


class Tee:
    """A trial's MLflow run, and a log of what it heard: (kind, payload) in order."""

    def __init__(self, run, events: list):
        self.run, self.events = run, events

    @property
    def run_id(self) -> str | None:
        return self.run.run_id

    def start(self, config) -> None:
        self.run.start(config)

    def on_eval(self, record) -> None:
        if record.folder is not None:
            state = load_checkpoint(Path(record.folder))
            self.events.append(("eval", state["step"], state["hyperparameters"]))
        self.run.on_eval(record)

    def on_clone(self, clone: Clone, lineage) -> None:
        self.events.append(("clone", clone))
        self.run.on_clone(clone, lineage)

    def end(self, outcome) -> None:
        self.run.end(outcome)


class Recorder:
    """The sweep's MLflow recorder, with every trial's events kept for the test."""

    def __init__(self, sweep):
        self.sweep, self.events = sweep, {}

    def trial(self, trial_id, config, params):
        self.events[trial_id] = [("start", dict(params))]
        return Tee(self.sweep.trial(trial_id, config, params), self.events[trial_id])

    def finish(self, result, status, best_folder) -> None:
        self.sweep.finish(result, status, best_folder)


@pytest.fixture(scope="module")
def pbt(ray_session, tmp_path_factory, one_thread):
    from gan_ray.ray.search import study_name_for
    from gan_ray.ray.sweep import run_sweep
    from gan_ray.tracking.sweep import MlflowSweep

    root = tmp_path_factory.mktemp("pbt")
    space = parse_search_space(SPACE, source=str(root / "t_pbt.yaml"))
    study_url = f"sqlite:///{root / 'optuna.db'}"
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    study_name = study_name_for(space.name, study_url, resume=False)
    recorder = Recorder(MlflowSweep(tracking_uri, space, study_name, register=False))
    console = io.StringIO()
    with contextlib.redirect_stderr(console):
        result = run_sweep(
            space,
            study_name=study_name,
            study_url=study_url,
            storage_path=str(root / "ray_results"),
            recorder=recorder,
            verbose=1,
        )
    return {
        "result": result,
        "events": recorder.events,
        "study_url": study_url,
        "tracking_uri": tracking_uri,
        "console": console.getvalue(),
    }


def test_every_exploit_sets_the_new_config_on_the_live_optimisers_and_step(pbt):
    """Every checkpoint a trial writes holds what its latest exploit chose (its start, before one), read
    back from the live optimisers and step; the first after an exploit continues the cloned step."""
    result, events = pbt["result"], pbt["events"]
    assert len(result.trials) == 2 and all(t.status in ("completed", "collapsed") for t in result.trials)
    assert sum(len(t.lineage) for t in result.trials) >= 2, "the worse of two should exploit repeatedly"
    checked = 0
    for trial in result.trials:
        chosen, first_after = None, None
        for event in events[trial.trial_id]:
            if event[0] == "start":
                chosen = event[1]
                continue
            if event[0] == "clone":
                chosen, first_after = event[1].params, event[1]
                continue
            _, step, live = event
            for key in MUTATED:
                assert live[key] == pytest.approx(chosen[key], rel=1e-12), (trial.trial_id, step, key)
            if first_after is not None:
                assert step == first_after.source_step + EVERY, first_after
                donor = evals_at(events[first_after.source], first_after.source_step)
                if donor:  # not the cloned trial's values: the perturbed ones
                    assert any(donor[k] != live[k] for k in MUTATED), first_after
                checked += 1
            first_after = None
        assert trial.params == chosen  # the summary names what it ended with
    assert checked >= 1


def evals_at(heard: list, step: int) -> dict | None:
    return next((e[2] for e in heard if e[0] == "eval" and e[1] == step), None)


def test_the_lineage_is_recorded_on_each_child_run(pbt):
    from gan_ray.tracking.store import make_client

    client = make_client(pbt["tracking_uri"])
    parent = client.get_run(pbt["result"].parent_run_id)
    assert parent.data.params["sweep.scheduler"] == "pbt"
    assert parent.data.params["sweep.pbt.mutate"] == ",".join(MUTATED)
    for trial in pbt["result"].trials:
        run = client.get_run(trial.mlflow_run_id)
        if not trial.lineage:
            assert "gan_ray.pbt.cloned_from" not in run.data.tags
            continue
        tags = run.data.tags
        assert (
            tags["gan_ray.pbt.cloned_from"]
            == f"trial-{trial.lineage[-1].source}@{trial.lineage[-1].source_step}"
        )
        assert tags["gan_ray.pbt.lineage"] == " > ".join(str(c) for c in trial.lineage)
        assert json.loads(tags["gan_ray.pbt.params"]) == trial.lineage[-1].params
        assert tags["gan_ray.loss"] == trial.lineage[-1].params["loss.name"]  # what it trains now
        exploits = client.get_metric_history(run.info.run_id, "pbt_exploits")
        assert [int(m.value) for m in exploits] == list(range(1, len(trial.lineage) + 1))
        lr_g = client.get_metric_history(run.info.run_id, "pbt.optim.lr_g")
        assert [m.value for m in lr_g] == pytest.approx([c.params["optim.lr_g"] for c in trial.lineage])
        assert [m.step for m in lr_g] == [c.source_step for c in trial.lineage]


def test_the_console_tells_each_exploit_in_one_line(pbt):
    lines = [line for line in pbt["console"].splitlines() if " continues trial-" in line]
    clones = [(t, c) for t in pbt["result"].trials for c in t.lineage]
    assert len(lines) == len(clones), pbt["console"]
    trial, clone = clones[0]
    assert any(
        line.startswith(f"gan_ray: trial-{trial.trial_id} at step ") and str(clone) in line for line in lines
    )


def test_the_initial_population_is_drawn_from_the_space_into_the_study(pbt):
    result = pbt["result"]
    study = optuna.load_study(study_name=result.study_name, storage=pbt["study_url"])
    assert len(study.trials) == 2
    for tr in study.trials:
        assert 1e-4 <= tr.params["optim.lr_g"] <= 3e-3 and tr.params["loss.name"] in (
            "non_saturating",
            "hinge",
        )
        assert tr.state == optuna.trial.TrialState.COMPLETE
    # Each member's value is its trial's best objective; the trials began with the drawn params.
    values = sorted(tr.value for tr in study.trials)
    assert values == pytest.approx(sorted(t.best_objective for t in result.trials))
