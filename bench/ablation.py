"""Ablations on the 2-D mixtures, the same steps and seeds for each variant, scored with the VEEGAN/PacGAN
protocol (modes covered, high-quality fraction, reverse KL on 2,500 samples) and on 20,000
(mode_distance). Two studies:

- ``sharpening``: the plain GAN, + an EMA of G's weights, + a learning-rate decay, + both. Each mixture
  starts from its sweep's defaults: its search space's base (steps included) with the first of its
  known-good starts, sharpening off.
- ``anticollapse``: the plain GAN (non-saturating loss, Adam 1e-3 for both, beta1 0.5, k 1: the
  published rows' setting) on its search space's base, + PacGAN packing (m = 2, 4), + the
  minibatch-std feature in D, + both, and the sweep's champion configuration.
- ``objectives``: the same plain GAN, + R1, + R1 and R2 (gamma 1 -> 0.1 along a cosine), the
  relativistic pairing loss with both on the same optimiser, R3GAN's whole recipe (RpGAN + R1 + R2,
  Adam beta1 0 / beta2 0.99, cosine burn-in of gamma and the learning rates, an EMA of G), and the
  champion of the sweep that searched them.

    python bench/ablation.py --study sharpening      # ring8 and grid25, 3 seeds: ~35 minutes on 2 CPUs
    python bench/ablation.py --study anticollapse    # ring8 and grid25, 3 seeds: ~15 minutes on 2 CPUs
    python bench/ablation.py --study objectives      # ring8 and grid25, 3 seeds: about an hour on 2 CPUs
    python bench/ablation.py --study sharpening --datasets ring8 --seeds 1 --steps 500   # a smoke run
    python bench/ablation.py --study objectives --datasets fashion_mnist --data-root ../shared/data  # ~25 min

``fashion_mnist`` (the objectives study only) trains the laptop space's narrow DCGAN-28 and scores 10,000
samples: the classifier-feature Fréchet distance (``fid_classifier``: not Inception-FID) and the
classes the same classifier sees in them (covered, and the reverse KL of their histogram to uniform).

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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SEARCH_SPACES = {
    "ring8": ROOT / "search_spaces/ring8.yaml",
    "grid25": ROOT / "search_spaces/grid25.yaml",
    "fashion_mnist": ROOT / "search_spaces/fashion_mnist_laptop.yaml",
}
MIXTURE_SCORES = ("modes_covered", "high_quality_fraction", "reverse_kl", "mode_distance_20000")
IMAGE_SCORES = ("fid_classifier", "classes_covered", "class_reverse_kl")
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
#: The base of the sharpening study, with the sharpening tools off (the variants turn them on): on ring8
#: its first known-good start (search_spaces/starts/ring8.yaml), on grid25 the plain GAN (the grid
#: sweep's first start when the study was run).
SHARPENING_START = {
    "ring8": yaml.safe_load((ROOT / "search_spaces/starts/ring8.yaml").read_text())[0],
}


def base_config(
    study: str,
    dataset: str,
    steps: int | None,
    seed: int,
    data_root: str | None = None,
    base_overrides: dict | None = None,
):
    from gan_ray.config import validate_config

    space = yaml.safe_load(SEARCH_SPACES[dataset].read_text())
    if data_root is not None:
        space["base"]["data"]["root"] = data_root
    cfg = validate_config(space["base"]).with_overrides(base_overrides or {})
    train = {"seed": seed, "eval_samples": 20_000 if cfg.data.is_mixture else 10_000}
    steps = steps or cfg.train.steps
    train.update(steps=steps, eval_every=steps)
    if study == "sharpening":
        start = {**SHARPENING_START.get(dataset, PLAIN_GAN), **SHARPENING_OFF}
    else:
        start = PLAIN_GAN if cfg.data.is_mixture else PYTORCH_EXAMPLES
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
    # fashion_mnist_laptop.yaml's 12-trial run of 2026-12-02 (study fashion_mnist_laptop-20261202-121823,
    # trial 6e70582e): the relativistic loss without a penalty, k 3, a cosine decay of the rates
    "fashion_mnist": {
        "optim.lr_g": 1.07e-3,
        "optim.lr_d": 6.89e-4,
        "optim.beta1": 0.055,
        "train.d_steps_per_g_step": 3,
        "noise.distribution": "truncated_normal",
        "loss.name": "rpgan",
        "penalty.name": "none",
        "train.ema_decay": None,
        "optim.lr_schedule": "cosine",
    },
}
#: The best of that run's first 20 trials (what grid25.yaml's 20 now run): ring8's recipe + minibatch std.
FIRST_20_BEST = {
    "grid25": {**CHAMPIONS["ring8"], "model.d_minibatch_std": 4},
    "ring8": {**CHAMPIONS["ring8"], "model.d_minibatch_std": 4},
}


#: The images' plain GAN: pytorch/examples' DCGAN defaults.
PYTORCH_EXAMPLES = {**PLAIN_GAN, "optim.lr_g": 2e-4, "optim.lr_d": 2e-4}

#: R3GAN's gamma on low-dimensional data (StackedMNIST): 1 -> 0.1 along a cosine over the run.
R1_R2 = {
    "penalty.name": "r1_r2",
    "penalty.weight": 1.0,
    "penalty.schedule": "cosine",
    "penalty.final_ratio": 0.1,
}
#: R3GAN's recipe (Huang et al. 2024, brownvc/R3GAN), no search, on the study's plain learning rates:
#: RpGAN + R1 + R2, Adam beta1 0 and beta2 0.99, the learning rates decayed along a cosine to a quarter,
#: an EMA of G's weights.
R3GAN = {
    **R1_R2,
    "loss.name": "rpgan",
    "optim.beta1": 0.0,
    "optim.beta2": 0.99,
    "optim.lr_schedule": "cosine",
    "optim.lr_final_ratio": 0.25,
    "train.ema_decay": 0.999,
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
    "objectives": {
        "ns": {},
        "ns+r1": {**R1_R2, "penalty.name": "r1"},
        "ns+r1+r2": R1_R2,
        "rpgan+r1+r2": {**R1_R2, "loss.name": "rpgan"},
        "r3gan": R3GAN,
        # The sweeps that searched the penalties and rpgan (bench/QUALITY.md, "Modern objectives"):
        # grid25.yaml's of 2026-12-02 (study grid25-20261202-094313, trial a23dde72) and make sweep's.
        "champion": {"grid25": FIRST_20_BEST["grid25"], "ring8": CHAMPIONS["ring8"]},
    },
    # bench/quality.py's rows: the defaults a user starts from (the base) and the sweeps' champions
    "quality": {"baseline": {}, "champion": CHAMPIONS},
}


def overrides(study: str, variant: str, dataset: str) -> dict:
    value = STUDIES[study][variant]
    return value[dataset] if dataset in value else value


def mixture_scores(samples, dataset: str) -> dict:
    """The VEEGAN/PacGAN protocol on 2,500 samples, mode_distance on all of them (20,000)."""
    from gan_ray.metrics import mode_metrics

    small, large = mode_metrics(samples[:2500], dataset), mode_metrics(samples, dataset)
    return {
        "modes_covered": small["modes_covered"],
        "high_quality_fraction": small["high_quality_fraction"],
        "reverse_kl": small["reverse_kl"],
        "mode_distance_20000": large["mode_distance"],
    }


def image_scores(samples, cfg) -> dict:
    """The classifier-feature Fréchet distance of the samples (10,000) and the classes that classifier sees."""
    from gan_ray.metrics.frechet import FrechetEvaluator

    frechet = FrechetEvaluator(cfg.data, kind=cfg.metrics.features, extractor_file=cfg.metrics.extractor)
    return {
        **frechet.scores(samples),
        "feature_extractor": frechet.identity,
        "classifier_accuracy": frechet.classifier_accuracy,
    }


def run(
    study: str,
    dataset: str,
    variant: str,
    seed: int,
    steps: int | None,
    data_root: str | None,
    grid_dir: str | None = None,
    base_overrides: dict | None = None,
) -> dict:
    import torch

    torch.set_num_threads(1)
    from gan_ray.training.loop import build_training, run_loop

    cfg = base_config(study, dataset, steps, seed, data_root, base_overrides).with_overrides(
        overrides(study, variant, dataset)
    )
    start = time.perf_counter()
    training = build_training(cfg)
    for _ in run_loop(training):
        pass
    samples = training.sample()
    scores = mixture_scores(samples, dataset) if cfg.data.is_mixture else image_scores(samples, cfg)
    if grid_dir is not None:
        from gan_ray.visualize import save_samples

        shown = samples[:2500] if cfg.data.is_mixture else samples
        save_samples(shown, Path(grid_dir) / f"{dataset}-{variant}-seed{seed}.png", dataset)
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
            "penalty": cfg.penalty.name,
            "g_filters": cfg.model.params.get("g_filters"),
            "hidden_dim": cfg.model.params.get("hidden_dim"),
        },
        **scores,
        "health": training.history[-1]["health"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def mean_std(runs: list[dict], key: str) -> tuple[float, float]:
    """Mean and sample standard deviation of ``key`` over the seeds' ``runs`` (0 for one seed)."""
    values = [r[key] for r in runs]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(study: str, runs: list[dict]) -> dict:
    out = {"measurement": study, "dataset": runs[0]["dataset"], "variant": runs[0]["variant"]}
    out["seeds"] = len(runs)
    for key in MIXTURE_SCORES if "modes_covered" in runs[0] else IMAGE_SCORES:
        out[key], out[key + "_std"] = mean_std(runs, key)
    out["unhealthy"] = sum(r.get("health", "ok") != "ok" for r in runs)
    return out


