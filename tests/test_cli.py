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


def test_a_bad_initial_points_file_is_one_line_before_anything_starts(tmp_path):
    bad = tmp_path / "starts.yaml"
    bad.write_text("- {loss.name: hinge}\n")
    done = gan_ray_cli(
        "sweep", str(ROOT / "search_spaces" / "ring8.yaml"), "--initial-points", str(bad), "--no-tracking",
        "--storage-path", str(tmp_path / "ray"), "--study-storage", f"sqlite:///{tmp_path / 'optuna.db'}",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert (
        line
        == f"gan-ray: error: --initial-points {bad}: point 0: missing 'optim.lr_g' (active under this point's choices)"
    )
    assert not (tmp_path / "ray").exists() and not (tmp_path / "optuna.db").exists()
