"""The training core: build G, D, optimisers and data for a config, then run the alternating loop.

Plain PyTorch: no Ray, no MLflow. :func:`run_loop` yields an :class:`EvalReport` every eval interval;
the run driver (:mod:`gan_ray.training.driver`) iterates it and decides what to report and save.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan_ray.augment import Augmentation, make_augmentation
from gan_ray.config import AugmentConfig, GanConfig, check_resumable
from gan_ray.data.catalog import REFERENCE_FILE_KEY, REFERENCE_KEY
from gan_ray.data.labelled import make_labelled_source
from gan_ray.data.sources import DataSource, make_source
from gan_ray.errors import DivergedError
from gan_ray.losses import get_loss
from gan_ray.metrics import mode_metrics
from gan_ray.models import unwrap
from gan_ray.noise import get_noise
from gan_ray.objective import Objective
from gan_ray.training.checkpoint import restore, training_state
from gan_ray.training.cuda_graphs import GraphedStep, graph_blocker
from gan_ray.training.ema import WeightAverage
from gan_ray.training.health import health
from gan_ray.training.networks import build_models
from gan_ray.training.schedules import schedule
from gan_ray.training.step import GanStep, StepMetrics, all_ranks_agree

_log = logging.getLogger(__name__)

__all__ = ["DivergedError", "EvalReport", "Training", "build_training", "default_evaluator", "run_loop"]

#: Seconds of the eval interval spent in training steps, and in sampling and scoring at its eval: in every
#: report, so a run (and bench/sweep_overhead.py) can tell training time from the rest.
TIME_STEPS = "time_steps_s"
TIME_EVAL = "time_eval_s"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but no CUDA device is available")
    return device


def autocast_dtype(precision: str, device: torch.device, bf16_pays: bool) -> torch.dtype | None:
    """The autocast dtype of a run, None for fp32.

    ``bf16``: bf16 on CUDA. ``auto``: bf16 only where the model spec says it pays (``ModelSpec.bf16``:
    the convolutional DCGANs) on GPUs that have bf16; never for the 2-D mixture MLPs, whose steps in bf16
    are about 0.6 sigma of a ring mode at radius 1 (bf16 keeps 8 bits of mantissa) for no speed gain.
    """
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if bf16_pays and torch.cuda.is_bf16_supported():
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
    # The average of G's weights that evals sample from (None: EMA off); the step updates it.
    ema: WeightAverage | None = None
    # Every eval report's metrics so far (restored on resume): a checkpoint carries its run's history.
    history: list[dict[str, Any]] = field(default_factory=list)
    # The previous eval's samples, which the next eval's health check compares with (not checkpointed:
    # a resumed run's first eval has none).
    previous_samples: Tensor | None = field(default=None, repr=False)
    eval_noise: Tensor = field(init=False)
    # The classes of the eval samples, 0, 1, ..., C-1, 0, 1, ... (None: unconditional): every class alike.
    eval_labels: Tensor | None = field(init=False)

    def __post_init__(self) -> None:
        # Fixed evaluation noise, from its own generator, so evals are comparable and training RNG untouched.
        g = torch.Generator().manual_seed(self.config.train.seed + 7919)
        n = self.config.train.eval_samples
        self.eval_noise = get_noise(self.config.noise.distribution)(n, self.config.noise_dim, generator=g).to(
            self.device
        )
        classes = self.config.num_classes
        self.eval_labels = torch.arange(n, device=self.device) % classes if classes else None

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint of this run now (see :func:`gan_ray.training.checkpoint.training_state`)."""
        return training_state(
            self.step,
            self.generator,
            self.discriminator,
            self.opt_g,
            self.opt_d,
            self.config,
            self.history,
            self.hyperparameters(),
            ema=self.ema,
            augment=self.step_fn.augment,
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint of this run.

        The checkpoint's config must agree with this one but for the keys a resume may change
        (:data:`gan_ray.config.RESUMABLE_CHANGES`); those take effect: the optimisers' learning rates
        and betas are this config's (loading an optimiser's state would bring back the old ones).
        """
        if "config" in state:
            check_resumable(state["config"], self.config)
        self.step = restore(
            state, self.generator, self.discriminator, self.opt_g, self.opt_d, self.ema, self.step_fn.augment
        )
        self.history = [dict(h) for h in state.get("history", [])]
        o = self.config.optim
        for opt, lr in ((self.opt_g, o.lr_g), (self.opt_d, o.lr_d)):
            for group in opt.param_groups:
                group["lr"], group["betas"] = lr, (o.beta1, o.beta2)
        step = self.step_fn
        step.base_lr_g, step.base_lr_d, step.iterations = o.lr_g, o.lr_d, self.step
        # Loading replaced the optimiser state tensors a captured CUDA graph would still point at.
        reset_graph = getattr(self.step_fn, "reset_graph", None)
        if reset_graph is not None:
            reset_graph()
        if self.rank:
            # Rank 0's RNG was saved; the other ranks must keep drawing different noise and data.
            torch.manual_seed(_rank_seed(self.config.train.seed, self.rank, self.step))

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters as the live objects hold them (read back from the optimisers, the loss,
        the step), not as the config asked: what a sweep trial really trained with. Under a schedule the
        learning rates are the bases the step scales into the optimisers at every step."""
        s = self.step_fn
        g_group, d_group = self.opt_g.param_groups[0], self.opt_d.param_groups[0]
        scheduled = s.lr_schedule is not None  # the step sets the optimisers' lr from these every step
        used: dict[str, Any] = {
            "optim.lr_g": s.base_lr_g if scheduled else g_group["lr"],
            "optim.lr_d": s.base_lr_d if scheduled else d_group["lr"],
            "optim.beta1": g_group["betas"][0],
            "optim.beta2": g_group["betas"][1],
            "train.d_steps_per_g_step": s.d_steps_per_g_step,
            "train.batch_size": s.batch_size,
            "noise.distribution": s.noise_name or s.noise.__name__,
            "noise.dim": s.noise_dim,
            "loss.name": s.loss.config_name,
            "train.ema_decay": s.ema.decay if s.ema is not None else None,
            "optim.lr_schedule": s.lr_schedule.kind if s.lr_schedule is not None else "constant",
        }
        if s.lr_schedule is not None:
            used["optim.lr_final_ratio"] = s.lr_schedule.final_ratio
        used["penalty.name"] = s.penalty.name if s.penalty is not None else "none"
        if s.penalty is not None:
            if s.loss.built_in_penalty is None:  # wgan_gp's weight is its loss.params.gp_weight
                used["penalty.weight"] = s.penalty.weight
            used["penalty.schedule"] = (
                s.penalty_schedule.kind if s.penalty_schedule is not None else "constant"
            )
            if s.penalty_every != 1:
                used["penalty.every"] = s.penalty_every
        if s.penalty_schedule is not None:
            used["penalty.final_ratio"] = s.penalty_schedule.final_ratio
        used.update({f"loss.params.{k}": v for k, v in s.loss.params().items()})
        return used

    @torch.no_grad()
    def sample(self, n: int | None = None) -> Tensor:
        """Samples from G (its weight average, with EMA on) in eval mode, from the fixed eval noise (or
        the first n of it), of the eval labels (classes in turn) for a conditional G."""
        g = self.ema.module if self.ema is not None else unwrap(self.generator)
        was_training = g.training
        g.eval()
        try:
            z = self.eval_noise if n is None else self.eval_noise[:n]
            if self.eval_labels is None:
                return g(z).float()
            return g(z, self.eval_labels[: z.shape[0]]).float()
        finally:
            g.train(was_training)


