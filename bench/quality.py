"""The quality table: what search buys over the defaults, against the real data's own score.

For each dataset, on its search space's base (the same step budget and data for every row):

- ``real data``: the data scored as if it were generated, the floor no generator beats: Fashion-MNIST's
  10,000 test images against the training split's statistics; 2,500 / 20,000 fresh samples of a
  mixture (3 seeds of the sampler).
- ``baseline``: the defaults a user starts from: pytorch/examples' DCGAN settings for images
  (non-saturating loss, Adam 2e-4, beta1 0.5, k 1), the published rows' plain GAN for the mixtures
  (the same with Adam 1e-3).
- ``champion``: the configuration a sweep of the dataset's search space chose (``CHAMPIONS`` in
  bench/ablation.py says which sweep; ``--champion FILE`` takes another: a run's ``config.yaml``
  artifact, of which the search space's searched keys are used).

Images are scored on 10,000 samples with ``fid_classifier`` (the Fréchet distance on the cached
classifier's features: **not Inception-FID**) and the classes that classifier predicts (covered of 10,
reverse KL of their histogram to uniform); mixtures with the VEEGAN/PacGAN protocol (modes covered,
high-quality fraction, reverse KL on 2,500 samples; ``mode_distance`` on 20,000), beside the published
GAN and PacGAN4 rows. Each generated row is 3 seeds, mean ± std; a sample grid of every run goes to
``--grids`` (default ``bench/grids/``, not committed).

    python bench/quality.py --datasets fashion_mnist --data-root ../shared/data   # ~15 min on 2 CPUs
    python bench/quality.py --datasets ring8,grid25                              # ~25 min on 2 CPUs
    python bench/quality.py --datasets fashion_mnist --data-root DIR --set model.g_filters=64 \
        --set model.d_filters=64 --steps 19000    # full width, 20 epochs: on a CUDA GPU

Stdout: one JSON object per run and per summary; stderr: the Markdown table. Training core only (no Ray,
no MLflow), one thread per run, two runs at once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation  # noqa: E402  (bench/ is not a package: its scripts import each other by path)

#: PacGAN's Table 1 (10 runs, 2,500 samples): modes, high-quality fraction, reverse KL.
PUBLISHED = {
    "ring8": {"GAN (PacGAN, Table 1)": (6.3, 0.982, 0.45), "PacGAN4 (PacGAN, Table 1)": (7.8, 0.959, 0.07)},
    "grid25": {
        "GAN (PacGAN, Table 1)": (17.3, 0.948, 0.70),
        "PacGAN4 (PacGAN, Table 1)": (24.8, 0.936, 0.04),
    },
}
VARIANTS = ("baseline", "champion")


def real_floor(
    dataset: str,
    data_root: str | None,
    seed: int,
    grid_dir: str | None = None,
    base_overrides: dict | None = None,
) -> dict:
    """The data's own score: what a perfect generator would get, with this many samples."""
    import torch

    from gan_ray.visualize import save_samples

    torch.set_num_threads(1)
    cfg = ablation.base_config("quality", dataset, None, seed, data_root, base_overrides)
    if cfg.data.is_mixture:
        from gan_ray.data.mixtures import MixtureSource

        samples = MixtureSource(dataset).sample(20_000, torch.Generator().manual_seed(seed))
        scores = ablation.mixture_scores(samples, dataset)
    else:
        from gan_ray.data.images import load_images

        samples = load_images(cfg.data, train=False)[:10_000]
        scores = ablation.image_scores(samples, cfg)
    if grid_dir is not None:
        save_samples(samples[:2500], Path(grid_dir) / f"{dataset}-real_data-seed{seed}.png", dataset)
    return {"measurement": "quality_run", "dataset": dataset, "variant": "real data", "seed": seed, **scores}


def champion_from_file(path: Path, dataset: str) -> dict:
    """The searched keys of a run's config (e.g. the champion's ``config.yaml`` artifact)."""
    import yaml

    from gan_ray.config import validate_config
    from gan_ray.search.load import load_search_space

    searched = [p.key for p in load_search_space(ablation.SEARCH_SPACES[dataset]).params if p.kind != "fixed"]
    flat = validate_config(yaml.safe_load(path.read_text())).flat()
    return {key: flat[key] for key in searched if key in flat}


