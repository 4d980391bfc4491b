"""The alternating loop: which weights each step changes, k D-steps per G-step, clipping, divergence,
resume, and one real learning run."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from gan_ray.cli import main
from gan_ray.config import validate_config
from gan_ray.training.local import run_local as train
from gan_ray.training.loop import DivergedError, build_training, default_evaluator, run_loop


def small(**overrides):
    cfg = {
        "model": {"hidden_dim": 32, "hidden_layers": 2},
        "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
        "train": {"steps": 20, "eval_every": 10, "batch_size": 32},
    }
    for key, value in overrides.items():
        section, field = key.split(".", 1)
        cfg.setdefault(section, {})[field] = value
    return validate_config(cfg)


def _write(path, cfg):
    from gan_ray.config import config_yaml

    path.write_text(config_yaml(cfg))
    return str(path)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return [not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True)]


@pytest.mark.parametrize(
    "loss", ["non_saturating", "minimax", "least_squares", "wasserstein", "wgan_gp", "hinge"]
)
def test_g_step_changes_only_g_and_d_step_only_d(loss):
    t = build_training(small(**{"loss.name": loss}))
    g0, d0 = params(t.generator), params(t.discriminator)
    t.step_fn.g_step()
    assert all(changed(g0, t.generator)), "every G parameter moves in a G-step"
    assert not any(changed(d0, t.discriminator)), "a G-step must not change D"
    g1, d1 = params(t.generator), params(t.discriminator)
    t.step_fn.d_step()
    assert not any(changed(g1, t.generator)), "a D-step must not change G"
    assert any(changed(d1, t.discriminator))


def test_g_step_gradients_do_not_leak_into_the_next_d_step():
    """The D-step after a G-step equals a D-step of a twin that never ran the G-step but holds the same G.

    The twin is copied before the G-step and then given G's new weights only: anything else the
    G-step left behind on D (gradients, weights, optimiser state) would make the two D-steps differ.
    """
    t = build_training(small())
    twin = copy.deepcopy(t)
    t.step_fn.g_step()
    assert all(p.grad is None for p in t.discriminator.parameters()), "the G-step left gradients on D"
    twin.generator.load_state_dict(t.generator.state_dict())
    d0 = params(t.discriminator)
    rng = torch.get_rng_state()
    t.step_fn.d_step()
    torch.set_rng_state(rng)
    twin.step_fn.d_step()
    assert all(changed(d0, t.discriminator)), "the D-step moved D"
    for a, b in zip(t.discriminator.parameters(), twin.discriminator.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_exactly_k_d_steps_per_g_step(k):
    t = build_training(small(**{"train.d_steps_per_g_step": k}))
    calls = []
    d_step, g_step = t.step_fn.d_step, t.step_fn.g_step
    t.step_fn.d_step = lambda: (calls.append("d"), d_step())[1]
    t.step_fn.g_step = lambda: (calls.append("g"), g_step())[1]
    for _ in range(4):
        t.step_fn()
    assert calls == (["d"] * k + ["g"]) * 4
    reports = list(run_loop(t))
    assert t.step_fn.metrics.d_terms == k * 10 and t.step_fn.metrics.g_terms == 10
    assert [r.step for r in reports] == [10, 20]


def test_each_d_step_draws_a_fresh_real_batch_and_fresh_noise():
    t = build_training(small(**{"train.d_steps_per_g_step": 2}))
    real, noise = [], []
    sample, draw = t.step_fn.source.sample, t.step_fn.noise
    t.step_fn.source.sample = lambda n, generator=None: real.append(sample(n)) or real[-1]
    t.step_fn.noise = lambda n, d, device=None: noise.append(draw(n, d, device=device)) or noise[-1]
    t.step_fn()
    assert len(real) == 2 and not torch.equal(real[0], real[1])
    assert len(noise) == 3 and not torch.equal(noise[0], noise[1])  # 2 D-steps + 1 G-step


def test_wasserstein_clips_critic_weights_after_every_critic_step():
    clip = 0.02
    t = build_training(
        small(**{"loss.name": "wasserstein", "loss.params": {"clip": clip}, "optim.lr_d": 0.5})
    )
    for _ in range(3):
        t.step_fn.d_step()
        bound = max(p.abs().max().item() for p in t.discriminator.parameters())
        assert bound <= clip
    assert math.isclose(bound, clip, rel_tol=1e-6), "with a huge lr the weights sit on the clip bound"


def test_metrics_are_means_and_probabilities_where_the_loss_has_them():
    t = build_training(small())
    report = next(run_loop(t))
    m = report.metrics
    assert 0 < m["d_real"] < 1 and 0 < m["d_fake"] < 1
    assert m["loss_d"] > 0 and m["images_per_s"] > 0 and m["step"] == 10


@pytest.mark.parametrize(("loss", "reads_as"), [("non_saturating", "probability"), ("hinge", "raw")])
def test_d_real_and_d_fake_are_probabilities_only_for_the_cross_entropy_losses(loss, reads_as):
    """A D whose output is the constant 3: a cross-entropy loss reports sigmoid(3), a critic loss 3."""
    t = build_training(small(**{"loss.name": loss}))
    last = t.discriminator.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(3.0)
    for group in t.opt_d.param_groups:
        group["lr"] = 0.0  # D stays the constant
    t.step_fn.d_step()
    m = t.step_fn.metrics.read()
    expected = torch.sigmoid(torch.tensor(3.0)).item() if reads_as == "probability" else 3.0
    assert m["d_real"] == pytest.approx(expected, abs=1e-6) and m["d_fake"] == pytest.approx(
        expected, abs=1e-6
    )


def test_divergence_is_detected_at_the_eval():
    t = build_training(small(**{"loss.name": "least_squares", "optim.lr_d": 1e8}))
    with pytest.raises(DivergedError) as err:
        list(run_loop(t))
    assert err.value.step == 10 and not math.isfinite(err.value.metrics["loss_d"])


def test_resume_continues_bit_for_bit(tmp_path):
    full = validate_config({**small().model_dump(), "output_dir": str(tmp_path / "full")})
    half = validate_config(
        {
            **full.model_dump(),
            "output_dir": str(tmp_path / "half"),
            "train": {**full.train.model_dump(), "steps": 10},
        }
    )
    a = train(full, verbose=False)
    train(half, verbose=False)
    rest = validate_config({**half.model_dump(), "train": {**half.train.model_dump(), "steps": 20}})
    b = train(rest, resume=True, verbose=False)
    # The history travels in the checkpoint (as on Ray): the resumed run knows its first eval too,
    # and only step 20 was trained after the resume.
    assert [h["step"] for h in b.history] == [10, 20]
    assert b.history[0]["loss_d"] == pytest.approx(a.history[0]["loss_d"], rel=1e-6)
    lines = (Path(b.output) / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20]
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "mode_distance"):
        assert b.metrics[key] == pytest.approx(a.metrics[key], rel=1e-6, abs=1e-7), key


def test_cli_train_writes_checkpoint_samples_and_history(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: cli\noutput_dir: {tmp_path}\ntrain: {{steps: 20, eval_every: 10, batch_size: 32}}\n"
        "model: {hidden_dim: 16, hidden_layers: 1}\n"
    )
    assert main(["train", str(cfg), "--no-tracking"]) == 0
    out = tmp_path / "cli"
    assert (out / "checkpoint.pt").is_file() and (out / "samples.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000010.png", "step_0000020.png"]
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    assert "step 20/20" in capsys.readouterr().err


def test_cli_set_overrides_the_config_file(tmp_path, capsys):
    """``--set KEY=VALUE`` reaches the run as if the file said it; a bad one is one line, exit 2."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cli\ntrain: {steps: 20, eval_every: 10, batch_size: 32}\n")
    args = ["train", str(cfg), "--no-tracking", "--set", f"output_dir={tmp_path}", "--set", "train.steps=10"]
    assert main([*args, "--set", "penalty.name=r1", "--set", "optim.lr_g=5e-4"]) == 0
    from gan_ray.training.checkpoint import load_checkpoint

    state = load_checkpoint(tmp_path / "cli")
    assert state["step"] == 10 and state["config"]["penalty"]["name"] == "r1"
    assert state["hyperparameters"]["optim.lr_g"] == 5e-4
    capsys.readouterr()
    for bad, needle in [
        ("train.stepz=3", "unknown config key 'train.stepz'"),
        ("train.steps=0", "train.steps"),
    ]:
        assert main([*args, "--set", bad]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


def test_cli_rejects_bad_input_with_one_line(tmp_path, capsys):
    for text, needle in [
        ("loss: {name: wgan}\n", "unknown loss 'wgan'"),
        ("noise: {distribution: cauchy}\n", "unknown noise distribution 'cauchy'"),
        ("train: {d_steps_per_g_step: 0}\n", "train.d_steps_per_g_step"),
        ("optim: {lr_g: -1}\n", "optim.lr_g"),
        ("data: {name: mnist, root: /nonexistent/x}\n", "/nonexistent/x"),
    ]:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(text)
        assert main(["train", str(cfg), "--no-tracking"]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_non_saturating_mlp_gan_learns_the_ring():
    """The real learning test: >= 6 of 8 modes within about a minute of CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is as fast, and immune to a busy machine
    cfg = validate_config(
        {
            "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
            "train": {"steps": 3000, "eval_every": 1000, "batch_size": 256, "seed": 0},
        }
    )
    try:
        t = build_training(cfg)
        reports = list(run_loop(t, default_evaluator(cfg, t.device)))
    finally:
        torch.set_num_threads(threads)
    final = reports[-1].metrics
    assert final["modes_covered"] >= 6, final
    assert final["high_quality_fraction"] > 0.3, final


class _RecordingLoss:
    """The step's loss, unchanged, but keeping the fake logits each step hands it."""

    def __init__(self, loss):
        self.inner, self.fake_logits, self.real_logits = loss, {}, {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def d_loss(self, real_logits, fake_logits):
        self.fake_logits["d_step"] = fake_logits.detach().clone()
        self.real_logits["d_step"] = real_logits.detach().clone()
        return self.inner.d_loss(real_logits, fake_logits)

    def g_loss(self, real_logits, fake_logits):
        self.fake_logits["g_step"] = fake_logits.detach().clone()
        if real_logits is not None:
            self.real_logits["g_step"] = real_logits.detach().clone()
        return self.inner.g_loss(real_logits, fake_logits)


@pytest.mark.parametrize("loss", ["non_saturating", "hinge", "rpgan"])
def test_d_step_and_g_step_see_the_same_fakes_alike_with_batchnorm(loss):
    """D's BatchNorm must normalise fakes the same way in the D-step and in the G-step.

    Scoring ``cat([real, fake])`` in the D-step pooled the BatchNorm statistics over both, so the
    G-step (fakes alone) trained G against a D the D-step never trained (D(G(z)) 0.004 vs 0.97).
    The relativistic loss scores a real batch in the G-step too: it must be judged as in the D-step.
    """
    cfg = validate_config(
        {
            "data": {"name": "digits", "image_size": 28},
            "model": {"g_filters": 8, "d_filters": 8},
            "loss": {"name": loss},
            "train": {"batch_size": 32},
        }
    )
    t = build_training(cfg)
    step = t.step_fn
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in t.discriminator.modules())
    z = torch.randn(cfg.train.batch_size, cfg.noise_dim)
    step.noise = lambda n, dim, device=None: z[:n]  # the same fakes in both steps
    real = step.source.sample(cfg.train.batch_size)
    step.source.sample = lambda n: real[:n]  # and the same real batch
    for opt in (step.opt_g, step.opt_d):
        for group in opt.param_groups:
            group["lr"] = 0.0  # the same D and G in both steps
    step.loss = recording = _RecordingLoss(step.loss)
    step.d_step()
    step.g_step()
    seen = recording.fake_logits
    torch.testing.assert_close(seen["d_step"], seen["g_step"], rtol=1e-5, atol=1e-5)
    if step.loss.g_needs_real:
        reals = recording.real_logits
        torch.testing.assert_close(reals["d_step"], reals["g_step"], rtol=1e-5, atol=1e-5)
    else:
        assert "g_step" not in recording.real_logits  # no D forward on real data it would not use


def test_resume_applies_new_optimiser_settings_and_refuses_a_changed_game(tmp_path):
    """Loading an optimiser's state brings back its old lr and betas; the config's must win. A config
    that changes the game (here the loss) must not resume a checkpoint trained under another one."""
    from gan_ray.config import ConfigError
    from gan_ray.training.checkpoint import load_checkpoint

    base = validate_config({**small().model_dump(), "output_dir": str(tmp_path)})
    train(base, verbose=False)
    faster = base.with_overrides(
        {"train.steps": 30, "optim.lr_g": 5e-4, "optim.lr_d": 3e-4, "optim.beta1": 0.3}
    )
    t = build_training(faster)
    t.load_state_dict(load_checkpoint(tmp_path / base.name))
    assert t.step == 20
    assert [g["lr"] for g in t.opt_g.param_groups] == [5e-4] and t.opt_d.param_groups[0]["lr"] == 3e-4
    assert t.opt_g.param_groups[0]["betas"] == (0.3, 0.999)
    assert t.hyperparameters()["optim.lr_g"] == 5e-4
    resumed = train(faster, resume=True, verbose=False)
    assert [h["step"] for h in resumed.history] == [10, 20, 30]

    other_game = base.with_overrides({"loss.name": "hinge", "train.steps": 40})
    with pytest.raises(ConfigError, match="loss.name: 'non_saturating' -> 'hinge'"):
        train(other_game, resume=True, verbose=False)
    assert main(["train", "--no-tracking", "--resume", _write(tmp_path / "c.yaml", other_game)]) == 2


def test_precision_auto_keeps_the_mixture_mlps_in_fp32():
    """bf16 only where it pays: a ring mode is 0.01 wide at radius 1, below bf16's resolution there."""
    from gan_ray.training.loop import autocast_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert autocast_dtype("auto", cuda, "mlp") is None
    assert autocast_dtype("fp32", cuda, "dcgan") is None
    assert autocast_dtype("bf16", cuda, "mlp") == torch.bfloat16  # asked for explicitly
    assert autocast_dtype("auto", cpu, "dcgan") is None and autocast_dtype("bf16", cpu, "dcgan") is None


@pytest.mark.parametrize("overrides", [{"loss.name": "wgan_gp"}, {"penalty.name": "r1_r2"}])
def test_the_penalty_is_computed_in_fp32_under_bf16_autocast(monkeypatch, overrides):
    from gan_ray.penalties import Penalty

    t = build_training(small(**overrides))
    t.step_fn.autocast_dtype = torch.bfloat16  # CPU autocast runs bf16 too
    seen = []
    term = Penalty.term

    def spy(self, d, real, fake, pack=1):
        seen.append((torch.is_autocast_enabled("cpu"), real.dtype, fake.dtype))
        out = term(self, d, real, fake, pack)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(Penalty, "term", spy)
    t.step_fn.d_step()
    assert seen == [(False, torch.float32, torch.float32), torch.float32]


def test_every_d_step_adds_the_penalty_at_its_scheduled_weight(monkeypatch):
    """R3GAN's burn-in: gamma from 2 to 0.2 along a cosine over the first half of the run, then held."""
    from gan_ray.penalties import Penalty

    cfg = small(
        **{
            "penalty.name": "r1_r2",
            "penalty.weight": 2.0,
            "penalty.schedule": "cosine",
            "penalty.final_ratio": 0.1,
            "penalty.burn_in": 0.5,
            "train.steps": 40,
            "train.d_steps_per_g_step": 2,
        }
    )
    t = build_training(cfg)
    step = t.step_fn
    terms = []
    term = Penalty.term

    def spy(*args, **kwargs):
        terms.append(term(*args, **kwargs))
        return terms[-1]

    monkeypatch.setattr(Penalty, "term", spy)
    weights = []
    for _ in range(40):
        weights.append(step.penalty_weight())
        step()
    assert len(terms) == 40 * 2  # once per D-step
    assert weights[0] == pytest.approx(2.0) and weights[10] == pytest.approx(1.1)  # half way down the cosine
    assert all(w == pytest.approx(0.2) for w in weights[20:])  # held after the burn-in
    assert weights[:21] == sorted(weights[:21], reverse=True)
    used = t.hyperparameters()
    assert (used["penalty.name"], used["penalty.weight"], used["penalty.schedule"]) == (
        "r1_r2",
        2.0,
        "cosine",
    )


@pytest.mark.parametrize(
    ("overrides", "norm"),
    [
        ({}, torch.nn.BatchNorm2d),
        ({"penalty.name": "r1"}, torch.nn.GroupNorm),
        ({"loss.name": "wgan_gp"}, torch.nn.GroupNorm),
    ],
)
def test_a_penalised_dcgan_d_normalises_each_sample_alone(overrides, norm):
    """Batch statistics would couple a sample's input gradient to the whole batch."""
    t = build_training(
        validate_config(
            {"data": {"name": "digits", "image_size": 28}, "model": {"g_filters": 8, "d_filters": 8}}
        ).with_overrides(overrides)
    )
    kinds = {type(m) for m in t.discriminator.modules()}
    assert norm in kinds and ({torch.nn.BatchNorm2d, torch.nn.GroupNorm} - {norm}).isdisjoint(kinds)


@pytest.mark.slow
def test_a_small_dcgan_learns_digits():
    """The image path learns: within 300 steps at the pytorch/examples settings (non-saturating loss,
    Adam 2e-4, beta1 0.5) the Fréchet distance of a BatchNorm DCGAN on the 8x8 digits falls by more
    than half from its untrained generator's, eval after eval."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    cfg = validate_config(
        {
            "data": {"name": "digits"},
            "model": {"g_filters": 16, "d_filters": 16},
            "optim": {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5},
            "train": {"steps": 300, "eval_every": 100, "batch_size": 64, "eval_samples": 1000},
        }
    )
    try:
        t = build_training(cfg)
        evaluator = default_evaluator(cfg, t.device)
        untrained = evaluator(t.sample())
        reports = list(run_loop(t, evaluator))
    finally:
        torch.set_num_threads(threads)
    fids = [r.metrics["fid_classifier"] for r in reports]
    assert "fid" not in reports[-1].metrics  # the name that read as Inception-FID is gone
    assert set(cfg.reported_metrics) <= set(reports[-1].metrics)
    assert untrained["classes_covered"] <= reports[-1].metrics["classes_covered"] <= 10
    assert fids[-1] < 0.5 * untrained["fid_classifier"], (untrained, fids)
    assert fids == sorted(fids, reverse=True), fids


def test_a_checkpoint_written_before_penalties_existed_still_resumes(tmp_path):
    """Checkpoints (and registered models) of wgan_gp runs hold a config without ``penalty`` or
    ``optim.lr_burn_in``: it validates, it means the same game (gp at gp_weight, per-sample norm in D),
    and today's config of that game resumes it."""
    cfg = validate_config(
        {
            "data": {"name": "digits", "image_size": 28},
            "model": {"g_filters": 8, "d_filters": 8},
            "loss": {"name": "wgan_gp", "params": {"gp_weight": 5.0}},
            "train": {"batch_size": 16, "steps": 4},
        }
    )
    t = build_training(cfg)
    t.step_fn()
    state = t.state_dict()
    old = copy.deepcopy(state["config"])
    del old["penalty"], old["optim"]["lr_burn_in"]
    state["config"] = old
    resumed = build_training(validate_config(old))
    resumed.load_state_dict(state)
    assert resumed.step_fn.penalty.name == "gp" and resumed.step_fn.penalty.weight == 5.0
    for a, b in zip(t.discriminator.parameters(), resumed.discriminator.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    resumed.step_fn()


def test_one_resume_rule_and_a_diverged_local_run_returns_its_result(tmp_path, monkeypatch, capsys):
    """A local run diverges (its eval samples made NaN by a test session wrapping the real one): it
    returns a diverged result, as a Ray run does, and leaves a divergence record that no resume goes on
    from. Without --resume the same name starts afresh: the earlier output goes, with a line."""
    from faults import inject

    cfg = validate_config({**small().model_dump(), "name": "rule", "output_dir": str(tmp_path)})
    out = tmp_path / "rule"
    train(cfg, verbose=False)
    (out / "mine.txt").write_text("a user's file")
    inject(monkeypatch, "NanSamples")
    capsys.readouterr()
    diverged = train(cfg, verbose=False)
    assert "starts afresh: removed its earlier checkpoints in" in capsys.readouterr().err
    assert diverged.status == "diverged" and diverged.metrics["step"] == 10 and diverged.history == []
    assert diverged.checkpoint is None and (out / "diverged.json").is_file()
    assert not (out / "history.jsonl").exists() and (out / "mine.txt").is_file()
    monkeypatch.undo()
    longer = cfg.with_overrides({"train.steps": 30})
    from gan_ray.config import ConfigError

    with pytest.raises(ConfigError, match="diverged at step 10"):
        train(longer, resume=True, verbose=False)
    assert main(["train", "--no-tracking", "--resume", _write(tmp_path / "c.yaml", longer)]) == 2
    fresh = train(longer, verbose=False)
    assert fresh.status == "completed" and [h["step"] for h in fresh.history] == [10, 20, 30]
    assert not (out / "diverged.json").exists() and fresh.checkpoint == str(out)
    assert [h["restarts"] for h in fresh.history] == [0, 0, 0]


def test_cli_train_exits_1_on_a_diverged_run(tmp_path, capsys):
    cfg = small(**{"loss.name": "least_squares", "optim.lr_d": 1e8})
    path = _write(tmp_path / "c.yaml", cfg.with_overrides({"output_dir": str(tmp_path)}))
    assert main(["train", "--no-tracking", path]) == 1
    assert "gan-ray: training diverged by step 10: non-finite" in capsys.readouterr().err


def test_a_run_told_to_stop_ends_before_its_next_step_without_another_report():
    t = build_training(small(**{"train.steps": 30}))
    asked: list[int] = []

    def should_stop() -> bool:  # a sweep's scheduler stops the run 5 steps after its first eval
        asked.append(t.step)
        return len(asked) > 15

    reports = list(run_loop(t, should_stop=should_stop))
    assert [r.step for r in reports] == [10]
    assert t.step == 15 and len(t.history) == 1


def test_the_driver_writes_nothing_for_a_run_stopped_between_evals(tmp_path):
    from gan_ray.training.checkpoint import HISTORY_FILE, SAMPLES_DIR, load_checkpoint
    from gan_ray.training.driver import loop_config, run_worker
    from gan_ray.training.local import LocalSession

    class StoppedAfterFirstEval(LocalSession):
        def should_stop(self) -> bool:
            return (self.out / HISTORY_FILE).is_file()

    cfg = small(**{"train.steps": 30})
    (tmp_path / SAMPLES_DIR).mkdir()
    run_worker(loop_config(cfg, cfg.objective), StoppedAfterFirstEval(cfg, tmp_path, verbose=False), {})
    history = [json.loads(line) for line in (tmp_path / HISTORY_FILE).read_text().splitlines()]
    assert [h["step"] for h in history] == [10]
    assert load_checkpoint(tmp_path)["step"] == 10
