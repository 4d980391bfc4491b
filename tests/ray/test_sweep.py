"""Sweeps on a real local Ray, a real Optuna study (SQLite) and a real MLflow store (SQLite).

One module-scoped sweep of five trials (one forced to diverge, one to collapse) feeds most
assertions; a resumed sweep and a deliberately worse sweep follow.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import optuna
import pytest

import gan_ray
from gan_ray.objective import Objective
from gan_ray.search.load import load_search_space
from gan_ray.tracking.run import logged_sample_steps
from gan_ray.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

SPACE = """\
name: t_sweep
base:
  data: {name: ring8}
  noise: {dim: 8}
  train: {steps: 900, eval_every: 300, batch_size: 256}
parameters:
  optim.lr_g: {log_uniform: [1.0e-3, 10.0]}
  optim.lr_d: {log_uniform: [1.0e-3, 1.0e9]}
  optim.beta1: {uniform: [0.0, 0.9]}
  train.d_steps_per_g_step: {int: [1, 2]}
  noise.distribution: {choice: [normal, uniform, hypersphere]}
  loss.name: {choice: [non_saturating, least_squares, wasserstein, wgan_gp, rpgan]}
  loss.params.clip: {log_uniform: [0.01, 0.1], when: {loss.name: wasserstein}}
  loss.params.gp_weight: {uniform: [1.0, 10.0], when: {loss.name: wgan_gp}}
  penalty.name: {choice: [none, r1, r1_r2], when: {loss.name: [non_saturating, least_squares, wasserstein, rpgan]}}
  penalty.weight: {log_uniform: [0.1, 2.0], when: {penalty.name: [r1, r1_r2]}}
  penalty.schedule: {choice: [constant, cosine], when: {penalty.name: [r1, r1_r2]}}
  train.ema_decay: {choice: [null, 0.9, 0.99]}
  optim.lr_schedule: {choice: [constant, linear, cosine]}
budget: {num_samples: 5, max_concurrent_trials: 2}
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
search:
  sampler: tpe
  seed: 3
  initial_points:
    - {optim.lr_g: 2.0e-3, optim.lr_d: 2.0e-3, optim.beta1: 0.5, train.d_steps_per_g_step: 1,
       noise.distribution: normal, loss.name: rpgan, penalty.name: r1_r2, penalty.weight: 0.5,
       penalty.schedule: cosine, train.ema_decay: 0.9, optim.lr_schedule: linear}
    - {optim.lr_g: 2.0e-3, optim.lr_d: 1.0e8, optim.beta1: 0.5, train.d_steps_per_g_step: 1,
       noise.distribution: uniform, loss.name: least_squares, penalty.name: none, train.ema_decay: null,
       optim.lr_schedule: constant}
    - {optim.lr_g: 1.5e-3, optim.lr_d: 1.5e-3, optim.beta1: 0.3, train.d_steps_per_g_step: 2,
       noise.distribution: hypersphere, loss.name: wasserstein, loss.params.clip: 0.05,
       penalty.name: none, train.ema_decay: 0.99, optim.lr_schedule: cosine}
    - {optim.lr_g: 1.0e-3, optim.lr_d: 1.2e-3, optim.beta1: 0.0, train.d_steps_per_g_step: 1,
       noise.distribution: normal, loss.name: wgan_gp, loss.params.gp_weight: 5.0,
       train.ema_decay: null, optim.lr_schedule: constant}
    # G's learning rate so large that every ReLU of G is dead by step 300: all its samples are one
    # point (std 0 at every eval, seeds 0 and 1 alike), so it ends collapsed whether ASHA stops it at
    # step 300 or not.
    - {optim.lr_g: 10.0, optim.lr_d: 2.0e-3, optim.beta1: 0.5, train.d_steps_per_g_step: 1,
       noise.distribution: normal, loss.name: non_saturating, penalty.name: none, train.ema_decay: null,
       optim.lr_schedule: constant}