def table(dataset: str, rows: dict[str, list[dict]]) -> str:
    def cell(runs: list[dict], key: str, scale: float = 1.0, digits: int = 3) -> str:
        mean, std = ablation.mean_std(runs, key)
        return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"

    def seeds(runs: list[dict], key: str) -> str:
        return " / ".join(f"{r[key]:.3g}" for r in runs)

    if dataset in PUBLISHED:
        out = [
            f"| {dataset} | modes | high quality % | reverse KL | mode_distance (20k) | per seed (modes) |",
            "|---|---|---|---|---|---|",
        ]
        for name, runs in rows.items():
            out.append(
                f"| {name} | {cell(runs, 'modes_covered', digits=1)} "
                f"| {cell(runs, 'high_quality_fraction', 100, 1)} | {cell(runs, 'reverse_kl')} "
                f"| {cell(runs, 'mode_distance_20000')} | {seeds(runs, 'modes_covered')} |"
            )
        for name, (modes, hq, kl) in PUBLISHED[dataset].items():
            out.append(f"| {name} | {modes} | {100 * hq:.1f} | {kl} | - | published |")
        return "\n".join(out)
    out = [
        f"| {dataset} | fid_classifier (10k) | classes covered | class reverse KL | per seed (fid_classifier) |",
        "|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        out.append(
            f"| {name} | {cell(runs, 'fid_classifier', digits=1)} | {cell(runs, 'classes_covered', digits=1)} "
            f"| {cell(runs, 'class_reverse_kl')} | {seeds(runs, 'fid_classifier')} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="ring8,grid25", help=f"subset of {list(ablation.SEARCH_SPACES)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="override every base's steps")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    p.add_argument("--data-root", default=None, help="the torchvision root of an image dataset")
    p.add_argument("--champion", type=Path, default=None, help="a run's config.yaml to use as the champion")
    p.add_argument("--grids", type=Path, default=Path(__file__).parent / "grids", help="sample grids go here")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change every row's base, as gan-ray's --set (e.g. model.g_filters=64 for the full-width DCGAN)",
    )
    args = p.parse_args(argv)
    try:
        from gan_ray.config import parse_overrides

        base_overrides = parse_overrides(args.set)
    except ValueError as err:
        p.error(str(err))
    datasets = [d for d in args.datasets.split(",") if d]
    bad = sorted(set(datasets) - set(ablation.SEARCH_SPACES))
    if bad or args.seeds < 1:
        p.error(f"unknown dataset {bad}" if bad else "--seeds must be >= 1")
    images = [d for d in datasets if d not in PUBLISHED]
    if images and args.data_root is None:
        p.error(f"{images}: needs --data-root (a torchvision root holding the dataset)")
    if args.champion is not None:
        if len(datasets) != 1:
            p.error("--champion: one dataset at a time")
        ablation.STUDIES["quality"]["champion"] = {
            datasets[0]: champion_from_file(args.champion, datasets[0])
        }
    for d in images:  # the classifier and the real statistics, once, before the runs share them
        ablation.warm(d, args.data_root, base_overrides)
    rows: dict[str, dict[str, list[dict]]] = {d: {} for d in datasets}
    with ProcessPoolExecutor(args.jobs) as pool:
        # the test split is one set: its floor is one row; a mixture's floor varies with the sampler's seed
        floors = [
            pool.submit(real_floor, d, args.data_root, s, str(args.grids), base_overrides)
            for d in datasets
            for s in range(args.seeds if d in PUBLISHED else 1)
        ]
        jobs = [
            ("quality", d, v, s, args.steps, args.data_root, str(args.grids), base_overrides)
            for d in datasets
            for v in VARIANTS
            for s in range(args.seeds)
        ]
        runs = pool.map(ablation.run, *zip(*jobs, strict=True))
        for result in itertools.chain((f.result() for f in floors), runs):  # each as it comes
            print(json.dumps(result), flush=True)
            rows[result["dataset"]].setdefault(result["variant"], []).append(result)
    for d in datasets:
        for name, runs in rows[d].items():
            keys = ablation.MIXTURE_SCORES if d in PUBLISHED else ablation.IMAGE_SCORES
            summary = {"measurement": "quality", "dataset": d, "variant": name, "seeds": len(runs)}
            summary.update({k: ablation.mean_std(runs, k)[0] for k in keys})
            print(json.dumps(summary), flush=True)
        print(table(d, rows[d]) + "\n", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