def _rank_seed(seed: int, rank: int, step: int = 0) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63)


def augmentation(cfg: AugmentConfig, device: torch.device) -> Augmentation | None:
    """The augmentation ``data.augment`` asks for, its ADA state on ``device`` (None: off)."""
    return make_augmentation(
        cfg.policy,
        device,
        cfg.transforms,
        p=cfg.p,
        target=cfg.ada_target,
        kimg=cfg.ada_kimg,
        interval=cfg.ada_interval,
        translation_ratio=cfg.translation_ratio,
        cutout_ratio=cfg.cutout_ratio,
    )


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
    channels_last = cfg.model_spec.channels_last
    g, d = g.to(device), d.to(device)
    if channels_last:
        g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    if wrap_model is not None:
        g, d = wrap_model(g), wrap_model(d)
    blocker = graph_blocker(cfg, device, world_size)
    graphed = blocker is None
    if device.type == "cuda" and not graphed:
        _log.warning("gan_ray: the eager step on %s: %s", device, blocker)
    opt_g, opt_d = _optimizers(cfg, unwrap(g), unwrap(d), device, capturable=graphed)
    if source is None and cfg.num_classes:
        source = make_labelled_source(cfg.data, device, rank, world_size)
    elif source is None:
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
        noise_name=cfg.noise.distribution,
        noise_dim=cfg.noise_dim,
        batch_size=cfg.train.batch_size,
        d_steps_per_g_step=cfg.d_steps_per_g_step,
        metrics=StepMetrics(device),
        autocast_dtype=autocast_dtype(cfg.train.precision, device, cfg.model_spec.bf16),
        channels_last=channels_last,
        ema=WeightAverage(g, cfg.train.ema_decay) if cfg.train.ema_decay is not None else None,
        lr_schedule=schedule(
            cfg.optim.lr_schedule, cfg.optim.lr_final_ratio, cfg.train.steps, cfg.optim.lr_burn_in
        ),
        penalty=cfg.effective_penalty,
        penalty_schedule=schedule(
            cfg.penalty.schedule, cfg.penalty.final_ratio, cfg.train.steps, cfg.penalty.burn_in
        ),
        penalty_every=cfg.penalty.every,
        augment=augmentation(cfg.data.augment, device),
        num_classes=cfg.num_classes,
    )
    step_fn = GraphedStep(step) if graphed else step
    return Training(cfg, device, g, d, opt_g, opt_d, step_fn, rank=rank, world_size=world_size, ema=step.ema)


