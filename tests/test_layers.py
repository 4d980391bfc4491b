"""The floors of the package hold: `lint-imports` (import-linter, run by `make lint`) passes on the tree,
and fails once an arrow goes back up a floor or the core imports Ray."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(tree: Path) -> subprocess.CompletedProcess:
    # cwd first on the path: the copy's gan_ray, not the installed one, is analysed.
    return subprocess.run(
        [str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path):
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copytree(ROOT / "gan_ray", copy / "gan_ray", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_tree_keeps_its_floors(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "arrow", "contract"),
    [
        ("training/loop.py", "import gan_ray.tracking.run", "Floors"),  # the core reaching up to MLflow
        ("ray/train.py", "import gan_ray.tracking.store", "Floors"),  # one sibling floor into the other
        ("losses.py", "import ray", "plain PyTorch"),  # the core importing Ray itself
        ("search/space.py", "import optuna", "search floor"),  # the sweep files reaching for Optuna
        ("models/spec.py", "import gan_ray.config", "Floors"),  # a circle between two core modules
    ],
)
def test_an_arrow_back_up_breaks_the_lint(tree, module, arrow, contract):
    path = tree / "gan_ray" / module
    path.write_text(path.read_text() + f"\n\ndef _added():\n    {arrow}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout
