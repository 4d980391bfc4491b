"""The CUDA-graph fast path: which configs are graphed, the eager fallbacks, and graphed == eager on a GPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from gan_ray.config import validate_config
from gan_ray.data.images import TensorSource
from gan_ray.models import unwrap
from gan_ray.training.cuda_graphs import GraphedStep, graph_blocker, make_capturable, use_cuda_graphs
from gan_ray.training.loop import build_training, run_loop
from gan_ray.training.step import GanStep

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def ring8(**train) -> dict:
    return {
        "name": "graphs",
        "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
        "train": {"steps": 20, "eval_every": 10, "batch_size": 32, **train},
    }


def digits(**train) -> dict:
    return {"name": "graphs", "data": {"name": "digits"}, "train": {"batch_size": 16, **train}}


def params(training) -> list[torch.Tensor]:
    return [
        t.detach().clone()
        for m in (training.generator, training.discriminator)
        for t in (*unwrap(m).parameters(), *unwrap(m).buffers())
    ]


def run_from_same_rng(first, second, steps: int) -> None:
    """``steps`` calls of each, both from the CPU RNG state of now (they would share one stream otherwise)."""
    start = torch.get_rng_state()
    for _ in range(steps):
        first()
    torch.set_rng_state(start)
    for _ in range(steps):
        second()


def assert_same_training(a, b, **tol) -> None:
    for x, y in zip(params(a), params(b), strict=True):
        torch.testing.assert_close(x, y, **tol)


# ---- which configs are graphed (no GPU needed: the decision only reads the config and device type) ----


@pytest.mark.parametrize(
    "loss", ["non_saturating", "minimax", "least_squares", "wasserstein", "hinge", "rpgan"]
)
def test_losses_without_double_backward_are_graphable_on_cuda(loss):
    cfg = validate_config({**ring8(), "loss": {"name": loss}})
    assert graph_blocker(cfg, CUDA) is None
    assert use_cuda_graphs(cfg, torch.device("cuda:1"))


@pytest.mark.parametrize(
    ("overrides", "world_size", "reason"),
    [
        ({"loss": {"name": "wgan_gp"}}, 1, "double backward"),
        (
            {"loss": {"name": "rpgan"}, "penalty": {"name": "r1_r2"}},
            1,
            "penalty 'r1_r2' takes a double backward",
        ),
        ({"penalty": {"name": "gp"}}, 1, "penalty 'gp' takes a double backward"),
        ({"train": {"cuda_graphs": False}}, 1, "cuda_graphs is off"),
        ({}, 2, "DDP over 2 workers"),
    ],
)
def test_what_falls_back_to_eager_on_cuda(overrides, world_size, reason):
    cfg = validate_config({**ring8(), **overrides})
    blocker = graph_blocker(cfg, CUDA, world_size)
    assert blocker is not None and reason in blocker
    assert not use_cuda_graphs(cfg, CUDA, world_size)


def test_cpu_is_never_graphed():
    cfg = validate_config(ring8())
    assert "not CUDA" in graph_blocker(cfg, CPU)
    training = build_training(cfg, device=CPU)
    assert type(training.step_fn) is GanStep
    assert not any(g["capturable"] for opt in (training.opt_g, training.opt_d) for g in opt.param_groups)


def test_graphed_step_reports_why_it_runs_eagerly():
    step = build_training(validate_config(ring8()), device=CPU).step_fn
    assert "not CUDA" in GraphedStep(step).eager_reason
    gp = build_training(validate_config({**digits(), "loss": {"name": "wgan_gp"}}), device=CPU).step_fn
    assert "double backward" in GraphedStep(gp).eager_reason


# ---- the eager paths train exactly like the plain GanStep (CPU) ----


@pytest.mark.parametrize("config", [ring8(d_steps_per_g_step=2), digits()], ids=["ring8_k2", "digits"])
def test_eager_graphed_step_trains_like_plain_step(config):
    cfg = validate_config(config)
    plain = build_training(cfg, device=CPU)
    wrapped = build_training(cfg, device=CPU)
    wrapped.step_fn = GraphedStep(wrapped.step_fn)
    run_from_same_rng(plain.step_fn, wrapped.step_fn, steps=4)
    assert wrapped.step_fn.eager_reason is not None and not wrapped.step_fn.graphed
    assert_same_training(plain, wrapped, rtol=0, atol=0)
    assert wrapped.step_fn.metrics.read() == plain.step_fn.metrics.read()
    assert wrapped.step_fn.metrics.d_terms == 4 * cfg.d_steps_per_g_step
    assert wrapped.step_fn.metrics.g_terms == 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="relies on capture failing without a CUDA device")
def test_failed_capture_warns_once_and_trains_like_plain_step():
    cfg = validate_config(ring8(d_steps_per_g_step=2))
    plain = build_training(cfg, device=CPU)
    wrapped = build_training(cfg, device=CPU)
    start = torch.get_rng_state()
    for _ in range(6):
        plain.step_fn()
    torch.set_rng_state(start)
    for _ in range(2):  # some optimiser state first, as after a warm-up
        wrapped.step_fn()
    step = GraphedStep(wrapped.step_fn, warmup_iterations=0)
    step.eager_reason = None  # pretend the step were graphable: the real capture is attempted, and fails
    with pytest.warns(RuntimeWarning, match="capture failed"):
        step()
    assert step.eager_reason.startswith("CUDA graph capture failed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no Adam capturable warning
        for _ in range(3):
            step()
    # The failed capture left no trace: optimiser flags restored, counters and training as the plain step's.
    assert not any(g["capturable"] for opt in (wrapped.opt_g, wrapped.opt_d) for g in opt.param_groups)
    assert step.metrics.d_terms == plain.step_fn.metrics.d_terms == 12
    assert step.metrics.g_terms == plain.step_fn.metrics.g_terms == 6
    assert_same_training(plain, wrapped, rtol=0, atol=0)


class _ReplayAsEager:
    """Stands in for a captured graph on CPU: does the device work of one iteration, not the host work."""

    def __init__(self, step: GanStep):
        self.step = step

    def replay(self) -> None:
        m = self.step.metrics
        counters = (m.d_terms, m.g_terms)
        self.step()
        m.d_terms, m.g_terms = counters


def test_replays_keep_host_counters_right():
    cfg = validate_config(ring8(d_steps_per_g_step=3))
    plain = build_training(cfg, device=CPU)
    wrapped = build_training(cfg, device=CPU)
    step = GraphedStep(wrapped.step_fn)
    step.eager_reason, step.graph = None, _ReplayAsEager(wrapped.step_fn)
    run_from_same_rng(plain.step_fn, step, steps=5)
    assert step.metrics.d_terms == 15 and step.metrics.g_terms == 5
    assert step.metrics.read() == plain.step_fn.metrics.read()
    assert_same_training(plain, wrapped, rtol=0, atol=0)


def test_loading_state_drops_the_captured_graph():
    training = build_training(validate_config(ring8()), device=CPU)
    training.step_fn = GraphedStep(training.step_fn)
    training.step_fn.graph = object()  # as if captured
    training.load_state_dict(training.state_dict())
    assert training.step_fn.graph is None


def test_make_capturable_sets_the_flag_on_loaded_state():
    training = build_training(validate_config(ring8()), device=CPU)
    training.step_fn()
    opt = training.opt_d
    make_capturable(opt)
    assert all(g["capturable"] for g in opt.param_groups)
    assert all(s["step"].device == p.device for p, s in opt.state.items())


# ---- on a GPU: the graph replays the same training as the eager step ----


def _cuda_pair(config: dict, source_shape: tuple[int, ...] | None = None):
    cfg = validate_config(config)
    source = None
    if source_shape is not None:
        images = torch.rand(512, *source_shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
        source = TensorSource(images, CUDA)
    graphed = build_training(cfg, device=CUDA, source=source)
    eager = build_training(cfg.with_overrides({"train.cuda_graphs": False}), device=CUDA, source=source)
    assert isinstance(graphed.step_fn, GraphedStep) and type(eager.step_fn) is GanStep
    return graphed, eager


def _run_both(graphed, eager, steps: int) -> None:
    """``steps`` iterations of each, from the same CUDA RNG state; both must leave the RNG in the same state."""
    start = torch.cuda.get_rng_state()
    for _ in range(steps):
        graphed.step_fn()
    after_graphed = torch.cuda.get_rng_state()
    torch.cuda.set_rng_state(start)
    for _ in range(steps):
        eager.step_fn()
    torch.cuda.synchronize()
    # Each replay advanced the Philox offset exactly as an eager iteration does: fresh noise every time.
    assert torch.equal(after_graphed, torch.cuda.get_rng_state())


def assert_close_relative_to_update(initial, graphed, eager, rel: float) -> None:
    """||graphed - eager|| is tiny next to how far training moved the weights (||eager - initial||)."""
    diff = sum(
        float((g.float() - e.float()).norm()) ** 2
        for g, e in zip(params(graphed), params(eager), strict=True)
    )
    moved = sum(
        float((e.float() - i.float()).norm()) ** 2 for e, i in zip(params(eager), initial, strict=True)
    )
    assert moved > 0
    assert (diff / moved) ** 0.5 < rel, (diff, moved)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("k", [1, 2])
def test_graphed_mlp_matches_eager(k):
    graphed, eager = _cuda_pair(ring8(d_steps_per_g_step=k, precision="fp32"))
    _run_both(graphed, eager, steps=10)
    assert graphed.step_fn.graphed, graphed.step_fn.eager_reason
    assert_same_training(graphed, eager, rtol=1e-5, atol=1e-6)
    g, e = graphed.step_fn.metrics, eager.step_fn.metrics
    assert (g.d_terms, g.g_terms) == (e.d_terms, e.g_terms) == (10 * k, 10)
    for key, value in e.read().items():
        assert g.read()[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.gpu
@needs_cuda
def test_graphed_mlp_with_packing_and_minibatch_std_matches_eager():
    graphed, eager = _cuda_pair({**ring8(precision="fp32"), "model": {"d_pac": 4, "d_minibatch_std": 4}})
    _run_both(graphed, eager, steps=10)
    assert graphed.step_fn.graphed, graphed.step_fn.eager_reason
    assert_same_training(graphed, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_graphed_dcgan_matches_eager(precision, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    config = {
        "name": "graphs",
        "data": {"name": "mnist", "root": "unused"},
        "train": {"batch_size": 32, "precision": precision},
    }
    graphed, eager = _cuda_pair(config, source_shape=(1, 28, 28))
    initial = params(eager)
    _run_both(graphed, eager, steps=8)
    assert graphed.step_fn.graphed, graphed.step_fn.eager_reason
    assert graphed.step_fn.channels_last
    assert_close_relative_to_update(initial, graphed, eager, rel=1e-3 if precision == "fp32" else 1e-2)


@pytest.mark.gpu
@needs_cuda
def test_run_loop_reports_match_between_graphed_and_eager():
    # Metric resets between intervals zero the sums in place, where the graph keeps adding to them.
    graphed, eager = _cuda_pair(ring8(precision="fp32", steps=20, eval_every=5, d_steps_per_g_step=2))
    start = torch.cuda.get_rng_state()
    g_reports = [r.metrics for r in run_loop(graphed)]
    torch.cuda.set_rng_state(start)
    e_reports = [r.metrics for r in run_loop(eager)]
    assert [r["step"] for r in g_reports] == [5, 10, 15, 20]
    for g, e in zip(g_reports, e_reports, strict=True):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert g[key] == pytest.approx(e[key], rel=1e-5, abs=1e-6), key


@pytest.mark.gpu
@needs_cuda
def test_graph_is_recaptured_after_loading_state():
    graphed, eager = _cuda_pair(ring8(precision="fp32"))
    _run_both(graphed, eager, steps=6)
    state = eager.state_dict()  # written without capturable: make_capturable sets it again at capture
    graphed.load_state_dict(state)
    eager.load_state_dict(state)
    assert not graphed.step_fn.graphed
    _run_both(graphed, eager, steps=4)
    assert graphed.step_fn.graphed
    assert_same_training(graphed, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(
    "game", [{"loss": {"name": "wgan_gp"}}, {"loss": {"name": "rpgan"}, "penalty": {"name": "r1_r2"}}]
)
def test_a_penalised_step_on_cuda_stays_eager_and_says_so_once(game, caplog):
    cfg = validate_config({**ring8(), **game})
    with caplog.at_level("WARNING", logger="gan_ray.training.loop"):
        training = build_training(cfg, device=CUDA)
    assert type(training.step_fn) is GanStep
    (line,) = [r.getMessage() for r in caplog.records if "eager step" in r.getMessage()]
    assert "double backward" in line
    training.step_fn()


@pytest.mark.gpu
@needs_cuda
def test_the_weight_average_updates_inside_the_captured_step():
    """EMA's foreach update (and its on-device decay ramp) is part of the graph: each replay updates it."""
    graphed, eager = _cuda_pair(ring8(precision="fp32", ema_decay=0.99))
    _run_both(graphed, eager, steps=10)
    assert graphed.step_fn.graphed, graphed.step_fn.eager_reason
    assert graphed.ema.updates.item() == eager.ema.updates.item() == 10
    for a, b in zip(graphed.ema.module.parameters(), eager.ema.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_learning_rate_schedule_runs_eagerly():
    cfg = validate_config({**ring8(), "optim": {"lr_g": 1e-3, "lr_d": 1e-3, "lr_schedule": "cosine"}})
    assert "lr_schedule" in graph_blocker(cfg, CUDA)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("policy", ["diffaug", "ada"])
def test_graphed_resnet_with_augmentation_matches_eager(policy):
    """The residual network and the augmentation (ADA's on-device probability update among it) capture:
    replays train as the eager step does and move ADA's p alike."""
    config = {
        "data": {
            "name": "digits",
            "image_size": 28,
            "augment": {"policy": policy, "ada_kimg": 0.1, "ada_interval": 2},
        },
        "model": {"name": "resnet", "params": {"width": 32, "group_size": 8}},
        "train": {"batch_size": 16, "precision": "fp32"},
    }
    graphed, eager = _cuda_pair(config, source_shape=(1, 28, 28))
    _run_both(graphed, eager, steps=10)
    assert graphed.step_fn.graphed, graphed.step_fn.eager_reason
    assert_close_relative_to_update(
        params(build_training(validate_config(config), device=CUDA)), graphed, eager, 1e-3
    )
    if policy == "ada":
        p_graphed, p_eager = graphed.step_fn.augment.adaptive.p, eager.step_fn.augment.adaptive.p
        assert float(p_graphed) == pytest.approx(float(p_eager)) and float(p_eager) > 0


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("model", ["dcgan", "resnet"])
def test_graphed_conditional_step_matches_eager(model):
    """A class-conditional step (labels drawn on the device with their images, fakes of the same labels,
    the projection head) captures, and replays train as the eager step does."""
    from gan_ray.data.labelled import LabelledSource

    sizes = {"width": 32, "group_size": 8} if model == "resnet" else {"g_filters": 16, "d_filters": 16}
    config = {
        "data": {"name": "digits", "image_size": 28},
        "model": {"name": model, "params": sizes, "conditional": True},
        "train": {"batch_size": 16, "precision": "fp32"},
    }
    cfg = validate_config(config)
    rng = torch.Generator().manual_seed(1)
    source = LabelledSource(
        torch.rand(512, 1, 28, 28, generator=rng) * 2 - 1, torch.randint(0, 10, (512,), generator=rng), CUDA
    )
    graphed = build_training(cfg, device=CUDA, source=source)
    eager = build_training(cfg.with_overrides({"train.cuda_graphs": False}), device=CUDA, source=source)
    assert isinstance(graphed.step_fn, GraphedStep) and type(eager.step_fn) is GanStep
    _run_both(graphed, eager, steps=10)
    assert graphed.step_fn.graphed, graphed.step_fn.eager_reason
    assert_close_relative_to_update(
        params(build_training(cfg, device=CUDA, source=source)), graphed, eager, 1e-3
    )