#: samples -> quality metrics; a string value names how they were scored (e.g. the feature extractor).
Evaluator = Callable[[Tensor], dict[str, float | str]]


def default_evaluator(
    cfg: GanConfig, device: torch.device, extractor_file: str | Path | None = None
) -> Evaluator:
    """The quality metrics for the config's dataset (:attr:`GanConfig.reported_metrics`): mode metrics for
    mixtures, a Fréchet distance (and the classes a classifier sees; for a conditional G, how often it
    sees the class asked for: ``class_accuracy``; and ``metrics.suite``) for images, scored by
    ``extractor_file`` (default: ``cfg.metrics.extractor``, else this node's cache) and named by
    ``feature_extractor`` and the reference's identity line in every report (and the file of its real
    features where the suite has one, for the tracking floor to log)."""
    if cfg.data.is_mixture:
        return lambda samples: mode_metrics(samples, cfg.data.name)
    from gan_ray.metrics.conditional import intra_class_fid
    from gan_ray.metrics.frechet import FrechetEvaluator  # torchmetrics: only for image runs

    extractor_file = extractor_file or cfg.metrics.extractor
    if extractor_file is not None and "://" in str(extractor_file):
        raise ValueError(f"metrics.extractor {extractor_file!r} is remote: copy it to a local file first")
    from gan_ray.metrics.reference import identity_line

    m = cfg.metrics
    frechet = FrechetEvaluator(
        cfg.data,
        device=device,
        kind=m.features,
        extractor_file=extractor_file,
        suite=m.suite,
        reference_samples=m.reference_samples,
        reference=m.reference,
        keep_fake_features=cfg.num_classes > 0,
    )
    named = {"feature_extractor": frechet.identity, REFERENCE_KEY: identity_line(frechet.reference_identity)}
    if frechet.reference_file is not None:
        named[REFERENCE_FILE_KEY] = str(frechet.reference_file)
    classes = cfg.num_classes

    def scores(samples: Tensor) -> dict[str, float | str]:
        # A conditional G's eval samples were asked for the classes in turn (Training.eval_labels).
        asked = torch.arange(samples.shape[0]) % classes if classes else None
        out = {**frechet.scores(samples, asked=asked), **named}
        if asked is not None and frechet.fake_features is not None and samples.shape[0] >= 2 * classes:
            real, real_labels = frechet.labelled_real_features()
            out.update(intra_class_fid(real, real_labels, frechet.fake_features, asked))
        return out

    return scores


