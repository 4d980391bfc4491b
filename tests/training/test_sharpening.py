"""The sharpening tools: an exponential moving average of G's weights, and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gan_ray.config import validate_config
from gan_ray.sampling import load_generator
from gan_ray.training.checkpoint import load_checkpoint
from gan_ray.training.ema import WeightAverage
from gan_ray.training.local import run_local
from gan_ray.training.loop import build_training, run_loop
from gan_ray.training.schedules import Schedule, schedule


def small(**train):
    return validate_config(
        {
            "model": {"hidden_dim": 16, "hidden_layers": 1},
            "train": {"steps": 20, "eval_every": 10, "batch_size": 32, "eval_samples": 64, **train},
        }
    )


def test_weight_average_follows_the_ramped_decay():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightAverage(net, decay=0.9)
    start = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.fill_(5.0)
    ema.update()
    # First update: decay min(0.9, 2/11), so the average moves 9/11 of the way to the new weights.
    for s, avg, p in zip(start, ema.module.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(avg, s + (9 / 11) * (p - s))
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)  # buffers are copied
    for _ in range(500):
        ema.update()
    for avg, p in zip(ema.module.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(avg, p, rtol=0, atol=1e-6)
    assert all(not p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, 1.0)


def test_evals_and_checkpoints_use_the_average_and_a_resume_keeps_it(tmp_path):
    cfg = small(ema_decay=0.95).with_overrides({"output_dir": str(tmp_path)})
    t = build_training(cfg)
    assert t.ema is not None
    report = next(run_loop(t))
    assert t.ema.updates.item() == 10
    live = t.generator(t.eval_noise)
    assert torch.equal(report.samples_of(t), t.ema.module(t.eval_noise).float())
    assert not torch.allclose(live, t.sample())  # the average is not the live generator
    state = t.state_dict()
    assert state["hyperparameters"]["train.ema_decay"] == 0.95
    resumed = build_training(cfg)
    resumed.load_state_dict(state)
    assert resumed.ema.updates.item() == 10
    for a, b in zip(
        resumed.ema.module.state_dict().values(), t.ema.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)

    result = run_local(cfg, verbose=False)
    saved = load_checkpoint(result.checkpoint)
    loaded = load_generator(result.output)  # the averaged weights, not the live ones
    for key, value in saved["generator_ema"].items():
        assert torch.equal(loaded.module.state_dict()[key], value), key
    assert any(not torch.equal(saved["generator"][k], v) for k, v in saved["generator_ema"].items())


def test_ema_turned_on_at_a_resume_starts_from_the_live_weights(tmp_path):
    plain = small().with_overrides({"output_dir": str(tmp_path)})
    run_local(plain, verbose=False)
    t = build_training(plain.with_overrides({"train.ema_decay": 0.9, "train.steps": 30}))
    t.load_state_dict(load_checkpoint(tmp_path / plain.name))
    for avg, p in zip(t.ema.module.parameters(), t.generator.parameters(), strict=True):
        assert torch.equal(avg, p)


@pytest.mark.parametrize(("kind", "mid", "end"), [("linear", 0.55, 0.1), ("cosine", 0.55, 0.1)])
def test_schedules_run_from_one_to_the_final_ratio(kind, mid, end):
    s = schedule(kind, 0.1, 100)
    assert s(0) == pytest.approx(1.0) and s(50) == pytest.approx(mid) and s(100) == pytest.approx(end)
    assert s(200) == pytest.approx(end)
    assert schedule("constant", 0.1, 100) is None
    cosine = Schedule("cosine", 0.0, 100)
    assert cosine(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_the_step_applies_the_schedule_to_both_optimisers_and_reports_the_base_rates():
    cfg = small(steps=10).with_overrides(
        {"optim.lr_g": 1e-3, "optim.lr_d": 2e-3, "optim.lr_schedule": "linear", "optim.lr_final_ratio": 0.0}
    )
    t = build_training(cfg)
    seen = []
    for _ in range(10):
        t.step_fn()
        seen.append((t.opt_g.param_groups[0]["lr"], t.opt_d.param_groups[0]["lr"]))
    assert seen[0] == (1e-3, 2e-3)  # step 0 trains at the full rate
    assert seen[5] == pytest.approx((5e-4, 1e-3))
    used = t.hyperparameters()
    assert used["optim.lr_g"] == pytest.approx(1e-3) and used["optim.lr_d"] == pytest.approx(2e-3)
    assert used["optim.lr_schedule"] == "linear" and used["optim.lr_final_ratio"] == 0.0
