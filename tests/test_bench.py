"""bench/throughput.py runs end to end and prints the JSON lines it promises (ring8 only, quick)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "throughput.py"
THROUGHPUT_KEYS = ("model", "batch", "device", "reference_images_per_s", "gan_ray_images_per_s", "ratio")


def run_bench(*args: str, timeout: float = 120) -> list[dict]:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--device",
            "cpu",
            "--models",
            "ring8",
            "--threads",
            "1",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def positive_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_ring8_prints_throughput_lines():
    lines = run_bench("--no-ray")
    throughput = [line for line in lines if line.get("measurement") == "throughput"]
    assert len(throughput) == 1
    (line,) = throughput
    for key in THROUGHPUT_KEYS:
        assert key in line, key
    assert (line["model"], line["batch"], line["device"]) == ("ring8", 256, "cpu")
    for key in ("reference_images_per_s", "gan_ray_images_per_s", "ratio"):
        assert positive_finite(line[key]), (key, line[key])
    env = [line for line in lines if line.get("measurement") == "environment"]
    assert env and env[0]["torch"]


def test_quick_ray_train_overhead_line(ray_session):
    # In this process, on the session's Ray: a cluster start-up fewer than running the script.
    spec = importlib.util.spec_from_file_location("bench_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    line = bench.ray_overhead(argparse.Namespace(quick=True))
    json.dumps(line)
    assert line["measurement"] == "ray_train_overhead"
    for key in ("ray_train_overhead", "core_images_per_s", "ray_worker_images_per_s", "fit_wall_s"):
        assert positive_finite(line[key]), (key, line[key])
    assert line["worker_threads"] >= 1


PACKING = BENCH.with_name("packing.py")


def test_packing_runs_trials_side_by_side_and_sums_them():
    out = subprocess.run(
        [sys.executable, str(PACKING), "--quick", "--models", "ring8", "--trials", "1,2"]
        + ["--contenders", "gan_ray", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    packing = {line["trials"]: line for line in lines if line.get("measurement") == "packing"}
    assert sorted(packing) == [1, 2]
    for n, line in packing.items():
        assert (line["contender"], line["model"], line["device"]) == ("gan_ray", "ring8", "cpu")
        # One figure per trial process, each of which really ran, and the aggregate is their sum.
        assert len(line["per_trial_images_per_s"]) == n
        assert all(positive_finite(v) for v in line["per_trial_images_per_s"])
        assert line["aggregate_images_per_s"] == pytest.approx(sum(line["per_trial_images_per_s"]))
    assert packing[1]["scaling"] == 1.0
    assert positive_finite(packing[2]["scaling"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "dcgan99"], "unknown model"),
        (["--trials", "1,0"], "at least 1"),
        (["--trials", "two"], "comma-separated integers"),
    ],
)
def test_packing_rejects_bad_arguments_before_starting_trials(args, message):
    out = subprocess.run([sys.executable, str(PACKING), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr
    assert "packing" not in out.stdout
