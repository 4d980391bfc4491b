"""Training throughput of gan_ray's core against a plain pytorch/examples-style loop, and Ray Train's overhead.

Prints one JSON line per measurement (stdout; progress goes to stderr)::

    python bench/throughput.py [--device cpu|cuda] [--quick] [--models ring8,dcgan28,dcgan64]

``"measurement": "throughput"`` lines: ``reference_images_per_s`` (bench/reference_loop.py),
``gan_ray_images_per_s`` (``build_training`` + its step, same G, D, batch and device, synthetic images)
and ``ratio`` = gan_ray / reference, the median of per-repeat ratios; the two loops are timed in
alternation (order flipped every repeat) so that load from other processes hits both alike.
Images/s counts real images consumed: k * batch per iteration.

The ``"measurement": "ray_train_overhead"`` line compares the ring8 MLP trained by ``gan_ray.ray.train.fit``
with 1 worker against the same config run by the core in this process; see :func:`ray_overhead`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_loop import ReferenceLoop, make_loader  # noqa: E402

from gan_ray.config import GanConfig, load_config, validate_config  # noqa: E402
from gan_ray.data.images import TensorSource  # noqa: E402
from gan_ray.data.mixtures import MixtureSource  # noqa: E402
from gan_ray.training.cuda_graphs import WARMUP_ITERATIONS, GraphedStep, graph_blocker  # noqa: E402
from gan_ray.training.loop import Training, build_training, default_evaluator, run_loop  # noqa: E402
from gan_ray.training.networks import build_models  # noqa: E402

RING8_CONFIG = Path(__file__).resolve().parents[1] / "gan_ray" / "configs" / "ring8.yaml"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    overrides: dict  # on top of the ring8 config: what makes this model
    batches: dict[str, tuple[int, ...]]  # per mode: "cpu", "cpu_quick", "cuda", "cuda_quick"


MODELS = {
    "ring8": ModelSpec(
        "ring8", {}, {"cpu": (256,), "cpu_quick": (256,), "cuda": (256,), "cuda_quick": (256,)}
    ),
    # 28x28, 1 channel (MNIST's shape); data.root is never read, the images are synthetic.
    "dcgan28": ModelSpec(
        "dcgan28",
        {
            "data": {"name": "mnist", "root": "unused"},
            "model": {"name": "dcgan", "params": {}},
            "noise": {"dim": 100},
        },
        {"cpu": (64,), "cpu_quick": (16,), "cuda": (64, 256), "cuda_quick": (64,)},
    ),
    # The pytorch/examples DCGAN: 64x64, 3 channels, nz 100, ngf = ndf = 64.
    "dcgan64": ModelSpec(
        "dcgan64",
        {
            "data": {"name": "cifar10", "root": "unused", "image_size": 64},
            "model": {"name": "dcgan", "params": {"g_filters": 64, "d_filters": 64}},
            "noise": {"dim": 100},
        },
        {"cpu": (64,), "cpu_quick": (16,), "cuda": (64, 256), "cuda_quick": (64,)},
    ),
}


def model_config(spec: ModelSpec, batch: int, device: str, **train) -> GanConfig:
    data = load_config(RING8_CONFIG).model_dump(mode="json")
    for section, values in spec.overrides.items():
        data[section] = {**data[section], **values}
    data["optim"] = {**data["optim"], "lr_g": 2e-4, "lr_d": 2e-4}  # the DCGAN example's Adam
    data["train"] = {**data["train"], "batch_size": batch, "device": device, **train}
    return validate_config(data)


def synthetic_images(cfg: GanConfig, n: int) -> torch.Tensor:
    from gan_ray.data.sources import data_shape

    return torch.rand(n, *data_shape(cfg.data)).mul_(2).sub_(1)


def dataset_for(cfg: GanConfig, batch: int) -> torch.Tensor:
    """What both loops train on: ring8 samples, or uniform noise in [-1, 1] shaped like the images."""
    n = batch * 32
    if cfg.data.is_mixture:
        return MixtureSource(cfg.data.name).sample(n)
    return synthetic_images(cfg, n)


def build_reference(cfg: GanConfig, data: torch.Tensor, device: torch.device, workers: int) -> ReferenceLoop:
    torch.manual_seed(cfg.train.seed)
    g, d = build_models(cfg)
    loader = make_loader(data, cfg.train.batch_size, workers)
    return ReferenceLoop(g, d, loader, cfg.noise_dim, device, lr=cfg.optim.lr_d, beta1=cfg.optim.beta1)


def build_core(cfg: GanConfig, data: torch.Tensor, device: torch.device) -> Training:
    source = None if cfg.data.is_mixture else TensorSource(data, device)
    return build_training(cfg, device=device, source=source)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run_step: Callable[[], None], steps: int, device: torch.device) -> float:
    return timed_both(run_step, steps, device)[0]


def timed_both(run_step: Callable[[], None], steps: int, device: torch.device) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all threads) for ``steps`` calls."""
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        run_step()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def measure(
    spec: ModelSpec, batch: int, device: torch.device, args: argparse.Namespace
) -> dict[str, float | int | str]:
    cfg = model_config(spec, batch, device.type)
    data = dataset_for(cfg, batch)
    ref = build_reference(cfg, data, device, args.loader_workers)
    core = build_core(cfg, data, device)
    contenders: dict[str, Callable[[], None]] = {"reference": ref.step, "gan_ray": core.step_fn}
    if device.type == "cuda":  # the same core without the graph, to separate what the graph buys
        eager = build_core(cfg.with_overrides({"train.cuda_graphs": False}), data, device)
        contenders["gan_ray_eager"] = eager.step_fn
    images_per_step = cfg.d_steps_per_g_step * batch

    # Warm-up; on CUDA long enough for GraphedStep's own warm-up and its capture.
    warmup = max(args.warmup, WARMUP_ITERATIONS + 2) if device.type == "cuda" else args.warmup
    for fn in contenders.values():
        timed(fn, warmup, device)
    # Steps per timed block: enough for about block_s seconds of the slower contender.
    probe = max(timed(fn, 2, device) / 2 for fn in contenders.values())
    steps = max(2, min(args.max_steps, math.ceil(args.block_s / max(probe, 1e-6))))

    ips: dict[str, list[float]] = {k: [] for k in contenders}
    cpu_ips: dict[str, list[float]] = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            wall, cpu = timed_both(contenders[name], steps, device)
            ips[name].append(steps * images_per_step / wall)
            cpu_ips[name].append(steps * images_per_step / max(cpu, 1e-9))
    ratios = [g / r for g, r in zip(ips["gan_ray"], ips["reference"], strict=True)]
    cpu_ratios = [g / r for g, r in zip(cpu_ips["gan_ray"], cpu_ips["reference"], strict=True)]
    step_fn = core.step_fn
    out: dict[str, float | int | str] = {
        "measurement": "throughput",
        "model": spec.name,
        "batch": batch,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "steps_per_repeat": steps,
        "repeats": args.repeats,
        "reference_images_per_s": statistics.median(ips["reference"]),
        "gan_ray_images_per_s": statistics.median(ips["gan_ray"]),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        # Least disturbed block of each (fastest): less sensitive to other load than the median.
        "ratio_best": max(ips["gan_ray"]) / max(ips["reference"]),
        # Per CPU second of this process instead of per wall second: on CPU with 1 thread, the work
        # each loop does, whatever else runs on the machine (more threads add their spin-waits).
        "ratio_cpu_time": statistics.median(cpu_ratios),
        "gan_ray_path": "cuda_graph"
        if isinstance(step_fn, GraphedStep) and step_fn.graphed
        else f"eager ({getattr(step_fn, 'eager_reason', None) or graph_blocker(cfg, device)})",
        "gan_ray_precision": str(core.step_fn.autocast_dtype or torch.float32).removeprefix("torch."),
    }
    if "gan_ray_eager" in ips:
        out["gan_ray_eager_images_per_s"] = statistics.median(ips["gan_ray_eager"])
    return out


