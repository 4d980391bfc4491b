"""CUDA fast path: one whole GAN iteration (k D-steps, the G-step, both fused Adam updates) as one CUDA graph.

:class:`GraphedStep` wraps a :class:`~gan_ray.training.step.GanStep`: a few eager warm-up iterations on a side
stream, then one capture, then every call is a single ``replay()``. :func:`graph_blocker` says when the
eager step must be used instead; a capture that raises warns once and falls back to eager.

Why no static input copies are needed: the step draws its real batch (an index into the device-resident
data) and its noise inside itself from the default CUDA generator, whose Philox seed and offset a graph
reads at each replay, so every replay draws fresh numbers, the same ones an eager step would have drawn.

Eager fallbacks, and why:

- device is not CUDA (CPU has no graphs), or ``train.cuda_graphs`` is off;
- a gradient penalty (``penalty``, or ``wgan_gp``'s own): its double backward (``create_graph=True``) is
  not captured here;
- a learning-rate schedule (``optim.lr_schedule``): the captured Adam step holds the lr of the capture;
- DDP with world_size > 1: DDP's bucketed all-reduce hooks, its bucket rebuild after the first
  iteration and NCCL under capture need care this wrapper does not take (one worker is not wrapped
  in DDP by Ray Train, so it is graphed);
- real batches streamed from host memory (a set too large for the device): a graph would replay one
  gathered batch forever;
- anything else that fails to capture (a host sync in a custom noise or source, for example).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

from gan_ray.training.step import GanStep, StepMetrics

if TYPE_CHECKING:
    from gan_ray.config import GanConfig

WARMUP_ITERATIONS = 3


def graph_blocker(cfg: GanConfig, device: torch.device, world_size: int = 1) -> str | None:
    """Why ``cfg`` on ``device`` with ``world_size`` workers cannot use the graphed step; None if it can."""
    if not cfg.train.cuda_graphs:
        return "train.cuda_graphs is off"
    if not cfg.model_spec.cuda_graph_safe:
        return f"model {cfg.model_name!r} is not marked cuda_graph_safe in its ModelSpec"
    if device.type != "cuda":
        return f"device {device.type!r} is not CUDA"
    penalty = cfg.effective_penalty
    if penalty is not None:
        return f"penalty {penalty.name!r} takes a double backward (gradient penalty)"
    if cfg.optim.lr_schedule != "constant":
        return f"optim.lr_schedule {cfg.optim.lr_schedule!r} changes the learning rates between steps"
    if world_size > 1:
        return f"DDP over {world_size} workers"
    return None


def use_cuda_graphs(cfg: GanConfig, device: torch.device, world_size: int = 1) -> bool:
    """True when :func:`build_training <gan_ray.training.loop.build_training>` should wrap the step in a graph."""
    return graph_blocker(cfg, device, world_size) is None


def _step_blocker(step: GanStep) -> str | None:
    """What in an already-built step rules capture out (the config-level checks are in graph_blocker)."""
    if step.penalty is not None:
        return f"penalty {step.penalty.name!r} takes a double backward (gradient penalty)"
    if step.lr_schedule is not None:
        return "a learning-rate schedule changes the learning rates between steps"
    ddp = torch.nn.parallel.DistributedDataParallel
    if isinstance(step.generator, ddp) or isinstance(step.discriminator, ddp):
        return "G or D is wrapped in DistributedDataParallel"
    if step.device.type != "cuda":
        return f"device {step.device.type!r} is not CUDA"
    if not getattr(step.source, "graph_safe", True):
        return "the real batches stream from host memory (the set is larger than the device holds)"
    return None


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Set ``capturable`` on every group and keep Adam's step counters on the parameters' device.

    Capture requires it even for fused Adam (torch 2.14 checks it in ``step``). It is set at build time
    on CUDA; this also covers state loaded from a checkpoint written without it (a CPU run).
    """
    for group in optimizer.param_groups:
        group["capturable"] = True
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor) and step.device != p.device:
                state["step"] = step.to(device=p.device, dtype=torch.float32)


