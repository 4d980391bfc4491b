"""The training core: build G, D, optimisers and data for a config, then run the alternating loop.

Plain PyTorch: no Ray, no MLflow. :func:`run_loop` yields an :class:`EvalReport` every eval interval;
whoever iterates it (:mod:`gan_ray.training.local`, a Ray Train worker) decides what to report and save.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gan_ray.config import GanConfig
from gan_ray.data.sources import DataSource, make_source
from gan_ray.errors import DivergedError
from gan_ray.losses import get_loss
from gan_ray.metrics import mode_metrics
from gan_ray.models import build_models, unwrap
from gan_ray.noise import get_noise
from gan_ray.objective import Objective
from gan_ray.training.checkpoint import restore, training_state
from gan_ray.training.cuda_graphs import GraphedStep, use_cuda_graphs
from gan_ray.training.step import GanStep, StepMetrics

__all__ = ["DivergedError", "EvalReport", "Training", "build_training", "default_evaluator", "run_loop"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but no CUDA device is available")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPUs that support it when precision is auto or bf16; fp32 otherwise."""
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


@dataclass
class EvalReport:
    """What the loop says at an eval: the step reached and the metrics of the interval just ended."""

    step: int
    metrics: dict[str, float]
    # The generated samples the quality metrics were computed on (None when no evaluator ran).
    samples: Tensor | None = None

    def samples_of(self, training: Training) -> Tensor:
        """The evaluated samples, or fresh ones from the same fixed eval noise when no evaluator ran."""
        return self.samples if self.samples is not None else training.sample()


