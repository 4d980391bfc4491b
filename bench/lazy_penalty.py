"""Lazy regularisation's speed-up: R1+R2 (or gp) every N D-steps at N times the weight, against every step.

Prints one JSON line per N (stdout; progress goes to stderr)::

    python bench/lazy_penalty.py [--model resnet28|dcgan28] [--every 4,8,16] [--steps 16] [--repeats 3]

Every variant (the penalty every step, every N-th step, and no penalty at all: the floor lazy
regularisation tends to) is the same config (``loss: rpgan``, ``penalty: r1_r2``, batch 32, k = 1) built
in this process on synthetic images of the model's shape, and timed in alternating blocks of ``--steps``
iterations (the order rotated every repeat) so that load from other processes hits all alike.
``speedup`` = seconds per iteration with the penalty every step / with it every N-th (median of the
per-repeat ratios); ``floor_speedup`` the same against no penalty.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time

import torch

from gan_ray.config import validate_config
from gan_ray.data.images import TensorSource
from gan_ray.training.loop import build_training

MODELS = {
    # The resnet at its CPU-sized default (width 64, 1 block a stage, side 28) and the 28x28 DCGAN.
    "resnet28": {"name": "resnet"},
    "dcgan28": {"name": "dcgan", "params": {"g_filters": 32, "d_filters": 32}},
}


def _training(model: str, every: int | None, batch: int):
    cfg = {
        "data": {"name": "digits", "image_size": 28},
        "model": MODELS[model],
        "loss": {"name": "rpgan"},
        "train": {"batch_size": batch, "device": "cpu", "d_steps_per_g_step": 1},
    }
    if every is not None:
        cfg["penalty"] = {"name": "r1_r2", "weight": 1.0, "every": every}
    config = validate_config(cfg)
    torch.manual_seed(0)
    images = torch.rand(512, 1, 28, 28) * 2 - 1
    return build_training(config, device=torch.device("cpu"), source=TensorSource(images, "cpu"))


def _seconds_per_step(training, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        training.step_fn()
    return (time.perf_counter() - start) / steps


def measure(model: str, every: list[int], steps: int, repeats: int, batch: int) -> list[dict]:
    variants = {"every_step": 1, **{f"every_{n}": n for n in every}, "no_penalty": None}
    trainings = {name: _training(model, n, batch) for name, n in variants.items()}
    for training in trainings.values():  # warm-up: oneDNN's kernels, Adam's state
        _seconds_per_step(training, 2)
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(_seconds_per_step(trainings[name], steps))
            print(f"repeat {r}: {name} {times[name][-1] * 1000:.1f} ms/step", file=sys.stderr)
    lines = []
    for n in every:
        lazy = times[f"every_{n}"]
        lines.append(
            {
                "measurement": "lazy_penalty",
                "model": model,
                "batch": batch,
                "every": n,
                "ms_per_step_every_step": 1000 * statistics.median(times["every_step"]),
                "ms_per_step_lazy": 1000 * statistics.median(lazy),
                "ms_per_step_no_penalty": 1000 * statistics.median(times["no_penalty"]),
                "speedup": statistics.median(a / b for a, b in zip(times["every_step"], lazy, strict=True)),
                "floor_speedup": statistics.median(
                    a / b for a, b in zip(times["every_step"], times["no_penalty"], strict=True)
                ),
                "steps": steps,
                "repeats": repeats,
                "threads": torch.get_num_threads(),
            }
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet28")
    parser.add_argument("--every", default="4,8,16", help="comma-separated N (default 4,8,16)")
    parser.add_argument(
        "--steps",
        type=int,
        default=16,
        help="iterations per timed block, rounded up to a multiple of every N",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per variant (default 3)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    every = [int(n) for n in args.every.split(",")]
    if any(n < 2 for n in every) or args.steps < 1 or args.repeats < 1:
        parser.error("--every takes N >= 2; --steps and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    # A block of a multiple of N iterations holds exactly block / N penalised ones, whatever its phase.
    lcm = math.lcm(*every)
    steps = lcm * math.ceil(args.steps / lcm)
    env = {
        "measurement": "environment",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(env))
    for line in measure(args.model, every, steps, args.repeats, args.batch):
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
