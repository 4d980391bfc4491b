"""Ray Train layer on a real local Ray (2 CPUs, gloo): DDP correctness, resume, worker crash, fail-fast."""

from __future__ import annotations

import time

import pytest
import torch

from gan_ray.config import ConfigError, validate_config
from gan_ray.ray.train import fit
from gan_ray.settings import CRASH_AT_STEP as CRASH_AT_STEP_ENV
from gan_ray.settings import CRASH_MARKER as CRASH_MARKER_ENV
from gan_ray.settings import CRASH_RANK as CRASH_RANK_ENV
from gan_ray.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def ring8(name: str, **train) -> dict:
    return {
        "name": name,
        "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
        "train": {"steps": 200, "eval_every": 100, "batch_size": 64, **train},
    }


def test_two_workers_keep_replicas_identical(ray_session, tmp_path):
    cfg = validate_config({**ring8("ddp2"), "scaling": {"num_workers": 2}})
    result = fit(cfg, storage_path=str(tmp_path))
    assert [h["step"] for h in result.history] == [100, 200]
    # Every G and D parameter equal across ranks at every eval: DDP averaged both models' gradients.
    assert all(h["replica_param_spread"] == 0.0 for h in result.history)
    assert result.metrics["step"] == 200 and "mode_distance" in result.metrics
    # The model did change (the spread is not trivially zero because nothing trained).
    state = load_checkpoint(result.checkpoint_path)
    fresh = validate_config(ring8("fresh"))
    from gan_ray.models import build_models

    torch.manual_seed(fresh.train.seed)
    g0, _ = build_models(fresh)
    assert any(not torch.equal(p, state["generator"][k]) for k, p in g0.state_dict().items())


def test_one_worker_matches_plain_core(ray_session, tmp_path):
    from gan_ray.training.local import run_local as train

    base = {**ring8("same"), "output_dir": str(tmp_path / "local")}
    local = train(validate_config(base), verbose=False)
    remote = fit(validate_config({**base, "scaling": {"num_workers": 1}}), storage_path=str(tmp_path / "ray"))
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "mode_distance"):
        assert remote.metrics[key] == pytest.approx(local.final[key], rel=1e-4, abs=1e-5), key
    g_local = load_checkpoint(local.checkpoint)["generator"]
    g_ray = load_checkpoint(remote.checkpoint_path)["generator"]
    for k in g_local:
        torch.testing.assert_close(g_ray[k], g_local[k], rtol=1e-4, atol=1e-5)


def test_same_name_resumes_and_continues_step_count(ray_session, tmp_path):
    first = fit(validate_config(ring8("resume")), storage_path=str(tmp_path))
    assert [h["step"] for h in first.history] == [100, 200]
    longer = validate_config(ring8("resume", steps=400))
    second = fit(longer, storage_path=str(tmp_path))
    assert [h["step"] for h in second.history] == [100, 200, 300, 400]
    assert second.history[:2] == first.history


def test_worker_crash_is_replaced_and_resumes(ray_session, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_AT_STEP_ENV, "250")
    monkeypatch.setenv(CRASH_MARKER_ENV, str(marker))
    monkeypatch.setenv(CRASH_RANK_ENV, "1")
    cfg = validate_config({**ring8("crash", steps=400), "scaling": {"num_workers": 2, "max_failures": 2}})
    result = fit(cfg, storage_path=str(tmp_path / "storage"))
    assert marker.read_text() == "250", "the injected crash did not happen"
    # Continuous step count: resumed from the step-200 checkpoint, lost only steps 201-250.
    assert [h["step"] for h in result.history] == [100, 200, 300, 400]
    assert result.metrics["step"] == 400 and "mode_distance" in result.metrics


def test_bad_config_fails_before_any_worker(tmp_path):
    import ray

    from gan_ray.api import train

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  d_steps_per_g_step: 0\n")
    started = ray.is_initialized()
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="d_steps_per_g_step"):
        train(bad, workers=2)
    missing = tmp_path / "missing.yaml"
    missing.write_text(f"data:\n  name: mnist\n  root: {tmp_path / 'nowhere'}\n")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(missing, workers=2)
    assert time.perf_counter() - t0 < 5
    assert ray.is_initialized() == started  # no Ray was started for a config that cannot run


def test_two_workers_train_a_batchnorm_dcgan(ray_session, tmp_path):
    """DDP over a D with BatchNorm, which the D-step calls once with the real and the fake batch."""
    cfg = validate_config(
        {
            "name": "ddp_bn",
            "data": {"name": "digits"},
            "model": {"g_filters": 8, "d_filters": 8},
            "train": {"steps": 20, "eval_every": 10, "batch_size": 32},
            "scaling": {"num_workers": 2},
        }
    )
    result = fit(cfg, storage_path=str(tmp_path))
    assert [h["step"] for h in result.history] == [10, 20]
    assert all(h["replica_param_spread"] == 0.0 for h in result.history)
    assert all(0.0 < h["d_fake"] < 1.0 for h in result.history)
