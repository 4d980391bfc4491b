"""A run that never learns is said so: the health verdict on hand-made evals and samples, the status it
gives a run, and real short runs (a stalled G, a healthy game, a G that slows down under a decaying lr).

A run where D wins, recorded in MLflow, is in tests/tracking/test_mlflow_run.py."""

from __future__ import annotations

import pytest
import torch

from gan_ray.config import validate_config
from gan_ray.data.mixtures import mixture
from gan_ray.training.health import (
    D_WON,
    G_STALLED,
    G_STALLED_RTOL,
    HEALTHY,
    NO_VARIANCE,
    NO_VARIANCE_STD,
    health,
    health_warning,
    sample_spread,
)
from gan_ray.training.local import run_local
from gan_ray.training.loop import build_training, run_loop
from gan_ray.training.observers import USABLE, final_status, outcome_of

GAME = {"d_real": 0.62, "d_fake": 0.41}  # a game still being played
D_WINS = {"d_real": 0.9995, "d_fake": 0.0004}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """The real runs here train tiny models (see conftest.one_thread)."""


def ring(n: int = 500, seed: int = 0) -> torch.Tensor:
    """Samples of a G that covers ring8 well: the data itself."""
    g = torch.Generator().manual_seed(seed)
    modes = mixture("ring8").modes
    return modes[torch.randint(len(modes), (n,), generator=g)] + 0.01 * torch.randn(n, 2, generator=g)


def verdict(metrics=GAME, previous=GAME, samples=None, previous_samples=None, probabilities=True):
    samples = ring() if samples is None else samples
    previous_samples = ring(seed=1) if previous_samples is None else previous_samples
    return health(metrics, previous, samples, previous_samples, has_probabilities=probabilities)


# --- the verdict on hand-made evals ----------------------------------------------------------------


def test_a_healthy_game_is_ok():
    assert verdict() == HEALTHY
    assert verdict(previous=None, previous_samples=None) == HEALTHY  # a run's first eval


def test_d_has_won_only_at_two_evals_in_a_row():
    assert verdict(D_WINS, D_WINS) == D_WON
    # One eval of a winning D is not yet a verdict: it can be a passing spike.
    assert verdict(D_WINS, GAME) == HEALTHY
    assert verdict(GAME, D_WINS) == HEALTHY
    assert verdict(D_WINS, None) == HEALTHY
    # Both conditions, at both evals: a D sure of the real data but not of the fakes has not won.
    assert verdict(D_WINS, {"d_real": 0.999, "d_fake": 0.05}) == HEALTHY
    assert verdict({"d_real": 0.98, "d_fake": 0.0}, D_WINS) == HEALTHY


def test_d_won_is_read_only_where_d_outputs_probabilities():
    critic = {"d_real": 3.2, "d_fake": -4.1}  # raw critic scores (Wasserstein, hinge): any value is fine
    assert verdict(critic, critic, probabilities=False) == HEALTHY
    assert verdict(D_WINS, D_WINS, probabilities=False) == HEALTHY


def test_a_g_that_did_not_move_has_stalled_and_one_that_moved_a_little_has_not():
    samples = ring()
    assert verdict(samples=samples, previous_samples=samples.clone()) == G_STALLED
    scale = samples.abs().max()
    # Within the tolerance (a rounding of the largest sample), and ten times beyond it.
    nudge = torch.zeros_like(samples)
    nudge[0, 0] = 0.5 * G_STALLED_RTOL * scale
    assert verdict(samples=samples + nudge, previous_samples=samples) == G_STALLED
    nudge[0, 0] = 10 * G_STALLED_RTOL * scale
    assert verdict(samples=samples + nudge, previous_samples=samples) == HEALTHY
    # The tolerance is relative: the same samples at another scale are judged alike.
    assert verdict(samples=1e3 * (samples + nudge), previous_samples=1e3 * samples) == HEALTHY


def test_samples_without_variance_are_flagged_but_a_g_collapsed_onto_one_mode_is_not():
    point = torch.tensor([[0.3, -0.7]]).repeat(500, 1)
    assert verdict(samples=point, previous_samples=ring()) == NO_VARIANCE
    almost = point + 1e-6 * torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    assert verdict(samples=almost, previous_samples=ring()) == NO_VARIANCE
    # All of G's mass on one Gaussian of ring8 (std 0.01) or grid25 (std 0.05): mode collapse, which
    # modes_covered reports; the game itself is still moving.
    for name, std in (("ring8", 0.01), ("grid25", 0.05)):
        one_mode = mixture(name).modes[3] + std * torch.randn(
            500, 2, generator=torch.Generator().manual_seed(1)
        )
        assert sample_spread(one_mode) > 10 * NO_VARIANCE_STD
        assert verdict(samples=one_mode, previous_samples=ring()) == HEALTHY, name