"""


@pytest.fixture(scope="module")
def env(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    path = root / "t_sweep.yaml"
    path.write_text(SPACE)
    return {
        "space": path,
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "storage_path": str(root / "ray_results"),
        "study_storage": f"sqlite:///{root / 'optuna.db'}",
        "root": root,
    }


def run(env, path=None, **kw):
    from gan_ray.api import sweep

    return sweep(
        path or env["space"],
        tracking_uri=env["tracking_uri"],
        storage_path=env["storage_path"],
        study_storage=env["study_storage"],
        verbose=0,
        **kw,
    )


@pytest.fixture(scope="module")
def first(env):
    stderr = io.StringIO()  # the driver's console: the ledger's warning lines
    with contextlib.redirect_stderr(stderr):
        result = run(env)
    env["first_stderr"] = stderr.getvalue()
    return result


def collapsing(trial_params: dict) -> bool:
    """The initial point whose G collapses onto one point (its learning rate is huge)."""
    return float(trial_params["optim.lr_g"]) > 1.0


def test_sweep_completes_with_a_best_trial_despite_a_diverged_and_a_collapsed_one(first, env):
    assert len(first.trials) == 5
    by_loss = {t.params["loss.name"]: t for t in first.trials}
    assert by_loss["least_squares"].status == "diverged"
    (collapsed,) = [t for t in first.trials if collapsing(t.params)]
    assert collapsed.status == "collapsed" and collapsed.health == "no_variance", collapsed
    assert all(
        t.status in ("completed", "stopped_early") and t.health == "ok"
        for t in first.trials
        if t.params["loss.name"] != "least_squares" and not collapsing(t.params)
    )
    assert first.best is not None and first.best.status in ("completed", "stopped_early")
    assert first.best.params["loss.name"] != "least_squares" and first.best is not collapsed
    # The driver said so, in one line, when its health turned bad and when it ended.
    name = f"trial-{collapsed.trial_id}"
    lines = [line for line in env["first_stderr"].splitlines() if name in line and "warning" in line]
    turned = f"gan_ray: warning: {name} is unhealthy (no_variance) at step 300: G's samples do not vary"
    assert lines and lines[0].startswith(turned), lines
    ended = f"gan_ray: warning: {name} collapsed at step {collapsed.last_step}: G's samples do not vary"
    assert any(line.startswith(ended) for line in lines), lines
    assert math.isfinite(first.best.best_objective) and first.best.best_checkpoint
    # Results of the other trials were not lost: each has its evals and a checkpoint.
    for t in first.trials:
        if t.status != "diverged":
            assert t.last_step >= 300 and t.best_checkpoint


def test_every_searched_parameter_reaches_the_trainer(first, env):
    checked = 0
    for t in first.trials:
        if t.status == "diverged":
            continue
        state = load_checkpoint(t.best_checkpoint)
        used = state["hyperparameters"]  # read back from the live optimisers, loss and step
        for key, value in t.params.items():
            if isinstance(value, float):
                assert used[key] == pytest.approx(value, rel=1e-9), key
            else:
                assert used[key] == value, key
            checked += 1
        assert state["config"]["train"]["steps"] == 900  # the base reached it too
    assert checked >= 3 * 8  # lrs, beta1, k, noise, loss, EMA, schedule (+ the loss's own)
    # The penalty axis reached it too: R3GAN's point trained with R1 + R2 at gamma 0.5 on a cosine.
    (r3gan,) = [t for t in first.trials if t.params["loss.name"] == "rpgan"]
    used = load_checkpoint(r3gan.best_checkpoint)["hyperparameters"]
    assert (used["penalty.name"], used["penalty.weight"], used["penalty.schedule"]) == (
        "r1_r2",
        0.5,
        "cosine",
    )
    # And what Tune ran is what Optuna sampled.
    study = optuna.load_study(study_name=first.study_name, storage=env["study_storage"])
    sampled = sorted(sorted(tr.params.items()) for tr in study.trials)
    assert sampled == sorted(sorted(t.params.items()) for t in first.trials)


def test_optuna_is_told_each_trials_best_eval_the_number_the_champion_is_chosen_by(first, env):
    """Optuna's value is the trial's best objective over its evals, not its last. A collapsed trial keeps
    its value (it ran; only the champion rule skips it). A trial ASHA stopped is PRUNED, its value the
    best objective at the step it was stopped at (its last intermediate value): TPE must not take a
    third of a run for a finished one."""
    study = optuna.load_study(study_name=first.study_name, storage=env["study_storage"])
    by_params = {tuple(sorted(tr.params.items())): tr for tr in study.trials}
    usable = [t for t in first.trials if t.status in ("completed", "stopped_early", "collapsed")]
    assert any(t.status == "stopped_early" for t in usable), [t.status for t in first.trials]
    for t in usable:
        told = by_params[tuple(sorted(t.params.items()))]
        stopped = t.last_step < 900
        assert told.state == (optuna.trial.TrialState.PRUNED if stopped else optuna.trial.TrialState.COMPLETE)
        assert told.value == pytest.approx(t.best_objective, rel=1e-12), t.trial_id
        if stopped:  # Optuna holds its evals up to the step it was stopped at (one report an eval)
            assert max(told.intermediate_values) * 300 == t.last_step, t.trial_id


def test_conditional_parameters_only_with_their_loss(first, env):
    study = optuna.load_study(study_name=first.study_name, storage=env["study_storage"])
    assert len(study.trials) == 5
    for tr in study.trials:
        loss = tr.params["loss.name"]
        assert ("loss.params.clip" in tr.params) == (loss == "wasserstein")
        assert ("loss.params.gp_weight" in tr.params) == (loss == "wgan_gp")
        assert ("penalty.name" in tr.params) == (loss != "wgan_gp")  # it carries gp itself
        penalised = tr.params.get("penalty.name", "none") != "none"
        assert ("penalty.weight" in tr.params) == penalised == ("penalty.schedule" in tr.params)
    assert {tr.params["loss.name"] for tr in study.trials} >= {"rpgan", "wgan_gp", "non_saturating"}
    states = {tr.params["loss.name"]: tr.state for tr in study.trials}
    assert states["least_squares"] == optuna.trial.TrialState.FAIL


def test_mlflow_parent_and_child_runs(first, env):
    from mlflow import MlflowClient

    client = MlflowClient(env["tracking_uri"])
    exp = client.get_experiment_by_name("t_sweep")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = client.get_run(first.parent_run_id)
    assert parent.data.tags["gan_ray.kind"] == "sweep" and parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.parent_run_id]
    assert len(children) == 5
    for child in children:
        params, tags = child.data.params, child.data.tags
        loss = params["loss.name"]
        assert ("loss.params.clip" in params) == (loss == "wasserstein")
        assert ("loss.params.gp_weight" in params) == (loss == "wgan_gp")
        assert tags["gan_ray.loss"] == loss and tags["gan_ray.trial_id"]
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "config.yaml" in artifacts
        if loss == "least_squares":
            assert tags["gan_ray.status"] == "diverged" and child.info.status == "FAILED"
            continue
        if collapsing(params):  # it ran (FINISHED), but G collapsed onto one point: never the champion
            assert (tags["gan_ray.status"], tags["gan_ray.health"]) == ("collapsed", "no_variance")
            assert child.info.status == "FINISHED" and "health" not in child.data.metrics
        else:
            assert tags["gan_ray.status"] in ("completed", "stopped_early") and tags["gan_ray.health"] == "ok"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "mode_distance")]
        assert steps == list(range(300, 300 * len(steps) + 1, 300)) and steps
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "images_per_s", "modes_covered"):
            assert len(client.get_metric_history(child.info.run_id, key)) == len(steps), key
        assert {"loss_curves.png", "images"} <= artifacts
        assert logged_sample_steps(client, child.info.run_id) == steps  # one grid per eval, on its step
    parent_artifacts = {a.path for a in client.list_artifacts(first.parent_run_id)}
    assert {"trials.csv", "t_sweep.yaml", "base_config.yaml"} <= parent_artifacts
    assert parent.data.params["best.trial_id"] == first.best.trial_id
    assert parent.data.metrics["best_mode_distance"] == pytest.approx(first.best.best_objective)
    # What a person reads in the UI: a model-training experiment, and a parent run that says who won.
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    note = parent.data.tags["mlflow.note.content"]
    assert f"{len(first.trials)} trials" in note and " diverged" in note and "`mode_distance` (min)" in note
    assert "1 collapsed" in note and "never the champion" in note
    assert (
        f"trial `{first.best.trial_id}`" in note
        and f"models:/{first.model_name}/{first.model_version}" in note
    )


def test_child_runs_compare_well_and_the_parent_run_holds_the_report(first, env):
    from gan_ray.tracking.store import make_client

    client = make_client(env["tracking_uri"])
    searched = ",".join(load_search_space(env["space"]).searched_keys)
    assert searched.startswith("optim.lr_g,optim.lr_d,optim.beta1,") and "loss.params.clip" in searched
    parent = client.get_run(first.parent_run_id)
    assert parent.data.tags["gan_ray.searched_params"] == searched
    for t in first.trials:
        child = client.get_run(t.mlflow_run_id)
        tags = child.data.tags
        assert tags["gan_ray.searched_params"] == searched and tags["gan_ray.version"] == gan_ray.__version__
        if t.status == "diverged":
            continue
        # The runs table's best_mode_distance is what the sweep ranked the trial by, at the step it kept.
        assert child.data.metrics["best_mode_distance"] == pytest.approx(t.best_objective)
        best_step = int(child.data.metrics["best_mode_distance_step"])
        assert best_step == load_checkpoint(t.best_checkpoint)["step"], t.trial_id
    # The report: its few completed trials (ASHA's stopped ones are PRUNED, and fANOVA leaves them out)
    # are too few for importances, and the Description says so.
    study = optuna.load_study(study_name=first.study_name, storage=env["study_storage"])
    complete = [tr for tr in study.trials if tr.state == optuna.trial.TrialState.COMPLETE]
    assert 0 < len(complete) < len(study.trials)
    assert f"No importances: {len(complete)} completed trial(s)" in parent.data.tags["mlflow.note.content"]
    report = {a.path.removeprefix("report/") for a in client.list_artifacts(first.parent_run_id, "report")}
    assert {"README.md", "trials.csv", "history.png", "parallel_coordinates.png"} <= report
    assert "importances.png" not in report and not any(
        k.startswith("importance.") for k in parent.data.metrics
    )


def test_champion_is_the_best_trial_and_samples_reproducibly(first, env):
    from gan_ray.sampling import load_generator
    from gan_ray.tracking.registry import champion_version

    champion = champion_version(first.model_name, env["tracking_uri"])
    assert champion is not None and str(champion.version) == first.model_version and first.promoted
    assert float(champion.tags["gan_ray.metric_value"]) == pytest.approx(first.best.champion_score)
    assert champion.run_id == first.best.mlflow_run_id
    assert all(champion.run_id != t.mlflow_run_id for t in first.trials if t.status == "collapsed")
    gen = load_generator(f"models:/{first.model_name}@champion", tracking_uri=env["tracking_uri"])
    a, b = gen.sample(64, seed=7), gen.sample(64, seed=7)
    assert a.shape == (64, 2) and (a == b).all()
    assert not (gen.sample(64, seed=8) == a).all()


def test_the_champion_is_chosen_on_a_larger_evaluation_of_the_best_trials(first, env):
    """The best 3 trials' best checkpoints are scored again on 20,000 samples; the champion is the best of
    those scores, which is what the registry records (with the sample count it was measured on)."""
    from gan_ray.tracking.registry import champion_version
    from gan_ray.tracking.store import make_client

    rescored = [t for t in first.trials if t.final_objective is not None]
    usable = [t for t in first.trials if t.status in ("completed", "stopped_early")]
    assert len(rescored) == min(3, len(usable)) and all(t.final_samples == 20000 for t in rescored)
    best_final = min(t.final_objective for t in rescored)
    assert first.best.final_objective == best_final
    champion = champion_version(first.model_name, env["tracking_uri"])
    assert champion.tags["gan_ray.eval_samples"] == "20000"
    assert float(champion.tags["gan_ray.metric_value"]) == pytest.approx(best_final)
    child = make_client(env["tracking_uri"]).get_run(first.best.mlflow_run_id)
    assert child.data.metrics["final_mode_distance"] == pytest.approx(best_final)


def test_resume_adds_trials_to_the_same_study(first, env):
    again = run(env, resume=True, num_samples=2, register=False)
    assert again.study_name == first.study_name
    study = optuna.load_study(study_name=first.study_name, storage=env["study_storage"])
    assert len(study.trials) == 7
    assert len(again.trials) == 2


def test_worse_sweep_adds_a_version_but_keeps_the_champion(first, env):
    from gan_ray.tracking.registry import champion_version

    assert first.best.best_objective < 1.0, "the first sweep should have found some high-quality samples"
    worse = env["root"] / "worse.yaml"
    # The generator barely moves from its initialisation: no sample lands on a mode.
    worse.write_text(
        "name: t_sweep_worse\n"
        "base: {data: {name: ring8}, noise: {dim: 8}, train: {steps: 60, eval_every: 60, batch_size: 64}}\n"
        "parameters:\n  optim.lr_g: {log_uniform: [1.0e-9, 2.0e-9]}\n"
        "budget: {num_samples: 1}\nscheduler: {type: none}\n"
    )
    result = run(env, worse, model_name=first.model_name)
    assert result.best is not None and result.best.best_objective >= first.best.best_objective
    assert int(result.model_version) > int(first.model_version) and not result.promoted
    champion = champion_version(first.model_name, env["tracking_uri"])
    assert str(champion.version) == first.model_version


def test_unreachable_tracking_server_fails_fast(env):
    import time

    from gan_ray.api import sweep
    from gan_ray.errors import TrackingUnavailableError

    t0 = time.perf_counter()
    with pytest.raises(TrackingUnavailableError):
        sweep(env["space"], tracking_uri="http://127.0.0.1:9", study_storage=env["study_storage"], verbose=0)
    assert time.perf_counter() - t0 < 10


def test_shipped_default_space_is_the_readme_main_job():
    space = load_search_space(Path(__file__).resolve().parents[2] / "search_spaces" / "ring8.yaml")
    assert space.objective == Objective("mode_distance", "min") and space.scheduler == "asha"
    assert space.initial_points == ()  # it searches from scratch; the known starts are an option


def test_sweep_runs_without_tracking_and_still_names_its_best(env, tmp_path, capsys):
    """The Tune layer keeps its own trial ledger: no MLflow store is touched, the summary is printed."""
    from gan_ray.cli import main

    tiny = tmp_path / "untracked.yaml"
    tiny.write_text(
        "name: t_untracked\n"
        "base: {data: {name: ring8}, noise: {dim: 8}, train: {steps: 100, eval_every: 50, batch_size: 64}}\n"
        "parameters:\n  optim.lr_g: {log_uniform: [1.0e-3, 2.0e-3]}\n"
        "budget: {num_samples: 2, max_concurrent_trials: 2}\nscheduler: {type: none}\n"
    )
    db = tmp_path / "mlflow.db"
    code = main(
        ["sweep", str(tiny), "--no-tracking", "--tracking-uri", f"sqlite:///{db}"]
        + ["--storage-path", env["storage_path"], "--study-storage", env["study_storage"]]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "sweep t_untracked" in err and "best trial" in err and "mode_distance" in err
    assert "mlflow:" not in err and "model: models:/" not in err
    assert not db.exists(), "a sweep without tracking created an MLflow store"


def test_an_image_sweep_scores_every_trial_with_the_one_extractor_it_handed_out(env, tmp_path):
    """The driver trains (or finds) the feature classifier once, puts it on the sweep's storage, and every
    trial's config points at that file: every child run and the registered version name its identity."""
    import torch

    from gan_ray.tracking.registry import champion_version
    from gan_ray.tracking.store import make_client

    space = tmp_path / "t_digits.yaml"
    space.write_text(
        "name: t_digits\n"
        "base: {data: {name: digits}, model: {g_filters: 8, d_filters: 8}, noise: {dim: 16},\n"
        "       train: {steps: 40, eval_every: 20, batch_size: 32, eval_samples: 256}}\n"
        "parameters:\n  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-3]}\n"
        "budget: {num_samples: 2, max_concurrent_trials: 2}\nscheduler: {type: none}\n"
        "search: {final_eval: {top: 1, samples: 512}}\n"
    )
    result = run(env, space)
    handed = Path(env["storage_path"]) / result.study_name / "feature_extractor.pt"
    identity = torch.load(handed, weights_only=True)["meta"]["cache_id"]
    client = make_client(env["tracking_uri"])
    children = [
        r
        for r in client.search_runs([client.get_experiment_by_name("t_digits").experiment_id])
        if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id
    ]
    assert len(children) == 2
    for child in children:
        assert child.data.tags["gan_ray.feature_extractor"] == identity
        assert child.data.params["metrics.extractor"] == str(handed)
    assert {t.feature_extractor for t in result.trials} == {identity}
    version = champion_version(result.model_name, env["tracking_uri"])
    assert (
        version.tags["gan_ray.feature_extractor"] == identity
        and version.tags["gan_ray.eval_samples"] == "512"
    )


