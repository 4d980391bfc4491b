"""The command line's own face: ``python -m gan_ray`` is ``gan-ray``; help is plain, fast and truthful."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gan_ray

ROOT = Path(__file__).resolve().parents[1]


def gan_ray_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "gan_ray", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_python_m_gan_ray_answers_help_and_version():
    done = gan_ray_cli("--help")
    assert done.returncode == 0 and "examples:" in done.stdout and "gan-ray sweep" in done.stdout
    assert gan_ray_cli("--version").stdout.strip() == f"gan-ray {gan_ray.__version__}"


def test_help_imports_nothing_heavy():
    code = "import sys; from gan_ray.cli import build_parser; build_parser(); print(sorted({'torch', 'ray', 'mlflow', 'optuna'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_tracking_uri_help_states_the_real_default():
    for command in ("train", "sweep", "sample", "report"):
        text = " ".join(gan_ray_cli(command, "--help").stdout.split())
        assert "sqlite:///./mlflow.db" in text and "$MLFLOW_REGISTRY_URI" in text, command
    sweep = " ".join(gan_ray_cli("sweep", "--help").stdout.split())
    assert "-v, --verbose" in sweep and "--log-level" in sweep
