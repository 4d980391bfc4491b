"""A sweep's wall-clock budget (``budget.time_budget_s``) on a real local Ray: the trials it cuts short
end stopped early, and their best checkpoints still make a champion (what bench/pbt_vs_tpe.py needs to
give two schedulers the same time)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow

SPACE = """\
name: t_budget
base: {data: {name: ring8}, noise: {dim: 8}, train: {steps: 1000000, eval_every: 100, batch_size: 64}}
parameters:
  optim.lr_g: {log_uniform: [1.0e-3, 2.0e-3]}
budget: {num_samples: 8, max_concurrent_trials: 2, time_budget_s: 45}
scheduler: {type: none}
search: {final_eval: {top: 1, samples: 500}}
"""


def test_trials_cut_by_the_time_budget_end_stopped_early_and_still_count(ray_session, tmp_path, one_thread):
    from gan_ray.api import sweep

    path = tmp_path / "t_budget.yaml"
    path.write_text(SPACE)
    start = time.monotonic()
    result = sweep(
        path,
        tracking=False,
        storage_path=str(tmp_path / "ray_results"),
        study_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        verbose=0,
    )
    assert time.monotonic() - start < 180
    assert result.trials and not result.interrupted
    assert {t.status for t in result.trials} <= {"stopped_early", "collapsed"}, result.trials
    assert all(t.last_step < 1_000_000 for t in result.trials)
    assert result.best is not None and result.best.best_checkpoint and result.best.final_objective is not None
