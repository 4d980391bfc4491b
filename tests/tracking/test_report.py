"""A sweep's report on its parent run (``report/``, ``importance.<param>`` metrics) and ``gan-ray report``,
on a real Optuna study (SQLite) whose trials are drawn from a real search space, and a real SQLite MLflow
store. The objective is a known function of the parameters, so which parameter matters is known."""

from __future__ import annotations

import csv
import itertools
import math
import statistics
import subprocess
import sys

import optuna
import pytest

from gan_ray.cli import main
from gan_ray.objective import Objective
from gan_ray.ray.study import MIN_TRIALS_FOR_IMPORTANCE, read_study
from gan_ray.search.load import parse_search_space
from gan_ray.search.trials import expected_best_of_k
from gan_ray.tracking.report import REPORT_DIR, write_report
from gan_ray.tracking.store import make_client
from gan_ray.tracking.sweep import MlflowSweep

SPACE = """\
name: {name}
base: {{data: {{name: ring8}}, train: {{steps: 100, eval_every: 50}}}}
parameters:
  loss.name: {{choice: [non_saturating, hinge, wasserstein]}}
  optim.lr_g: {{log_uniform: [1.0e-5, 1.0e-2]}}
  optim.lr_d: {{same_as: optim.lr_g}}
  optim.beta1: {{uniform: [0.0, 0.9]}}
  train.d_steps_per_g_step: {{int: [1, 5]}}
  loss.params.clip: {{log_uniform: [0.001, 0.1], when: {{loss.name: wasserstein}}}}
budget: {{num_samples: {per_loss}}}
search: {{sampler: random, seed: 0, stratify: loss.name}}
scheduler: {{type: none}}
"""

PNG = b"\x89PNG\r\n\x1a\n"


def known_objective(params: dict) -> float:
    """mode_distance-like, in [0, 1]: the learning rate's distance from 1e-3 decides nearly everything;
    the loss adds a little (hinge best), beta1 a trace, k nothing."""
    lr = abs(math.log10(params["optim.lr_g"]) + 3) / 2
    loss = {"hinge": 0.0, "non_saturating": 0.05, "wasserstein": 0.1}[params["loss.name"]]
    return min(1.0, 0.6 * lr + loss + 0.01 * params["optim.beta1"])


