"""The head node's databases (MLflow's runs and model registry, the Optuna studies) copied to the
cluster's storage on a schedule, and put back on a head that starts without them (a replaced node).

``python -m gan_ray.ray.head_backup backup|restore FOLDER DESTINATION``: FOLDER holds the SQLite files
(``*.db``) and, where MLflow's store is PostgreSQL, the file ``tracking_db`` with its URI (dumped with
``pg_dump`` as ``mlflow.pgdump``); DESTINATION is ``s3://bucket/prefix`` (or any folder). cluster.yaml
runs ``restore`` before the MLflow server starts and ``backup`` from cron.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from gan_ray.ray.storage import exists, get_file, put_file

DATABASES = ("mlflow.db", "optuna.db")
#: The file in the head's folder naming MLflow's store where it is not SQLite (gan_ray/ray/tracking_db.sh).
TRACKING_DB_FILE = "tracking_db"
PG_DUMP = "mlflow.pgdump"


def postgres_uri(folder: str | Path) -> str | None:
    """The PostgreSQL URI in ``folder``'s ``tracking_db`` file, as libpq takes it (no ``+driver``)."""
    path = Path(folder).expanduser() / TRACKING_DB_FILE
    uri = path.read_text().strip() if path.is_file() else ""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme.startswith("postgres"):
        return None
    return "postgresql://" + rest


def backup(folder: str | Path, destination: str) -> list[str]:
    """Copy every SQLite database in ``folder`` to ``destination``; returns where each went.

    Through SQLite's online backup, not a file copy: the MLflow server and a sweep may be writing,
    and a copy taken mid-transaction would not open.
    """
    done = []
    with tempfile.TemporaryDirectory(prefix="gan_ray_backup_") as tmp:
        for db in sorted(Path(folder).expanduser().glob("*.db")):
            snapshot = Path(tmp) / db.name
            with (
                contextlib.closing(sqlite3.connect(db)) as source,
                contextlib.closing(sqlite3.connect(snapshot)) as target,
            ):
                source.backup(target)
            done.append(put_file(snapshot, destination, db.name))
        uri = postgres_uri(folder)
        if uri is not None:
            dump = Path(tmp) / PG_DUMP
            # The custom format: compressed, and pg_restore can put it into an empty database.
            _pg("pg_dump", "--format=custom", "--no-owner", f"--file={dump}", f"--dbname={uri}")
            done.append(put_file(dump, destination, PG_DUMP))
    return done


def _pg(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=3600).stdout


def restore_postgres(uri: str, destination: str) -> bool:
    """Put the latest dump back into the database at ``uri`` when it has no tables yet (a new head's
    fresh PostgreSQL); a database with tables is never touched. Returns whether it restored."""
    tables = _pg(
        "psql",
        f"--dbname={uri}",
        "-tAc",
        "select count(*) from information_schema.tables where table_schema='public'",
    )
    remote = destination.rstrip("/") + "/" + PG_DUMP
    if int(tables.strip() or 0) or not exists(remote):
        return False
    with tempfile.TemporaryDirectory(prefix="gan_ray_restore_") as tmp:
        dump = Path(tmp) / PG_DUMP
        get_file(remote, dump)
        _pg("pg_restore", "--no-owner", "--exit-on-error", f"--dbname={uri}", str(dump))
    return True


def restore(folder: str | Path, destination: str, names: tuple[str, ...] = DATABASES) -> list[Path]:
    """Put back each of ``names`` that ``folder`` lacks and ``destination`` has; returns what it wrote.

    A database already in ``folder`` is never replaced: a head that was stopped and started again
    has its own, newer than any backup.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        local, remote = folder / name, destination.rstrip("/") + "/" + name
        if local.exists() or not exists(remote):
            continue
        partial = local.with_suffix(".restoring")
        get_file(remote, partial)
        partial.rename(local)  # never a half-copied database where the server looks
        written.append(local)
    uri = postgres_uri(folder)
    if uri is not None and restore_postgres(uri, destination):
        written.append(folder / PG_DUMP)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gan_ray.ray.head_backup", description=__doc__)
    parser.add_argument("action", choices=("backup", "restore"))
    parser.add_argument("folder", help="the folder of the head's SQLite databases")
    parser.add_argument("destination", help="s3://bucket/prefix, or a folder")
    args = parser.parse_args(argv)
    if args.action == "backup":
        for where in backup(args.folder, args.destination):
            print(f"backed up: {where}")
    else:
        restored = restore(args.folder, args.destination)
        print(f"restored: {', '.join(map(str, restored))}" if restored else "restored: nothing needed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