def table(summaries: list[dict]) -> str:
    mixtures = [s for s in summaries if "modes_covered" in s]
    images = [s for s in summaries if "fid_classifier" in s]
    rows = []
    if mixtures:
        rows += [
            "| dataset | variant | modes | high quality | reverse KL | mode_distance (20k) |",
            "|---|---|---|---|---|---|",
        ]
        rows += [
            f"| {s['dataset']} | {s['variant']} | {s['modes_covered']:.1f} ± {s['modes_covered_std']:.1f} "
            f"| {100 * s['high_quality_fraction']:.1f} % ± {100 * s['high_quality_fraction_std']:.1f} "
            f"| {s['reverse_kl']:.3f} ± {s['reverse_kl_std']:.3f} "
            f"| {s['mode_distance_20000']:.3f} ± {s['mode_distance_20000_std']:.3f} |"
            for s in mixtures
        ]
    if images:
        rows += [
            "",
            "| dataset | variant | fid_classifier (10k) | classes covered | class reverse KL | unhealthy runs |",
            "|---|---|---|---|---|---|",
        ]
        rows += [
            f"| {s['dataset']} | {s['variant']} | {s['fid_classifier']:.2f} ± {s['fid_classifier_std']:.2f} "
            f"| {s['classes_covered']:.1f} ± {s['classes_covered_std']:.1f} "
            f"| {s['class_reverse_kl']:.3f} ± {s['class_reverse_kl_std']:.3f} | {s['unhealthy']} of {s['seeds']} |"
            for s in images
        ]
    return "\n".join(rows)