def _steps(training: Training, count: int, should_stop: Callable[[], bool] | None) -> int:
    """Run up to ``count`` steps, fewer where ``should_stop`` says so first; returns how many ran."""
    for done in range(count):
        if should_stop is not None and should_stop():
            return done
        training.step_fn()
    return count


def run_loop(
    training: Training,
    evaluator: Evaluator | None = None,
    objective: Objective | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[EvalReport]:
    """Train from ``training.step`` to ``config.train.steps``, yielding a report every ``eval_every`` steps.

    ``should_stop``, asked before every step (it must be cheap and never sync a device), ends the loop
    at once, without another report: whoever runs it has been told to stop. Only for a run of one
    worker: a rank that stopped alone would leave the others waiting in their next collective.

    Each report's ``objective`` repeats the metric ``objective.metric`` (default: the dataset's, see
    :attr:`gan_ray.config.GanConfig.objective`) and ``best_objective`` is the best of it so far
    (what a sweep ranks trials by); ``health`` is ``"ok"`` or the first sign of a game that stopped
    (:func:`gan_ray.training.health.health`); the report is appended to ``training.history``. Raises
    :class:`DivergedError` at the first
    eval whose losses or eval samples are not finite; under torch.distributed every rank raises at the
    same eval (the ``evaluator`` may run on one rank only).
    """
    cfg = training.config
    total, every = cfg.train.steps, cfg.train.eval_every
    images_per_step = cfg.train.batch_size * cfg.d_steps_per_g_step * training.world_size
    metrics = training.step_fn.metrics
    objective = objective or cfg.objective
    while training.step < total:
        interval = min(every - training.step % every, total - training.step)
        metrics.reset()
        start = time.perf_counter()
        done = _steps(training, interval, should_stop)
        if done < interval:
            training.step += done
            return
        values = metrics.read()  # the interval's only host sync
        elapsed = time.perf_counter() - start
        training.step += interval
        values["images_per_s"] = interval * images_per_step / elapsed
        augment = training.step_fn.augment
        if augment is not None and augment.adaptive is not None:
            values["ada_p"] = float(augment.adaptive.p)  # read at the eval, beside the metrics' one sync
        values[TIME_STEPS] = elapsed
        if not all(math.isfinite(values[k]) for k in ("loss_d", "loss_g", "d_real", "d_fake")):
            raise DivergedError(training.step, values)
        start = time.perf_counter()
        # Every rank samples and checks (the same G, the same eval noise) and all of them agree: a rank
        # that stopped alone would leave the others waiting in the next collective.
        samples = training.sample()
        if not all_ranks_agree(bool(torch.isfinite(samples).all()), training.device):
            raise DivergedError(training.step, {**values, "samples": float("nan")})
        values["health"] = health(
            values,
            training.history[-1] if training.history else None,
            samples,
            training.previous_samples,
            has_probabilities=training.step_fn.loss.has_probabilities,
        )
        training.previous_samples = samples
        if evaluator is not None:
            values.update(evaluator(samples))
        values[TIME_EVAL] = time.perf_counter() - start
        values["step"] = training.step
        if objective.metric in values:
            values["objective"] = values[objective.metric]
            earlier = [h.get("objective") for h in training.history]
            values["best_objective"] = objective.best_value([*earlier, values["objective"]])
        training.history.append(values)
        yield EvalReport(training.step, values, samples)
