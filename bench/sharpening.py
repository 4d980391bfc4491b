"""Ablation of the sharpening tools on the 2-D mixtures: the plain GAN, + an EMA of G's weights, + a
learning-rate decay, + both; the same steps and seeds for each, scored with the VEEGAN/PacGAN protocol
(modes covered, high-quality fraction, reverse KL on 2,500 samples) and on 20,000 (mode_distance).

    python bench/sharpening.py                       # ring8 and grid25, 3 seeds: ~35 minutes on 2 CPUs
    python bench/sharpening.py --datasets ring8 --seeds 1 --steps 500   # a smoke run

Each mixture starts from its sweep's defaults: its search space's base (steps included) with the
first of its known-good starts.

Every stdout line is one JSON object (one per run, then one summary per dataset and variant); the
Markdown table of the summaries goes to stderr at the end. Runs use the training core alone (no Ray,
no MLflow), one thread each, two at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
#: The base of each ablation: the mixture's sweep as `make sweep` would start it, i.e. its search space's
#: base with its first known-good start, and the sharpening tools off (the variants turn them on).
SEARCH_SPACES = {"ring8": ROOT / "search_spaces/ring8.yaml", "grid25": ROOT / "search_spaces/grid25.yaml"}
SHARPENING_OFF = {"train.ema_decay": None, "optim.lr_schedule": "constant"}


def base_config(dataset: str, steps: int | None, seed: int):
    import yaml

    from gan_ray.config import validate_config

    space = yaml.safe_load(SEARCH_SPACES[dataset].read_text())
    cfg = validate_config(space["base"])
    start = space["search"]["initial_points"][0]
    train = {"seed": seed, "eval_samples": 20_000}
    steps = steps or cfg.train.steps
    train.update(steps=steps, eval_every=steps)
    overrides = {**start, **SHARPENING_OFF, **{f"train.{k}": v for k, v in train.items()}}
    return cfg.with_overrides(overrides)


#: name -> dotted overrides
VARIANTS = {
    "plain": {},
    "ema": {"train.ema_decay": 0.99},
    "lr_decay": {"optim.lr_schedule": "linear", "optim.lr_final_ratio": 0.0},
    "ema+lr_decay": {"train.ema_decay": 0.99, "optim.lr_schedule": "linear", "optim.lr_final_ratio": 0.0},
}


def run(dataset: str, variant: str, seed: int, steps: int | None) -> dict:
    import torch

    torch.set_num_threads(1)
    from gan_ray.metrics import mode_metrics
    from gan_ray.training.loop import build_training, run_loop

    cfg = base_config(dataset, steps, seed).with_overrides(VARIANTS[variant])
    start = time.perf_counter()
    training = build_training(cfg)
    for _ in run_loop(training):
        pass
    samples = training.sample()
    small, large = mode_metrics(samples[:2500], dataset), mode_metrics(samples, dataset)
    return {
        "measurement": "sharpening_run",
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "steps": cfg.train.steps,
        "base": {
            "loss": cfg.loss.name,
            "k": cfg.train.d_steps_per_g_step,
            "lr_g": cfg.optim.lr_g,
            "lr_d": cfg.optim.lr_d,
            "beta1": cfg.optim.beta1,
            "noise": cfg.noise.distribution,
        },
        "modes_covered": small["modes_covered"],
        "high_quality_fraction": small["high_quality_fraction"],
        "reverse_kl": small["reverse_kl"],
        "mode_distance_20000": large["mode_distance"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def summarise(runs: list[dict]) -> dict:
    def stat(key: str) -> tuple[float, float]:
        values = [r[key] for r in runs]
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    out = {"measurement": "sharpening", "dataset": runs[0]["dataset"], "variant": runs[0]["variant"]}
    out["seeds"] = len(runs)
    for key in ("modes_covered", "high_quality_fraction", "reverse_kl", "mode_distance_20000"):
        out[key], out[key + "_std"] = stat(key)
    return out


def table(summaries: list[dict]) -> str:
    rows = [
        "| dataset | variant | modes | high quality | reverse KL | mode_distance (20k) |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        rows.append(
            f"| {s['dataset']} | {s['variant']} | {s['modes_covered']:.1f} ± {s['modes_covered_std']:.1f} "
            f"| {100 * s['high_quality_fraction']:.1f} % ± {100 * s['high_quality_fraction_std']:.1f} "
            f"| {s['reverse_kl']:.3f} ± {s['reverse_kl_std']:.3f} "
            f"| {s['mode_distance_20000']:.3f} ± {s['mode_distance_20000_std']:.3f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="ring8,grid25", help=f"subset of {list(SEARCH_SPACES)}")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {list(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="override every base's steps")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    args = p.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    variants = [v for v in args.variants.split(",") if v]
    bad = sorted(set(datasets) - set(SEARCH_SPACES)) + sorted(set(variants) - set(VARIANTS))
    if bad or args.seeds < 1:
        p.error(f"unknown dataset/variant {bad}" if bad else "--seeds must be >= 1")
    jobs = [(d, v, s, args.steps) for d in datasets for v in variants for s in range(args.seeds)]
    results: dict[tuple[str, str], list[dict]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for result in pool.map(run, *zip(*jobs, strict=True)):
            print(json.dumps(result), flush=True)
            results.setdefault((result["dataset"], result["variant"]), []).append(result)
    summaries = [summarise(results[(d, v)]) for d in datasets for v in variants]
    for s in summaries:
        print(json.dumps(s), flush=True)
    print(table(summaries), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
