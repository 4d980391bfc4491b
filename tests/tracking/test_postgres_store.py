"""PostgreSQL behind the tracking server: a real Tune run of trivial trials, recorded by the sweep's own
ledger and recorder (the tracking bench at a small N), into a real ``mlflow server`` on a real
PostgreSQL started for the test, records every run, metric point and sample image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_a_sweeps_tracking_on_postgres_records_every_run_and_metric(postgres_uri):
    trials, reports = 4, 3
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "tracking_load.py"),
            "--backend-uri",
            postgres_uri,
            "--backend",
            "postgres",
            "--trials",
            str(trials),
            "--every",
            "1",
            "--reports",
            str(reports),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    expected = f"{trials * reports}/{trials * reports}"
    assert row["runs_finished"] == f"{trials}/{trials}"
    assert row["metric_points"] == expected and row["sample_images"] == expected
    assert row["records_lost"] == 0 and row["trial_errors"] == 0
    assert row["reports_seen"] == trials * reports
