"""Real tracking servers for the tests that need one: PostgreSQL (``initdb`` + ``pg_ctl`` on a loopback
port) and ``mlflow server``, started by the bench's own helpers (``bench/servers.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str):
    """A module of ``bench/`` (not a package: the bench scripts import each other by file name)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def servers():
    return bench_module("servers")


@pytest.fixture(scope="module")
def postgres_uri(servers):
    """A fresh PostgreSQL database (SQLAlchemy URI) on a loopback port, stopped after the module."""
    if servers.postgres_bin("initdb") is None:
        pytest.skip("PostgreSQL's initdb not found (Debian: apt-get install postgresql; .ci/run does)")
    pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[postgres]'")
    postgres = servers.Postgres()
    yield postgres.uri
    postgres.stop()
