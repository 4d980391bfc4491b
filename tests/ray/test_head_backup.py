"""The head's databases outlive the head: a real MLflow store and a real Optuna study are backed up while
open, the head's folder is lost, and a new head gets both back. The "bucket" is a folder: the same
pyarrow filesystem calls as for s3://, which cannot be reached from here."""

from __future__ import annotations

import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import yaml

from gan_ray.ray.head_backup import backup, restore

ROOT = Path(__file__).resolve().parents[2]


def _head_state(folder: Path, store: str) -> tuple[str, str]:
    """A head's ~/mlflow: MLflow's database with a run in it, and an Optuna study with two trials."""
    from gan_ray.tracking.store import make_client

    folder.mkdir(parents=True)
    shutil.copy(store.removeprefix("sqlite:///"), folder / "mlflow.db")
    client = make_client(f"sqlite:///{folder / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("t_backup"))
    client.log_metric(run.info.run_id, "objective", 0.25)
    client.set_terminated(run.info.run_id)
    study = optuna.create_study(
        study_name="t_backup-20261202-120000", storage=f"sqlite:///{folder / 'optuna.db'}"
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    return run.info.run_id, study.study_name


def test_a_replaced_head_gets_its_runs_and_studies_back(tmp_path, store):
    from gan_ray.tracking.store import make_client

    head, bucket = tmp_path / "head" / "mlflow", tmp_path / "bucket" / "head-backup"
    run_id, study_name = _head_state(head, store)
    # Backed up while a writer holds the database open mid-transaction, as MLflow's server may.
    writer = sqlite3.connect(head / "optuna.db")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE studies SET study_name = study_name")
    try:
        where = backup(head, str(bucket))
    finally:
        writer.rollback()
        writer.close()
    assert sorted(Path(w).name for w in where) == ["mlflow.db", "optuna.db"]

    shutil.rmtree(tmp_path / "head")  # the node is replaced: a new, empty disk
    new_head = tmp_path / "new-head" / "mlflow"
    assert sorted(p.name for p in restore(new_head, str(bucket))) == ["mlflow.db", "optuna.db"]
    client = make_client(f"sqlite:///{new_head / 'mlflow.db'}")
    assert client.get_run(run_id).data.metrics["objective"] == 0.25
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{new_head / 'optuna.db'}")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)


def test_restore_never_replaces_a_database_the_head_has(tmp_path):
    bucket, head = tmp_path / "bucket", tmp_path / "head"
    for folder, value in ((bucket, "backup"), (head, "newer")):
        folder.mkdir()
        with sqlite3.connect(folder / "optuna.db") as db:
            db.execute("CREATE TABLE t (v TEXT)")
            db.execute("INSERT INTO t VALUES (?)", (value,))
    assert restore(head, str(bucket)) == []  # mlflow.db is in neither: nothing to do for it
    with sqlite3.connect(head / "optuna.db") as db:
        assert db.execute("SELECT v FROM t").fetchall() == [("newer",)]
    assert restore(tmp_path / "first-start", str(tmp_path / "empty-bucket")) == []


def test_cluster_yaml_restores_before_mlflow_starts_and_backs_up_from_cron(tmp_path, store):
    """The commands cluster.yaml gives the head, run here with the bucket swapped for a folder: the
    restore line, and the cron line's command (its schedule checked apart)."""
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    setup = raw["head_setup_commands"]
    (restore_line,) = [c for c in setup if "head_backup restore" in c]
    (cron_line,) = [c for c in setup if "crontab" in c]
    entry = shlex.split(cron_line.split("echo", 1)[1].split(")", 1)[0])[0]
    fields, command = entry.split()[:5], entry.split(None, 5)[5]
    assert fields == ["*/15", "*", "*", "*", "*"], fields
    # The folder it backs up is the one MLflow's server and the Optuna storage use.
    mlflow_start = next(c for c in raw["head_start_ray_commands"] if "mlflow server" in c)
    assert "$HOME/mlflow/tracking_db" in mlflow_start
    assert "$HOME/mlflow " in command and "~/mlflow " in restore_line

    home, bucket = tmp_path / "home", tmp_path / "bucket"
    _head_state(home / "mlflow", store)

    def run(line: str) -> None:
        local = line.replace("s3://YOUR-BUCKET", str(bucket)).replace("~/venv/bin/python", "$PYTHON")
        local = local.replace("$HOME/venv/bin/python", "$PYTHON")
        env = {"HOME": str(home), "PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
        subprocess.run(["bash", "-c", local], env=env, check=True, timeout=120)

    run(command)
    assert {p.name for p in (bucket / "head-backup").iterdir()} == {"mlflow.db", "optuna.db"}
    shutil.rmtree(home / "mlflow")
    run(restore_line)
    assert {p.name for p in (home / "mlflow").iterdir()} >= {"mlflow.db", "optuna.db"}


def test_a_postgresql_tracking_store_is_dumped_and_put_back_into_a_fresh_database(tmp_path, postgres_uri):
    """gan_ray/ray/tracking_db.sh names the store in ~/mlflow/tracking_db: backup dumps it with pg_dump,
    restore puts the dump into the new head's empty database, and never into one that has tables."""
    import psycopg

    head, bucket = tmp_path / "mlflow", tmp_path / "bucket"
    head.mkdir()
    (head / "tracking_db").write_text(postgres_uri.replace("postgresql://", "postgresql+psycopg://") + "\n")
    with psycopg.connect(postgres_uri, autocommit=True) as db:
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT)")
        db.execute("INSERT INTO runs VALUES ('a', 'FINISHED'), ('b', 'KILLED')")
    backup(head, str(bucket))
    assert (bucket / "mlflow.pgdump").is_file()
    assert restore(head, str(bucket)) == []  # the database has its tables: left alone

    with psycopg.connect(postgres_uri, autocommit=True) as db:
        db.execute("DROP TABLE runs")  # a replaced head: PostgreSQL fresh, the database empty
    assert restore(head, str(bucket)) == [head / "mlflow.pgdump"]
    with psycopg.connect(postgres_uri) as db:
        assert db.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall() == [
            ("a", "FINISHED"),
            ("b", "KILLED"),
        ]