def test_the_first_sign_found_is_the_verdict():
    point = torch.zeros(500, 2)
    assert verdict(D_WINS, D_WINS, samples=point, previous_samples=point.clone()) == D_WON
    assert verdict(samples=point, previous_samples=point.clone()) == G_STALLED


def test_images_are_judged_per_pixel():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 8, 8, generator=g) * 2 - 1
    assert verdict(samples=images, previous_samples=torch.rand(64, 1, 8, 8, generator=g)) == HEALTHY
    same = images[:1].repeat(64, 1, 1, 1)
    assert verdict(samples=same, previous_samples=images) == NO_VARIANCE


# --- the status it gives a run ---------------------------------------------------------------------


def test_a_run_whose_last_eval_is_unhealthy_ends_collapsed_and_is_not_usable():
    bad = [{"step": 100, "health": HEALTHY}, {"step": 200, "health": D_WON}]
    assert final_status("completed", bad) == "collapsed"
    assert final_status("stopped_early", bad) == "collapsed"
    assert "collapsed" not in USABLE
    # Only the last eval counts: a run that recovered is fine.
    assert final_status("completed", [*bad, {"step": 300, "health": HEALTHY}]) == "completed"
    # Runs that raised keep their status; runs without evals or from before health checks are fine.
    for status in ("diverged", "failed", "killed"):
        assert final_status(status, bad) == status
    assert final_status("completed", []) == "completed"
    assert final_status("completed", [{"step": 100}]) == "completed"
    assert outcome_of(None, bad, None).status == "collapsed"
    assert outcome_of(RuntimeError("boom"), bad, None).status == "failed"


def test_the_warning_is_one_line_that_says_what_went_wrong():
    line = health_warning("trial-abc123", 2000, {**D_WINS, "health": D_WON}, ended=True)
    assert line == (
        "gan_ray: warning: trial-abc123 collapsed at step 2000: "
        "D has won (D(x) 0.9995, D(G(z)) 0.0004 at two evals in a row)"
    )
    line = health_warning("ring8", 500, {"health": G_STALLED}, ended=False)
    assert line.startswith("gan_ray: warning: ring8 is unhealthy (g_stalled) at step 500: G has stopped")
    assert "\n" not in line


# --- real short runs -------------------------------------------------------------------------------


def small(**overrides):
    cfg = {
        "model": {"hidden_dim": 32, "hidden_layers": 2},
        "train": {"steps": 200, "eval_every": 100, "batch_size": 64, "eval_samples": 500},
    }
    return validate_config(cfg).with_overrides(overrides)


def test_a_g_whose_learning_rate_is_zero_stalls_at_its_second_eval():
    t = build_training(small())
    for group in t.opt_g.param_groups:  # the config refuses lr 0; a frozen G is what this stands for
        group["lr"] = 0.0
    assert [r.metrics["health"] for r in run_loop(t)] == [HEALTHY, G_STALLED]
    assert t.previous_samples is not None and "previous_samples" not in t.state_dict()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_a_g_slowed_down_by_a_decaying_learning_rate_has_not_stalled(kind):
    """50 evals, the last interval's learning rate a fraction of a percent of the base: G still moves."""
    cfg = small(
        **{
            "optim.lr_g": 1e-4,
            "optim.lr_schedule": kind,
            "optim.lr_final_ratio": 0.0,
            "train.steps": 1000,
            "train.eval_every": 20,
        }
    )
    t = build_training(cfg)
    reports = list(run_loop(t))
    assert [r.metrics["health"] for r in reports] == [HEALTHY] * 50
    last, before = reports[-1].samples, reports[-2].samples
    moved = float((last - before).abs().max() / last.abs().max())
    assert moved > 10 * G_STALLED_RTOL, moved


def test_a_normal_short_run_stays_completed_and_healthy(tmp_path, capsys):
    cfg = small(output_dir=str(tmp_path), name="healthy")
    result = run_local(cfg, verbose=False)
    assert result.status == "completed"
    assert [h["health"] for h in result.history] == [HEALTHY, HEALTHY]
    assert 0.3 < result.metrics["d_real"] < 0.9  # the game is on
    assert "warning" not in capsys.readouterr().err