def make_sweep(store: str, tmp_path, name: str, per_loss: int, failed: int = 0) -> MlflowSweep:
    """A sweep's parent run (as ``gan-ray sweep`` creates it) and its study with ``per_loss`` trials per loss
    drawn from the space, plus ``failed`` trials that failed (diverged)."""
    space = parse_search_space(SPACE.format(name=name, per_loss=max(1, per_loss)))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(
        study_name=f"{name}-1",
        storage=url,
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    for i in range(3 * per_loss + failed):
        if i < 3 * per_loss:  # stratified, as a losses study draws them
            study.enqueue_trial({"loss.name": ["non_saturating", "hinge", "wasserstein"][i % 3]})
        trial = study.ask()
        space.define_by_run(trial)
        if i < 3 * per_loss:
            study.tell(trial, known_objective(trial.params))
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return MlflowSweep(store, space, f"{name}-1", register=False), url


def report_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def artifacts(client, run_id: str) -> dict[str, int]:
    return {a.path: a.file_size for a in client.list_artifacts(run_id, REPORT_DIR)}


def read_csv(client, run_id: str, name: str) -> list[dict[str, str]]:
    text = client.download_artifacts(run_id, f"{REPORT_DIR}/{name}")
    with open(text) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("mode", ["min", "max"])
def test_expected_best_of_k_is_the_mean_best_over_every_subset_of_k(mode):
    values = [0.4, 0.1, 0.9, 0.3, 0.3, 0.7]
    pick = min if mode == "min" else max
    curve = expected_best_of_k(values, Objective("m", mode))
    for k in range(1, len(values) + 1):
        brute = statistics.mean(pick(c) for c in itertools.combinations(values, k))
        assert curve[k - 1] == pytest.approx(brute)
    assert curve[0] == pytest.approx(statistics.mean(values)) and curve[-1] == pick(values)


def test_report_names_what_mattered_and_compares_the_losses(store, tmp_path, capsys):
    sweep, url = make_sweep(store, tmp_path, "report_full", per_loss=8)
    code, out = report_cli(
        ["report_full", "--tracking-uri", store, "--study-storage", url, "--out", str(tmp_path / "files")],
        capsys,
    )
    assert code == 0, out
    client = make_client(store)
    run = client.get_run(sweep.parent_run_id)
    # A metric per parameter every trial has (the conditional clip is not), largest first: the rate.
    importance = {
        k.removeprefix("importance."): v for k, v in run.data.metrics.items() if k.startswith("importance.")
    }
    assert set(importance) == {"loss.name", "optim.lr_g", "optim.beta1", "train.d_steps_per_g_step"}
    assert max(importance, key=importance.get) == "optim.lr_g" and importance["optim.lr_g"] > 0.5
    assert sum(importance.values()) == pytest.approx(1.0)
    assert "optim.lr_g" in out and f"run {sweep.parent_run_id}" in out
    files = artifacts(client, sweep.parent_run_id)
    charts = [
        "importances.png",
        "history.png",
        "parallel_coordinates.png",
        "best_vs_trials_per_loss_name.png",
        "boxplot_per_loss_name.png",
    ]
    for name in charts + ["README.md", "trials.csv", "importances.csv", "best_vs_trials_per_loss_name.csv"]:
        assert files.get(f"{REPORT_DIR}/{name}", 0) > 0, (name, files)
    for name in charts:  # real pictures, also kept in --out
        assert (tmp_path / "files" / name).read_bytes().startswith(PNG)
    # The tables hold the numbers behind the charts.
    trials = read_csv(client, sweep.parent_run_id, "trials.csv")
    assert len(trials) == 24 and all(t["state"] == "COMPLETE" for t in trials)
    values = [float(t["mode_distance"]) for t in trials]
    best = [float(t["best_so_far"]) for t in trials]
    assert best == [min(values[: i + 1]) for i in range(len(values))]
    assert list(trials[0])[4:9] == [
        "loss.name",
        "optim.lr_g",
        "optim.beta1",
        "train.d_steps_per_g_step",
        "loss.params.clip",
    ]  # the space's order
    per_loss = read_csv(client, sweep.parent_run_id, "best_vs_trials_per_loss_name.csv")
    assert [r["loss.name"] for r in per_loss[::8]] == ["non_saturating", "hinge", "wasserstein"]
    for loss in ("non_saturating", "hinge", "wasserstein"):
        rows = [r for r in per_loss if r["loss.name"] == loss]
        own = [v for v, t in zip(values, trials, strict=True) if t["loss.name"] == loss]
        assert [int(r["trials"]) for r in rows] == list(range(1, 9))
        assert float(rows[0]["expected_best"]) == pytest.approx(statistics.mean(own))
        assert float(rows[-1]["expected_best"]) == pytest.approx(min(own))
    ranked = read_csv(client, sweep.parent_run_id, "importances.csv")
    assert ranked[0]["param"] == "optim.lr_g"
    readme = (tmp_path / "files" / "README.md").read_text()
    assert "24 trials (24 complete)" in readme and "fANOVA" in readme


def test_a_study_too_small_for_importances_says_so_and_still_reports(store, tmp_path, capsys):
    sweep, url = make_sweep(store, tmp_path, "report_small", per_loss=1, failed=2)
    code, out = report_cli([f"{sweep.study_name}", "--tracking-uri", store, "--study-storage", url], capsys)
    assert code == 0, out
    assert f"No importances: 3 completed trial(s); fANOVA needs at least {MIN_TRIALS_FOR_IMPORTANCE}" in out
    client = make_client(store)
    run = client.get_run(sweep.parent_run_id)
    assert not [k for k in run.data.metrics if k.startswith("importance.")]
    files = artifacts(client, sweep.parent_run_id)
    assert f"{REPORT_DIR}/importances.png" not in files and f"{REPORT_DIR}/history.png" in files
    readme = client.download_artifacts(sweep.parent_run_id, f"{REPORT_DIR}/README.md")
    text = open(readme).read()
    assert "5 trials (3 complete, 2 fail)" in text and "No importances" in text


def test_a_study_without_a_completed_trial_reports_no_charts(store, tmp_path):
    sweep, url = make_sweep(store, tmp_path, "report_empty", per_loss=0, failed=2)
    record = read_study(sweep.study_name, url, "mode_distance", stratify="loss.name")
    assert not record.completed and not record.importances
    files = {p.name for p in write_report(record, tmp_path / "r")}
    assert files == {"README.md", "trials.csv"}
    assert "No charts: no trial completed." in (tmp_path / "r" / "README.md").read_text()


def test_report_of_an_unknown_sweep_is_one_error_line(store, tmp_path, capsys):
    code, out = report_cli(["no_such_sweep", "--tracking-uri", store], capsys)
    assert code == 2 and out.strip().startswith("gan-ray: error: no sweep found for 'no_such_sweep'")
    assert len(out.strip().splitlines()) == 1
    sweep, _ = make_sweep(store, tmp_path, "report_lost", per_loss=1)
    missing = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    code, out = report_cli(["report_lost", "--tracking-uri", store, "--study-storage", missing], capsys)
    assert code == 2 and f"no Optuna study '{sweep.study_name}' in {missing}" in out


def test_report_help_imports_nothing_heavy():
    """``gan-ray --help`` and ``gan-ray report --help`` answer without torch, Ray, MLflow or Optuna."""
    code = (
        "import sys\nfrom gan_ray.cli import main\n"
        "for argv in (['--help'], ['report', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('heavy:', [m for m in ('torch', 'ray', 'mlflow', 'optuna', 'matplotlib') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "EXPERIMENT_OR_STUDY" in done.stdout and "gan-ray report ring8" in done.stdout
    assert done.stdout.strip().endswith("heavy: []"), done.stdout


def test_the_history_counts_trials_in_whole_numbers():
    """Seen in the UI: four trials drew an axis of "trial 0.5, 1.5"."""
    from gan_ray.objective import Objective
    from gan_ray.search.trials import StudyRecord, StudyTrial
    from gan_ray.tracking.charts import history_figure

    trials = tuple(StudyTrial(i, "COMPLETE", 1.0 - 0.1 * i, {"optim.lr_g": 1e-3}) for i in range(4))
    record = StudyRecord("s", Objective("mode_distance", "min"), trials, ("optim.lr_g",))
    ticks = history_figure(record).axes[0].get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks), ticks


def test_stopped_trials_count_by_their_value_but_not_towards_the_importances(tmp_path):
    """A trial the scheduler stopped is PRUNED in the study: the report's history and expected best keep
    it at the value it had reached (its checkpoint may be the champion), fANOVA leaves it out (a third of
    a run's value beside finished ones' would rank the parameters by what survives the first rung)."""
    space = parse_search_space(SPACE.format(name="pruned", per_loss=1))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(
        study_name="pruned-1", storage=url, sampler=optuna.samplers.RandomSampler(seed=1)
    )
    for i in range(MIN_TRIALS_FOR_IMPORTANCE + 4):
        trial = study.ask()
        space.define_by_run(trial)
        value = known_objective(trial.params)
        trial.report(value, 1)
        if i < 4:  # a stopped trial: Optuna keeps its last intermediate value
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    record = read_study("pruned-1", url, "mode_distance")
    pruned = [t for t in record.trials if t.state == "PRUNED"]
    assert len(pruned) == 4 and all(t in record.completed and t.value is not None for t in pruned)
    assert len(record.completed) == MIN_TRIALS_FOR_IMPORTANCE + 4
    assert (
        record.importances and f"over {MIN_TRIALS_FOR_IMPORTANCE} completed trials" in record.importance_note
    )