def _core_interval_ips(cfg: GanConfig, threads: int) -> tuple[list[float], float]:
    """Per-interval images/s of the core run as the worker runs it (evaluator included), and wall time."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        training = build_training(cfg, device=torch.device("cpu"))
        evaluator = default_evaluator(cfg, training.device)
        ips = [r.metrics["images_per_s"] for r in run_loop(training, evaluator)]
        return ips, time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def ray_overhead(args: argparse.Namespace) -> dict[str, float | int | str]:
    """Ray Train (1 worker) against the core alone, on the ring8 MLP, start-up excluded.

    The core measures ``images_per_s`` over each eval interval: steps only, from the interval's first
    step to its metric read; evaluation, checkpointing and ``ray.train.report`` fall between intervals.
    It does so inside the Ray Train worker and here alike. ``ray_train_overhead`` is
    median(core images/s here) / median(images/s in the worker), first interval dropped on both sides
    (warm-up): Ray Train's time for the same steps over the core's time, > 1 when Ray is slower. The core
    runs here with as many torch threads as a Ray task with the worker's CPUs gets (Ray sets
    OMP_NUM_THREADS to them: 1), so the ratio is what Ray itself costs while steps run: its raylet, GCS,
    dashboard, Train controller and this driver sharing the cores with the worker.
    ``ray_train_overhead_vs_default_threads`` compares with the core at this process's thread count
    instead (the last ``--threads`` value, else torch's default: the plain ``gan_ray.train`` a user would
    run here). ``fit_wall_s`` (whole
    ``fit()``: cluster connection, worker start-up, every eval, checkpoint and report) and ``core_wall_s``
    (whole core run with the same evals, no checkpoints) are context, not part of either ratio.
    """
    import ray

    from gan_ray.ray.train import fit

    steps, every = (300, 100) if args.quick else (3000, 250)
    cfg = model_config(MODELS["ring8"], 256, "cpu", steps=steps, eval_every=every)
    cfg = cfg.with_overrides({"name": "bench_ray_overhead", "train.eval_samples": 2500})
    default_threads = torch.get_num_threads()
    if not ray.is_initialized():
        ray.init(num_cpus=2, log_to_driver=False)

    def torch_threads() -> int:  # local, so Ray ships it by value: the worker need not import this file
        import torch

        return torch.get_num_threads()

    # What a Ray process with the worker's CPUs gets (Ray sets OMP_NUM_THREADS from them).
    worker_threads = ray.get(ray.remote(num_cpus=cfg.scaling.cpus_per_worker)(torch_threads).remote())
    core_same, core_same_wall = _core_interval_ips(cfg, worker_threads)
    core_default = (
        core_same if default_threads == worker_threads else _core_interval_ips(cfg, default_threads)[0]
    )
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        result = fit(cfg, storage_path=storage)
        fit_wall = time.perf_counter() - start
    worker = [h["images_per_s"] for h in result.history]
    # Again after the Ray run, so that drift in machine load hits both sides.
    core_same_after = [] if args.quick else _core_interval_ips(cfg, worker_threads)[0]
    core_same = core_same[1:] + core_same_after[1:]
    core_default = core_default[1:]
    worker = worker[1:]
    return {
        "measurement": "ray_train_overhead",
        "model": "ring8",
        "batch": cfg.train.batch_size,
        "device": "cpu",
        "steps": steps,
        "eval_every": every,
        "ray_train_overhead": statistics.median(core_same) / statistics.median(worker),
        "ray_train_overhead_vs_default_threads": statistics.median(core_default) / statistics.median(worker),
        "core_images_per_s": statistics.median(core_same),
        "core_default_threads_images_per_s": statistics.median(core_default),
        "ray_worker_images_per_s": statistics.median(worker),
        "worker_threads": worker_threads,
        "default_threads": default_threads,
        "fit_wall_s": fit_wall,
        "core_wall_s": core_same_wall,
    }


def environment() -> dict[str, str | int]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env: dict[str, str | int] = {
        "measurement": "environment",
        "cpu": cpu,
        "cpu_count": torch.multiprocessing.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--quick", action="store_true", help="small batches and few steps: under a minute on 2 CPUs"
    )
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {list(MODELS)}")
    p.add_argument(
        "--threads",
        default=None,
        help="torch.set_num_threads values, comma-separated; the last one is also the Ray part's "
        "comparison (default: 1 with --quick, else torch's default)",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed blocks per contender (default 3 quick, 7)"
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 quick, 10)")
    p.add_argument(
        "--block-s", type=float, default=None, help="seconds per timed block (default 0.2 quick, 2)"
    )
    p.add_argument("--max-steps", type=int, default=2000, help="cap on steps per timed block")
    p.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers of the reference loop")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray Train overhead measurement")
    p.add_argument("--ray-only", action="store_true", help="only the Ray Train overhead measurement")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.warmup = args.warmup or (2 if args.quick else 10)
    args.block_s = args.block_s or (0.2 if args.quick else 2.0)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available")
    names = [] if args.ray_only else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {unknown}; expected a subset of {list(MODELS)}")
    if args.threads:
        threads = [int(t) for t in args.threads.split(",")]
    else:
        # One thread for the smoke run: on a busy machine more threads than idle cores stall every op.
        threads = [1] if args.quick else [torch.get_num_threads()]
    device = torch.device(args.device)
    mode = args.device + ("_quick" if args.quick else "")

    start = time.perf_counter()

    def progress(what: str) -> None:
        print(f"[bench {time.perf_counter() - start:6.1f}s] {what}", file=sys.stderr, flush=True)

    print(json.dumps(environment()), flush=True)
    for n in threads:
        torch.set_num_threads(n)
        for name in names:
            spec = MODELS[name]
            for batch in spec.batches[mode]:
                progress(f"{name} batch {batch} threads {n}")
                print(json.dumps(measure(spec, batch, device, args)), flush=True)
    # The Ray part's "default" core runs with the last thread count asked for (torch's own without --threads).
    torch.set_num_threads(threads[-1])
    if not args.no_ray:
        progress("ray train overhead")
        print(json.dumps(ray_overhead(args)), flush=True)
    progress("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
