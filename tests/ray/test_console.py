"""What a person sees of a sweep: the real ``python -m gan_ray sweep`` in a subprocess, on its own local Ray.

By default the terminal holds a progress table, a line per ended trial and the summary; Ray's worker
lines (a checkpoint line per eval) stay in Ray's log files. ``-v`` brings them back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gan_ray.ray.progress import clock, time_left

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHATTER = ("Checkpoint successfully created", "Reporting training result")

TINY = """\
name: t_console
base: {data: {name: ring8}, noise: {dim: 8}, train: {steps: 150, eval_every: 50, batch_size: 64}}
parameters:
  optim.lr_g: {log_uniform: [1.0e-3, 2.0e-3]}
budget: {num_samples: 2, max_concurrent_trials: 2}
scheduler: {type: none}
search: {final_eval: {top: 1, samples: 500}}
"""


def sweep(tmp_path: Path, *flags: str) -> str:
    space = tmp_path / "t_console.yaml"
    space.write_text(TINY)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "gan_ray", "sweep", str(space), "--no-tracking", *flags]
        + [
            "--storage-path",
            str(tmp_path / "ray_results"),
            "--study-storage",
            f"sqlite:///{tmp_path / 'o.db'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def test_the_default_console_has_progress_and_summary_but_no_worker_chatter(tmp_path):
    out = sweep(tmp_path)
    assert not [line for line in out.splitlines() if any(c in line for c in CHATTER)], out
    assert "Trial status:" not in out and "Trial trial-" not in out, "Tune's own tables stay off"
    table = [line for line in out.splitlines() if line.startswith("gan_ray: t_console |")]
    assert (
        table and "elapsed, finished" in table[-1] and "0 running, 2 done, 0 waiting (of 2)" in table[-1]
    ), out
    assert "best mode_distance" in table[-1]
    assert sum(" completed at step 150" in line for line in out.splitlines()) == 2, out
    assert "best trial" in out and "Ray's worker logs:" in out
    assert "INFO" not in out, "the libraries' INFO lines stay off the terminal"


def test_verbose_brings_the_worker_lines_back(tmp_path):
    out = sweep(tmp_path, "-v")
    assert any(CHATTER[0] in line for line in out.splitlines()), out
    assert "best trial" in out


def test_the_time_left_is_the_pace_so_far_over_the_steps_to_go():
    assert time_left(60.0, 1000, 4000) == pytest.approx(180.0)
    assert time_left(10.0, 0, 4000) is None
    assert (clock(7), clock(242), clock(3909)) == ("0:07", "4:02", "1:05:09")


def test_the_time_left_never_passes_the_sweeps_time_budget():
    from gan_ray.ray.ledger import TrialLedger
    from gan_ray.ray.progress import SweepProgress
    from gan_ray.search.load import parse_search_space

    space = parse_search_space(
        TINY.replace("max_concurrent_trials: 2}", "max_concurrent_trials: 2, time_budget_s: 60}")
    )
    table = SweepProgress(space, TrialLedger(space), total_trials=10_000).table()
    assert "about 1:00 left" in table or "about 0:59 left" in table, table
    assert "0 running, 0 done, 10000 waiting (of 10000)" in table
