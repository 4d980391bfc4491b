"""Ablations on the 2-D mixtures, the same steps and seeds for each variant, scored with the VEEGAN/PacGAN
protocol (modes covered, high-quality fraction, reverse KL on 2,500 samples) and on 20,000
(mode_distance). Two studies:

- ``sharpening``: the plain GAN, + an EMA of G's weights, + a learning-rate decay, + both. Each mixture
  starts from its sweep's defaults: its search space's base (steps included) with the first of its
  known-good starts, sharpening off.
- ``anticollapse``: the plain GAN (non-saturating loss, Adam 1e-3 for both, beta1 0.5, k 1: the
  published rows' setting) on its search space's base, + PacGAN packing (m = 2, 4), + the
  minibatch-std feature in D, + both, and the sweep's champion configuration.

    python bench/ablation.py --study sharpening      # ring8 and grid25, 3 seeds: ~35 minutes on 2 CPUs
    python bench/ablation.py --study anticollapse    # ring8 and grid25, 3 seeds: ~15 minutes on 2 CPUs
    python bench/ablation.py --study sharpening --datasets ring8 --seeds 1 --steps 500   # a smoke run

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
#: The base of the sharpening study: the mixture's sweep as `make sweep` would start it, i.e. its search
#: space's base with its first known-good start, and the sharpening tools off (the variants turn them on).
SEARCH_SPACES = {"ring8": ROOT / "search_spaces/ring8.yaml", "grid25": ROOT / "search_spaces/grid25.yaml"}
SHARPENING_OFF = {"train.ema_decay": None, "optim.lr_schedule": "constant"}
#: The plain GAN of Goodfellow et al. as the VEEGAN/PacGAN rows train it, the anticollapse study's base.
PLAIN_GAN = {
    "loss.name": "non_saturating",
    "optim.lr_g": 1e-3,
    "optim.lr_d": 1e-3,
    "optim.beta1": 0.5,
    "train.d_steps_per_g_step": 1,
    "noise.distribution": "normal",
    **SHARPENING_OFF,
}


def base_config(study: str, dataset: str, steps: int | None, seed: int):
    import yaml

    from gan_ray.config import validate_config

    space = yaml.safe_load(SEARCH_SPACES[dataset].read_text())
    cfg = validate_config(space["base"])
    train = {"seed": seed, "eval_samples": 20_000}
    steps = steps or cfg.train.steps
    train.update(steps=steps, eval_every=steps)
    start = {**space["search"]["initial_points"][0], **SHARPENING_OFF} if study == "sharpening" else PLAIN_GAN
    return cfg.with_overrides({**start, **{f"train.{k}": v for k, v in train.items()}})


#: The grid25 and ring8 sweeps' champions (bench/QUALITY.md says which sweep found each).
CHAMPIONS: dict[str, dict] = {
    "ring8": {
        "optim.lr_g": 2.6e-3,
        "optim.lr_d": 3.9e-4,
        "optim.beta1": 0.05,
        "train.d_steps_per_g_step": 5,
        "loss.name": "hinge",
        "train.ema_decay": 0.99,
        "optim.lr_schedule": "linear",
    },
    # grid25.yaml's 30-trial run of 2026-12-02 (study grid25-20261202-062950, trial 2b053052)
    "grid25": {
        "optim.lr_g": 1.21e-3,
        "optim.lr_d": 1.87e-4,
        "optim.beta1": 0.078,
        "train.d_steps_per_g_step": 5,
        "noise.distribution": "uniform",
        "loss.name": "hinge",
        "train.ema_decay": 0.99,
        "optim.lr_schedule": "linear",
        "model.d_pac": 2,
    },
}
#: The best of that run's first 20 trials (what grid25.yaml's 20 now run): ring8's recipe + minibatch std.
FIRST_20_BEST = {
    "grid25": {**CHAMPIONS["ring8"], "model.d_minibatch_std": 4},
    "ring8": {**CHAMPIONS["ring8"], "model.d_minibatch_std": 4},
}


#: study -> variant -> dotted overrides, or dataset -> overrides where they differ by dataset
STUDIES: dict[str, dict[str, dict]] = {
    "sharpening": {
        "plain": {},
        "ema": {"train.ema_decay": 0.99},
        "lr_decay": {"optim.lr_schedule": "linear", "optim.lr_final_ratio": 0.0},
        "ema+lr_decay": {"train.ema_decay": 0.99, "optim.lr_schedule": "linear", "optim.lr_final_ratio": 0.0},
    },
    "anticollapse": {
        "plain": {},
        "pac2": {"model.d_pac": 2},
        "pac4": {"model.d_pac": 4},
        "minibatch_std": {"model.d_minibatch_std": 4},
        "pac4+minibatch_std": {"model.d_pac": 4, "model.d_minibatch_std": 4},
        "champion": CHAMPIONS,
        "champion_recipe+minibatch_std": FIRST_20_BEST,
    },
}


def overrides(study: str, variant: str, dataset: str) -> dict:
    value = STUDIES[study][variant]
    return value[dataset] if dataset in value else value


def run(study: str, dataset: str, variant: str, seed: int, steps: int | None) -> dict:
    import torch

    torch.set_num_threads(1)
    from gan_ray.metrics import mode_metrics
    from gan_ray.training.loop import build_training, run_loop

    cfg = base_config(study, dataset, steps, seed).with_overrides(overrides(study, variant, dataset))
    start = time.perf_counter()
    training = build_training(cfg)
    for _ in run_loop(training):
        pass
    samples = training.sample()
    small, large = mode_metrics(samples[:2500], dataset), mode_metrics(samples, dataset)
    return {
        "measurement": f"{study}_run",
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
            "d_pac": cfg.model.d_pac,
            "d_minibatch_std": cfg.model.d_minibatch_std,
            "ema": cfg.train.ema_decay,
            "lr_schedule": cfg.optim.lr_schedule,
        },
        "modes_covered": small["modes_covered"],
        "high_quality_fraction": small["high_quality_fraction"],
        "reverse_kl": small["reverse_kl"],
        "mode_distance_20000": large["mode_distance"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def summarise(study: str, runs: list[dict]) -> dict:
    def stat(key: str) -> tuple[float, float]:
        values = [r[key] for r in runs]
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    out = {"measurement": study, "dataset": runs[0]["dataset"], "variant": runs[0]["variant"]}
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
    p.add_argument("--study", required=True, choices=sorted(STUDIES))
    p.add_argument("--datasets", default="ring8,grid25", help=f"subset of {list(SEARCH_SPACES)}")
    p.add_argument("--variants", default=None, help="a subset of the study's variants (default: all)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="override every base's steps")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    args = p.parse_args(argv)
    known = STUDIES[args.study]
    datasets = [d for d in args.datasets.split(",") if d]
    variants = [v for v in (args.variants or ",".join(known)).split(",") if v]
    bad = sorted(set(datasets) - set(SEARCH_SPACES)) + sorted(set(variants) - set(known))
    if bad or args.seeds < 1:
        p.error(f"unknown dataset/variant {bad}" if bad else "--seeds must be >= 1")
    jobs = [(args.study, d, v, s, args.steps) for d in datasets for v in variants for s in range(args.seeds)]
    results: dict[tuple[str, str], list[dict]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for result in pool.map(run, *zip(*jobs, strict=True)):
            print(json.dumps(result), flush=True)
            results.setdefault((result["dataset"], result["variant"]), []).append(result)
    summaries = [summarise(args.study, results[(d, v)]) for d in datasets for v in variants]
    for s in summaries:
        print(json.dumps(s), flush=True)
    print(table(summaries), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