class GraphedStep:
    """Callable like the :class:`GanStep` it wraps; after warm-up, each call replays one captured iteration.

    ``metrics.d_terms``/``g_terms`` are host counters the replay cannot bump, so they are bumped here
    (k and 1 per call); the device sums are updated by the graph itself, in place.
    Call :meth:`reset_graph` after replacing tensors the graph holds (loading optimiser state does).
    """

    def __init__(self, step: GanStep, warmup_iterations: int = WARMUP_ITERATIONS):
        self.eager = step
        self.warmup_iterations = warmup_iterations
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0
        # Why this instance runs eagerly: a property of the step, or a capture that failed.
        self.eager_reason: str | None = _step_blocker(step)
        if self.eager_reason is not None:
            self._uncapturable()

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the wrapper: the step's own attributes.
        if name == "eager":
            raise AttributeError(name)
        return getattr(self.eager, name)

    @property
    def metrics(self) -> StepMetrics:
        return self.eager.metrics

    @property
    def graphed(self) -> bool:
        """True once an iteration has been captured and is being replayed."""
        return self.graph is not None

    def reset_graph(self) -> None:
        """Forget the captured graph; the next call captures again (no new warm-up)."""
        self.graph = None

    def __call__(self) -> None:
        self.calls += 1
        if self.eager_reason is not None:
            self.eager()
        elif self.graph is not None:
            self._replay()
        elif self.calls <= self.warmup_iterations:
            self._warmup()
        else:
            try:
                with torch.cuda.device(self.eager.device):
                    self.graph = self._capture()
            except Exception as err:  # noqa: BLE001 - any capture failure means: run eagerly
                self._fall_back(err)
                self.eager()
                return
            self._replay()

    def _replay(self) -> None:
        self.graph.replay()
        self.eager.metrics.d_terms += self.eager.d_steps_per_g_step
        self.eager.metrics.g_terms += 1
        self.eager.iterations += 1

    def _warmup(self) -> None:
        # Eager iterations on a side stream before capture, as torch.cuda.graph's docs ask: lazy
        # initialisation (optimiser state, cuBLAS/cuDNN workspaces, AccumulateGrad streams) happens here.
        with torch.cuda.device(self.eager.device):
            current = torch.cuda.current_stream()
            side = torch.cuda.Stream()
            side.wait_stream(current)
            with torch.cuda.stream(side), warnings.catch_warnings():
                # Adam warns that capturable=True is slower uncaptured; these few iterations are meant to be.
                warnings.filterwarnings("ignore", message=".*capturable=True.*")
                self.eager()
            current.wait_stream(side)

    def _capture(self) -> torch.cuda.CUDAGraph:
        """Record one iteration; nothing runs on the device until the first replay."""
        step, metrics = self.eager, self.eager.metrics
        counters = (metrics.d_terms, metrics.g_terms, step.iterations)
        try:
            for opt in (step.opt_g, step.opt_d):
                make_capturable(opt)
            # Gradients set to None now are allocated by backward inside the graph's private pool.
            step.opt_d.zero_grad(set_to_none=True)
            step.opt_g.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            # thread_local: another thread of a Ray worker touching CUDA does not invalidate the capture.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                step()
        finally:
            # The Python side of the step ran once during capture (nothing ran on the device);
            # the replays account for iterations.
            metrics.d_terms, metrics.g_terms, step.iterations = counters
        return graph

    def _uncapturable(self) -> None:
        # Eager for good: capturable=True would only make Adam warn (and the unfused one sync).
        for opt in (self.eager.opt_g, self.eager.opt_d):
            for group in opt.param_groups:
                group["capturable"] = False

    def _fall_back(self, err: BaseException) -> None:
        self.eager_reason = f"CUDA graph capture failed: {type(err).__name__}: {err}"
        self._uncapturable()
        warnings.warn(
            f"gan_ray: {self.eager_reason}; training continues with the eager step",
            RuntimeWarning,
            stacklevel=3,
        )
