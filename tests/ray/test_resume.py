"""``--resume`` never silently starts over: with no study of the sweep in the study storage it is one
line and exit 2, before Ray, MLflow or Optuna changes anything. Real SQLite Optuna storages in tmp."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from gan_ray import settings
from gan_ray.errors import StudyNotFoundError
from gan_ray.ray.search import latest_study, study_name_for

SPACE = """\
name: t_resume
base:
  data: {name: ring8}
  train: {steps: 20, eval_every: 10}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
budget: {num_samples: 1}
"""


def _study(url: str, name: str) -> None:
    optuna.create_study(study_name=name, storage=url)


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_resume_finds_the_latest_study_of_the_sweep(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    for name in ("t_resume-20261101-100000", "t_resume-20261201-090000", "t_resume_other-20261231-000000"):
        _study(url, name)
    assert latest_study("t_resume", url) == "t_resume-20261201-090000"
    assert study_name_for("t_resume", url, resume=True) == "t_resume-20261201-090000"
    fresh = study_name_for("t_resume", url, resume=False)
    assert fresh.startswith("t_resume-") and fresh != "t_resume-20261201-090000"


def test_a_storage_file_that_does_not_exist_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "nowhere" / "optuna.db"
    with pytest.raises(StudyNotFoundError) as err:
        study_name_for("t_resume", f"sqlite:///{missing}", resume=True)
    msg = str(err.value)
    assert "\n" not in msg and "'t_resume'" in msg and f"the file {missing} does not exist" in msg
    assert "--study-storage" in msg and "GAN_RAY_OPTUNA_STORAGE" in msg and "without --resume" in msg
    assert not missing.parent.exists()


def test_a_storage_without_the_sweeps_study_names_what_it_holds(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _study(url, "ring8-20261201-090000")
    before = optuna.get_all_study_summaries(storage=url)
    with pytest.raises(StudyNotFoundError, match=r"\(it holds ring8-20261201-090000\)"):
        study_name_for("t_resume", url, resume=True)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage=url)] == [
        s.study_name for s in before
    ]


def test_a_database_that_is_not_optunas_is_refused_untouched(tmp_path):
    # E.g. --study-storage pointed at MLflow's database: Optuna would add its tables to it.
    other = tmp_path / "mlflow.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE runs (id TEXT)")
    with pytest.raises(StudyNotFoundError, match="is not an Optuna database"):
        latest_study("t_resume", f"sqlite:///{other}")
    assert _tables(other) == {"runs"}


def test_an_in_memory_storage_has_nothing_to_resume():
    with pytest.raises(StudyNotFoundError, match="in-memory"):
        latest_study("t_resume", "sqlite:///:memory:")


def test_the_default_study_storage_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GAN_RAY_OPTUNA_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert settings.study_storage() == f"sqlite:///{tmp_path / 'optuna.db'}"
    monkeypatch.setenv("GAN_RAY_OPTUNA_STORAGE", "sqlite:////srv/state/optuna.db")
    assert settings.study_storage() == "sqlite:////srv/state/optuna.db"


def _sweep(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    base.pop("GAN_RAY_OPTUNA_STORAGE", None)
    cmd = [sys.executable, "-m", "gan_ray", "sweep", *args]
    return subprocess.run(cmd, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=300)


def test_resume_with_nothing_to_resume_is_one_line_before_anything_starts(tmp_path):
    """As on a cluster job: a fresh working folder, the study storage named by the environment (what
    cluster.yaml exports). Nothing is created: no MLflow database, no Ray results, no Optuna file."""
    space = tmp_path / "t_resume.yaml"
    space.write_text(SPACE)
    work = tmp_path / "job"
    work.mkdir()
    state = tmp_path / "head" / "optuna.db"
    done = _sweep([str(space), "--resume"], work, GAN_RAY_OPTUNA_STORAGE=f"sqlite:///{state}")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("gan-ray: error: nothing to resume: no Optuna study of sweep 't_resume'"), line
    assert str(state) in line
    assert list(work.iterdir()) == [] and not state.parent.exists()

    # The same storage holding only another sweep's study: refused too, and left as it was.
    state.parent.mkdir()
    _study(f"sqlite:///{state}", "ring8-20261201-090000")
    done = _sweep([str(space), "--resume", "--study-storage", f"sqlite:///{state}"], work)
    assert done.returncode == 2 and "it holds ring8-20261201-090000" in done.stderr, done.stderr
    assert list(work.iterdir()) == []


# --- what an interrupted sweep left behind ----------------------------------------------------------


def _interrupted_study(url: str) -> str:
    """A study as a killed driver leaves it: two trials ended, one failed by itself (a divergence), one
    failed by a Ctrl-C, two still RUNNING."""
    from gan_ray.ray.search import INTERRUPTED_ATTR

    study = optuna.create_study(study_name="t_resume-20261202-120000", storage=url)
    for value in (0.5, 0.25):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, value)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    ctrl_c = study.ask()
    ctrl_c.set_user_attr(INTERRUPTED_ATTR, "the sweep was interrupted")
    study.tell(ctrl_c, state=optuna.trial.TrialState.FAIL)
    study.ask(), study.ask()
    return study.study_name


def test_a_resume_fails_the_trials_a_dead_driver_left_running_and_says_why(tmp_path):
    from gan_ray.ray.search import INTERRUPTED_ATTR, fail_running_trials, finished_trials

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = _interrupted_study(url)
    assert finished_trials(name, url) == 3  # the Ctrl-C'd and the RUNNING ones will run again
    assert fail_running_trials(name, url, "the driver died") == [4, 5]
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL", "FAIL", "FAIL"]
    assert [t.user_attrs.get(INTERRUPTED_ATTR) for t in trials[4:]] == ["the driver died"] * 2
    assert finished_trials(name, url) == 3
    assert fail_running_trials(name, url, "again") == []


def test_resume_runs_what_the_plan_still_misses(tmp_path):
    from gan_ray.api import _rest_of_plan
    from gan_ray.errors import ConfigError
    from gan_ray.search.load import parse_search_space

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = _interrupted_study(url)
    space = parse_search_space(SPACE.replace("num_samples: 1", "num_samples: 5"))
    assert _rest_of_plan(space, name, url).budget.num_samples == 2
    with pytest.raises(ConfigError, match=r"3 finished trial\(s\) of the 3 planned.*--num-samples"):
        _rest_of_plan(parse_search_space(SPACE.replace("num_samples: 1", "num_samples: 3")), name, url)


def test_a_checkpoint_that_is_gone_is_told_apart(tmp_path):
    # A resumed sweep drops an earlier trial whose checkpoint a storage clean-up removed: it could be
    # neither scored again nor registered.
    from gan_ray.ray.train import checkpoint_exists

    folder = tmp_path / "trial_0001" / "checkpoint_000002"
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"x")
    assert checkpoint_exists(str(folder))
    (folder / "checkpoint.pt").unlink()
    folder.rmdir()
    assert not checkpoint_exists(str(folder))