def warm(dataset: str, data_root: str | None, base_overrides: dict | None = None) -> None:
    """Train (or find) the feature extractor and cache the real statistics once, before the runs share them."""
    from gan_ray.metrics.frechet import FrechetEvaluator

    cfg = base_config("quality", dataset, None, 0, data_root, base_overrides)
    FrechetEvaluator(cfg.data, kind=cfg.metrics.features, extractor_file=cfg.metrics.extractor)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", required=True, choices=sorted(STUDIES))
    p.add_argument("--datasets", default="ring8,grid25", help=f"subset of {list(SEARCH_SPACES)}")
    p.add_argument("--variants", default=None, help="a subset of the study's variants (default: all)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="override every base's steps")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    p.add_argument("--data-root", default=None, help="the torchvision root of an image dataset")
    args = p.parse_args(argv)
    known = STUDIES[args.study]
    datasets = [d for d in args.datasets.split(",") if d]
    variants = [v for v in (args.variants or ",".join(known)).split(",") if v]
    bad = sorted(set(datasets) - set(SEARCH_SPACES)) + sorted(set(variants) - set(known))
    if bad or args.seeds < 1:
        p.error(f"unknown dataset/variant {bad}" if bad else "--seeds must be >= 1")
    images = [d for d in datasets if d not in ("ring8", "grid25")]
    if images and (args.study not in ("objectives", "quality") or args.data_root is None):
        p.error(f"{images}: the objectives and quality studies only, with --data-root")
    for d in images:  # train the classifier and cache the real statistics once, before the runs share them
        warm(d, args.data_root)
    jobs = [
        (args.study, d, v, s, args.steps, args.data_root)
        for d in datasets
        for v in variants
        for s in range(args.seeds)
    ]
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