def _refused(response, says: str) -> None:
    """A 400 whose JSON message names the expected shape, never a stack trace."""
    assert response.status_code == 400, response.text[:500]
    error = response.json()
    assert error["error_code"] == "INVALID_PARAMETER_VALUE" and says in error["message"], error["message"][
        :500
    ]
    assert "Traceback" not in response.text and "stack_trace" not in error


def test_the_champion_serves_with_mlflow_models_serve(first, env, tmp_path):
    """``mlflow models serve --env-manager local`` on the sweep's registered champion, as a user starts it:
    the model's own serving example and a batch of noise rows give the samples gan_ray draws; bad input is a
    400 naming the expected shape. One server for all of it."""
    import json

    import numpy as np
    import torch
    from scoring_server import ScoringServer

    from gan_ray.sampling import load_generator
    from gan_ray.tracking.contract import example_noise
    from gan_ray.tracking.model import download_model
    from gan_ray.tracking.registry import champion_version

    uri = f"models:/{first.model_name}@champion"
    local = download_model(uri, tmp_path / "model", env["tracking_uri"])
    generator = load_generator(local)
    cfg = generator.config
    # The version's model card names the values the sweep searched.
    card = champion_version(first.model_name, env["tracking_uri"]).description
    assert "### Using it" in card and "--env-manager local" in card
    assert all(f"| `{key}` | `{value}` |" in card for key, value in first.best.params.items())
    server = ScoringServer(uri, env["tracking_uri"], tmp_path / "serve").start()
    try:
        example = (local / "serving_input_example.json").read_text()
        noise = example_noise(cfg, 500)
        answers = [server.invoke(example), server.invoke({"inputs": noise.tolist()})]
        assert [a.status_code for a in answers] == [200, 200], answers[0].text[:500]
        given = [np.array(json.loads(example)["inputs"]["noise"], np.float32), noise]
        for answer, z in zip(answers, given, strict=True):
            samples = np.array(answer.json()["predictions"], np.float32)
            with torch.no_grad():
                expected = generator.module(torch.from_numpy(z)).numpy()
            assert samples.shape == (len(z), 2) and np.isfinite(samples).all()
            assert np.abs(samples).max() < 10  # ring8's modes lie on the unit circle
            np.testing.assert_allclose(samples, expected, rtol=1e-4, atol=1e-5)

        width = f"shape (n, {cfg.noise_dim})"
        _refused(server.invoke({"inputs": noise[:3, :-1].tolist()}), f"(-1, {cfg.noise_dim})")
        _refused(server.invoke('{"inputs": [[NaN' + ", 0" * (cfg.noise_dim - 1) + "]]}"), width)
        _refused(server.invoke({"inputs": []}), f"(-1, {cfg.noise_dim})")
        _refused(server.invoke({"inputs": {"noise": [[0.0] * cfg.noise_dim] * 32769}}), "got n = 32769")
    finally:
        server.stop()