@dataclass
class Training:
    """A run's live objects. ``generator``/``discriminator`` may be wrapped (DDP) by ``wrap_model``."""

    config: GanConfig
    device: torch.device
    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step_fn: GanStep | GraphedStep
    rank: int = 0
    world_size: int = 1
    step: int = 0
    eval_noise: Tensor = field(init=False)

    def __post_init__(self) -> None:
        # Fixed evaluation noise, from its own generator, so evals are comparable and training RNG untouched.
        g = torch.Generator().manual_seed(self.config.train.seed + 7919)
        n = self.config.train.eval_samples
        self.eval_noise = get_noise(self.config.noise.distribution)(n, self.config.noise_dim, generator=g).to(
            self.device
        )

    def state_dict(self, history: list[dict[str, float]] | None = None) -> dict[str, Any]:
        """The checkpoint of this run now (see :func:`gan_ray.training.checkpoint.training_state`)."""
        return training_state(
            self.step,
            self.generator,
            self.discriminator,
            self.opt_g,
            self.opt_d,
            self.config,
            history or [],
            self.hyperparameters(),
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = restore(state, self.generator, self.discriminator, self.opt_g, self.opt_d)
        # Loading replaced the optimiser state tensors a captured CUDA graph would still point at.
        reset_graph = getattr(self.step_fn, "reset_graph", None)
        if reset_graph is not None:
            reset_graph()
        if self.rank:
            # Rank 0's RNG was saved; the other ranks must keep drawing different noise and data.
            torch.manual_seed(_rank_seed(self.config.train.seed, self.rank, self.step))

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters as the live objects hold them (read back from the optimisers, the loss,
        the step), not as the config asked: what a sweep trial really trained with."""
        s = self.step_fn
        g_group, d_group = self.opt_g.param_groups[0], self.opt_d.param_groups[0]
        used: dict[str, Any] = {
            "optim.lr_g": g_group["lr"],
            "optim.lr_d": d_group["lr"],
            "optim.beta1": g_group["betas"][0],
            "optim.beta2": g_group["betas"][1],
            "train.d_steps_per_g_step": s.d_steps_per_g_step,
            "train.batch_size": s.batch_size,
            "noise.distribution": s.noise.__name__,
            "noise.dim": s.noise_dim,
            "loss.name": s.loss.name,
        }
        used.update({f"loss.params.{k}": v for k, v in s.loss.params().items()})
        return used

    @torch.no_grad()
    def sample(self, n: int | None = None) -> Tensor:
        """Samples from G in eval mode, from the fixed eval noise (or the first n of it)."""
        g = unwrap(self.generator)
        was_training = g.training
        g.eval()
        try:
            z = self.eval_noise if n is None else self.eval_noise[:n]
            return g(z).float()
        finally:
            g.train(was_training)


def _rank_seed(seed: int, rank: int, step: int = 0) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63)


def _optimizers(cfg: GanConfig, g: nn.Module, d: nn.Module, device: torch.device, capturable: bool = False):
    o = cfg.optim
    kwargs: dict[str, Any] = {"betas": (o.beta1, o.beta2)}
    if device.type == "cuda":
        kwargs["fused"] = True  # one kernel per parameter group
    if capturable:
        kwargs["capturable"] = True  # capture refuses Adam without it, fused or not (torch 2.14)
    return (
        torch.optim.Adam(g.parameters(), lr=o.lr_g, **kwargs),
        torch.optim.Adam(d.parameters(), lr=o.lr_d, **kwargs),
    )


def build_training(
    cfg: GanConfig,
    device: torch.device | None = None,
    rank: int = 0,
    world_size: int = 1,
    wrap_model: Callable[[nn.Module], nn.Module] | None = None,
    source: DataSource | None = None,
) -> Training:
    """Seeded models, optimisers, data and step for ``cfg``; ``wrap_model`` is e.g. Ray's prepare_model.

    ``source`` replaces the config's dataset (benchmarks feed synthetic images of the same shape).
    On CUDA the step is wrapped in a :class:`~gan_ray.training.cuda_graphs.GraphedStep` where
    :func:`~gan_ray.training.cuda_graphs.graph_blocker` allows it; elsewhere the plain :class:`GanStep`.
    """
    device = device or resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    g, d = build_models(cfg)
    # NHWC for the convolutions: tensor-core layout on GPU, oneDNN's preferred one on CPU (there it took
    # the step on the 28x28 DCGAN from 0.94x to 1.08x the reference loop's speed: bench/RESULTS.md).
    channels_last = cfg.model_family == "dcgan"
    g, d = g.to(device), d.to(device)
    if channels_last:
        g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    if wrap_model is not None:
        g, d = wrap_model(g), wrap_model(d)
    graphed = use_cuda_graphs(cfg, device, world_size)
    opt_g, opt_d = _optimizers(cfg, unwrap(g), unwrap(d), device, capturable=graphed)
    if source is None:
        source = make_source(cfg.data, device, rank, world_size)
    torch.manual_seed(_rank_seed(cfg.train.seed, rank))  # different noise and batches per rank
    step = GanStep(
        generator=g,
        discriminator=d,
        opt_g=opt_g,
        opt_d=opt_d,
        loss=get_loss(cfg.loss.name, **cfg.loss.params),
        source=source,
        noise=get_noise(cfg.noise.distribution),
        noise_dim=cfg.noise_dim,
        batch_size=cfg.train.batch_size,
        d_steps_per_g_step=cfg.train.d_steps_per_g_step,
        metrics=StepMetrics(device),
        autocast_dtype=autocast_dtype(cfg.train.precision, device),
        channels_last=channels_last,
    )
    step_fn = GraphedStep(step) if graphed else step
    return Training(cfg, device, g, d, opt_g, opt_d, step_fn, rank=rank, world_size=world_size)


Evaluator = Callable[[Tensor], dict[str, float]]


def default_evaluator(cfg: GanConfig, device: torch.device) -> Evaluator:
    """The quality metrics for the config's dataset: mode metrics for mixtures, a Fréchet distance for images."""
    if cfg.data.is_mixture:
        return lambda samples: mode_metrics(samples, cfg.data.name)
    from gan_ray.metrics.frechet import FrechetEvaluator  # torchmetrics: only for image runs

    frechet = FrechetEvaluator(cfg.data, device=device)
    return lambda samples: {"fid": frechet.evaluate(samples)}


def run_loop(
    training: Training, evaluator: Evaluator | None = None, objective: Objective | None = None
) -> Iterator[EvalReport]:
    """Train from ``training.step`` to ``config.train.steps``, yielding a report every ``eval_every`` steps.

    Each report's ``objective`` repeats the metric ``objective.metric`` (default: the dataset's, see
    :attr:`gan_ray.data.catalog.DatasetInfo.objective`). Raises :class:`DivergedError` at the first
    eval whose losses are not finite.
    """
    cfg = training.config
    total, every = cfg.train.steps, cfg.train.eval_every
    images_per_step = cfg.train.batch_size * cfg.train.d_steps_per_g_step * training.world_size
    metrics = training.step_fn.metrics
    metric = (objective or cfg.data.info.objective).metric
    while training.step < total:
        interval = min(every - training.step % every, total - training.step)
        metrics.reset()
        start = time.perf_counter()
        for _ in range(interval):
            training.step_fn()
        values = metrics.read()  # the interval's only host sync
        elapsed = time.perf_counter() - start
        training.step += interval
        values["images_per_s"] = interval * images_per_step / elapsed
        if not all(math.isfinite(values[k]) for k in ("loss_d", "loss_g", "d_real", "d_fake")):
            raise DivergedError(training.step, values)
        samples = None
        if evaluator is not None:
            samples = training.sample()
            if not torch.isfinite(samples).all():
                raise DivergedError(training.step, {**values, "samples": float("nan")})
            values.update(evaluator(samples))
        values["step"] = training.step
        if metric in values:
            values["objective"] = values[metric]
        yield EvalReport(training.step, values, samples)
