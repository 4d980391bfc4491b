"""Trial packing: aggregate training throughput of 1, 2, 4 trials sharing one device.

A sweep with ``gpus_per_worker: 0.25`` runs four trials, each its own process, on one GPU. This runs
that situation without Ray: N processes, each training the same model on the same device, started
together behind a barrier and timed over the same window. Prints one JSON line per (contender, N)::

    python bench/packing.py [--device cpu|cuda] [--models dcgan28] [--trials 1,2,4] [--quick]

``aggregate_images_per_s`` is the sum of the N processes' images/s (real images consumed: k x batch
per iteration); ``scaling`` is that over the 1-trial aggregate of the same contender (N would be
perfect sharing, 1 no gain at all). Contenders: ``gan_ray`` (``build_training``'s step: CUDA graph and
bf16 on a GPU) and ``reference`` (bench/reference_loop.py, the pytorch/examples-shaped loop).
On CPU each process gets ``--threads-per-trial`` torch threads (1: as a 1-CPU Ray worker does).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import queue
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import (  # noqa: E402
    MODELS,
    build_core,
    build_reference,
    dataset_for,
    environment,
    model_config,
    timed,
)

from gan_ray.training.cuda_graphs import WARMUP_ITERATIONS, GraphedStep  # noqa: E402

CONTENDERS = ("gan_ray", "reference")


def trial(
    contender: str,
    model: str,
    batch: int,
    device_name: str,
    threads: int,
    seconds: float,
    seed: int,
    barrier,
    results,
) -> None:
    """One packed trial: build, warm up, wait for the others, then count images for ``seconds``."""
    try:
        torch.set_num_threads(threads)
        device = torch.device(device_name)
        cfg = model_config(MODELS[model], batch, device.type, seed=seed)
        data = dataset_for(cfg, batch)
        if contender == "gan_ray":
            step = build_core(cfg, data, device).step_fn
        else:
            step = build_reference(cfg, data, device, workers=0).step
        # Past GraphedStep's warm-up and capture, so every timed call is a replay.
        timed(step, WARMUP_ITERATIONS + 2 if device.type == "cuda" else 2, device)
        # Steps between clock reads (each read syncs the device): about a tenth of a second.
        chunk = max(1, math.ceil(0.1 / max(timed(step, 2, device) / 2, 1e-6)))
        path = "cuda_graph" if isinstance(step, GraphedStep) and step.graphed else "eager"
    except BaseException:
        barrier.abort()  # the others stop waiting; main reports the failure
        raise
    barrier.wait()
    start = time.perf_counter()
    steps = 0
    while time.perf_counter() - start < seconds:
        timed(step, chunk, device)
        steps += chunk
    elapsed = time.perf_counter() - start
    images = steps * batch * cfg.d_steps_per_g_step
    results.put({"images_per_s": images / elapsed, "seconds": elapsed, "path": path})


def packed(
    contender: str, model: str, batch: int, device: str, n: int, args: argparse.Namespace
) -> dict[str, object]:
    """Run ``n`` trials at once in fresh processes and sum their throughput."""
    ctx = mp.get_context("spawn")  # CUDA cannot be forked; each trial is its own process, as under Tune
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(
            target=trial,
            args=(contender, model, batch, device, args.threads_per_trial, args.seconds, i, barrier, results),
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    deadline = time.monotonic() + args.seconds + 300  # start-up (imports, CUDA context, capture) + window
    lines = []
    try:
        while len(lines) < n:
            try:
                lines.append(results.get(timeout=1.0))
                continue
            except queue.Empty:
                pass
            failed = [q.exitcode for q in procs if q.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(f"{contender} x{n}: a trial process exited with code {failed[0]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{contender} x{n}: trials did not finish in time")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    per_trial = sorted(line["images_per_s"] for line in lines)
    return {
        "measurement": "packing",
        "contender": contender,
        "model": model,
        "batch": batch,
        "device": device,
        "trials": n,
        "threads_per_trial": args.threads_per_trial,
        "aggregate_images_per_s": sum(per_trial),
        "per_trial_images_per_s": per_trial,
        "seconds": args.seconds,
        "path": sorted({line["path"] for line in lines}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--models", default="dcgan28", help=f"comma-separated subset of {list(MODELS)}")
    p.add_argument(
        "--batch", type=int, default=None, help="per trial (default 64, ring8 256; 16 quick on CPU)"
    )
    p.add_argument("--trials", default="1,2,4", help="trials per device, comma-separated")
    p.add_argument("--contenders", default=",".join(CONTENDERS), help=f"subset of {list(CONTENDERS)}")
    p.add_argument("--seconds", type=float, default=None, help="timed window per run (default 10; 2 quick)")
    p.add_argument(
        "--repeats", type=int, default=None, help="runs per (contender, trials) (default 3; 1 quick)"
    )
    p.add_argument("--threads-per-trial", type=int, default=1, help="torch threads in each trial process")
    p.add_argument("--quick", action="store_true", help="short windows and small batches: a smoke run")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(contenders) - set(CONTENDERS))
    if unknown:
        p.error(f"unknown model(s) or contender(s) {unknown}; models {list(MODELS)}, contenders {CONTENDERS}")
    try:
        counts = [int(t) for t in args.trials.split(",")]
    except ValueError:
        p.error(f"--trials takes comma-separated integers, got {args.trials!r}")
    if not counts or any(n < 1 for n in counts):
        p.error("--trials counts must be at least 1")
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.repeats = args.repeats or (1 if args.quick else 3)
    start = time.perf_counter()
    print(json.dumps(environment()), flush=True)
    for model in models:
        default_batch = 256 if model == "ring8" else (16 if args.quick and args.device == "cpu" else 64)
        batch = args.batch or default_batch
        runs: dict[tuple[str, int], list[dict]] = {(c, n): [] for c in contenders for n in counts}
        # Repeats interleave contenders and counts, so drift in the machine's load lands on all alike.
        for r in range(args.repeats):
            for contender in contenders if r % 2 == 0 else contenders[::-1]:
                for n in counts:
                    print(
                        f"[packing {time.perf_counter() - start:6.1f}s] {model} batch {batch}: "
                        f"{contender} x{n} (repeat {r + 1}/{args.repeats})",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs[contender, n].append(packed(contender, model, batch, args.device, n, args))
        for line in summarise(runs, counts):
            print(json.dumps(line), flush=True)
    return 0


def summarise(runs: dict[tuple[str, int], list[dict]], counts: list[int]) -> list[dict]:
    """One line per (contender, trials): the median run, its scaling over one trial, gan_ray / reference."""
    median = {
        key: statistics.median(r["aggregate_images_per_s"] for r in lines) for key, lines in runs.items()
    }
    out = []
    for (contender, n), lines in runs.items():
        line = dict(min(lines, key=lambda r: abs(r["aggregate_images_per_s"] - median[contender, n])))
        line["aggregate_images_per_s"] = median[contender, n]
        line["repeats"] = len(lines)
        line["aggregate_min"] = min(r["aggregate_images_per_s"] for r in lines)
        line["aggregate_max"] = max(r["aggregate_images_per_s"] for r in lines)
        if (contender, 1) in median:
            line["scaling"] = median[contender, n] / median[contender, 1]
        if contender == "gan_ray" and ("reference", n) in median:
            line["ratio_vs_reference"] = median[contender, n] / median["reference", n]
        out.append(line)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
