"""Issue 30's "Show": the networks, class conditioning and augmentation for small data, on Fashion-MNIST.

Prints one JSON line per run (stdout), a Markdown table per experiment (stderr)::

    python bench/nets_quality.py --root ../shared/data [--experiments arch,conditional,small]
        [--seeds 0,1,2] [--wall-s 600] [--steps 2000] [--threads 2]
    python bench/nets_quality.py --quick      # digits at 28 px, a few steps: a smoke test, no numbers

- ``arch``: dcgan against resnet at equal *wall time* (``--wall-s`` each, same recipe: rpgan + R1/R2,
  Adam beta1 0), scored by the dataset's classifier (``fid_classifier``, classes covered).
- ``conditional``: the same dcgan unconditional and ``model.conditional`` at the same steps: classes
  covered, class reverse KL, and ``class_accuracy`` (how often the classifier sees the class asked for).
- ``small``: 1,000 and 5,000 training images, each with augmentation none / diffaug / ada, same steps:
  the distance, and whether D overfits: ``d_gap`` = mean D(x) on the training images minus on held-out
  reals (the test split), which grows as D memorises its few images.

Runs go through the training core in this process (no Ray, no MLflow). Do not run the full size on a
shared 2-CPU machine: it is hours (3 seeds x 2 x wall_s, plus 3 x 2 x steps, plus 3 x 6 x steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

from gan_ray.config import GanConfig, validate_config
from gan_ray.data.images import TensorSource, load_labelled
from gan_ray.data.labelled import LabelledSource
from gan_ray.models import unwrap
from gan_ray.training.loop import Training, build_training, default_evaluator

#: The recipe every run shares (R3GAN's loss and penalty; gamma for 28 px grey images).
RECIPE = {
    "loss": {"name": "rpgan"},
    "penalty": {"name": "r1_r2", "weight": 0.1},
    "optim": {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.99},
}
MODELS = {
    "dcgan": {"name": "dcgan", "params": {"g_filters": 32, "d_filters": 32}},
    "resnet": {"name": "resnet"},  # its 28 px default: width 64, one block a stage
}
AUGMENTS = ("none", "diffaug", "ada")
SMALL_SIZES = (1000, 5000)


def make_config(args: argparse.Namespace, net: str, seed: int, **extra: Any) -> GanConfig:
    data = {"name": args.dataset, "root": args.root, "image_size": args.image_size, **extra.pop("data", {})}
    raw = {
        **RECIPE,
        "data": data,
        "model": {**MODELS[net], **extra.pop("model", {})},
        "train": {
            "batch_size": args.batch,
            "eval_samples": args.eval_samples,
            "device": "cpu",
            "seed": seed,
            "d_steps_per_g_step": 1,
        },
    }
    return validate_config(raw)


def _source(cfg: GanConfig, images: torch.Tensor, labels: torch.Tensor):
    if cfg.num_classes:
        return LabelledSource(images, labels)
    return TensorSource(images)


def train(
    cfg: GanConfig, images: torch.Tensor, labels: torch.Tensor, steps: int | None, wall_s: float | None
) -> tuple[Training, int, float]:
    """Train on ``images`` for ``steps`` iterations, or for ``wall_s`` seconds; (training, steps, seconds)."""
    torch.manual_seed(cfg.train.seed)
    training = build_training(cfg, device=torch.device("cpu"), source=_source(cfg, images, labels))
    done, start = 0, time.perf_counter()
    while (steps is not None and done < steps) or (
        wall_s is not None and time.perf_counter() - start < wall_s
    ):
        training.step_fn()
        done += 1
    training.step = done
    return training, done, time.perf_counter() - start


@torch.no_grad()
def mean_d(training: Training, images: torch.Tensor, labels: torch.Tensor) -> float:
    """D's mean logit on ``images`` (at most 1,000), in eval mode (BatchNorm's running statistics)."""
    d = unwrap(training.discriminator)
    was = d.training
    d.eval()
    try:
        x, y = images[:1000], labels[:1000]
        out = d(x, labels=y) if training.config.num_classes else d(x)
        return float(out.float().mean())
    finally:
        d.train(was)


def score(training: Training, evaluator) -> dict[str, Any]:
    metrics = evaluator(training.sample())
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def run_one(
    args, evaluators, loaded, experiment: str, net: str, seed: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """One run of ``experiment``: trained, scored, and its JSON line printed."""
    extra = dict(extra)
    images, labels, held_images, held_labels = loaded
    n = extra.pop("train_images", None)
    if n is not None:
        images, labels = images[:n], labels[:n]
    wall_s = extra.pop("wall_s", None)
    cfg = make_config(args, net, seed, **extra)
    key = (cfg.data.name, cfg.num_classes)
    if key not in evaluators:
        evaluators[key] = default_evaluator(cfg, torch.device("cpu"))
    training, steps, seconds = train(cfg, images, labels, None if wall_s else args.steps, wall_s)
    line = {
        "measurement": "nets_quality",
        "experiment": experiment,
        "model": net,
        "seed": seed,
        "conditional": cfg.model.conditional,
        "augment": cfg.data.augment.policy,
        "train_images": int(images.shape[0]),
        "steps": steps,
        "seconds": seconds,
        **score(training, evaluators[key]),
    }
    if experiment == "small":
        line["d_train"] = mean_d(training, images, labels)
        line["d_held_out"] = mean_d(training, held_images, held_labels)
        line["d_gap"] = line["d_train"] - line["d_held_out"]
    print(json.dumps(line), flush=True)
    return line


def plan(args) -> list[tuple[str, str, dict[str, Any]]]:
    """(experiment, model, extra config) of every run, for one seed."""
    runs: list[tuple[str, str, dict[str, Any]]] = []
    if "arch" in args.experiments:
        runs += [("arch", m, {"wall_s": args.wall_s}) for m in MODELS]
    if "conditional" in args.experiments:
        runs += [("conditional", "dcgan", {"model": {"conditional": c}}) for c in (False, True)]
    if "small" in args.experiments:
        runs += [
            ("small", "dcgan", {"train_images": n, "data": {"augment": {"policy": a}}})
            for n in args.small_sizes
            for a in AUGMENTS
        ]
    return runs


def load(args) -> tuple[torch.Tensor, ...]:
    """(train images, labels, held-out images, labels) at ``--image-size``; digits (one split) holds out its last 300."""
    spec = make_config(args, "dcgan", 0).data
    images, labels = load_labelled(spec, train=True)
    if args.dataset == "digits":
        return images[:-300], labels[:-300], images[-300:], labels[-300:]
    held_images, held_labels = load_labelled(spec, train=False)
    return images, labels, held_images, held_labels


def table(lines: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds of each (experiment, model, conditional, augment, images) group."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for line in lines:
        key = (line["experiment"], line["model"], line["conditional"], line["augment"], line["train_images"])
        groups.setdefault(key, []).append(line)
    cols = ("fid_classifier", "classes_covered", "class_reverse_kl", "class_accuracy", "d_gap", "steps")
    rows = ["| experiment | model | conditional | augment | images | " + " | ".join(cols) + " |"]
    rows.append("|" + "---|" * (5 + len(cols)))
    for key, group in groups.items():
        cells = []
        for col in cols:
            values = [g[col] for g in group if col in g]
            if not values:
                cells.append("")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3g}")
            else:
                cells.append(f"{statistics.mean(values):.3g} ± {statistics.stdev(values):.2g}")
        rows.append("| " + " | ".join(str(k) for k in key) + " | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--root", default=None, help="torchvision root holding the dataset")
    parser.add_argument("--experiments", default="arch,conditional,small")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--wall-s", type=float, default=600.0, help="seconds per model in 'arch'")
    parser.add_argument("--steps", type=int, default=2000, help="iterations per run in the others")
    parser.add_argument("--small-sizes", default=",".join(map(str, SMALL_SIZES)))
    parser.add_argument("--image-size", type=int, default=28, help="side (resnet builds 28 and up)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eval-samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="digits, seconds: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset, args.root, args.seeds = "digits", None, "0"
        args.wall_s, args.steps, args.small_sizes, args.eval_samples, args.batch = 1.0, 2, "200", 40, 8
    args.experiments = args.experiments.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.small_sizes = [int(n) for n in str(args.small_sizes).split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    loaded = load(args)
    evaluators: dict = {}
    lines = [
        run_one(args, evaluators, loaded, experiment, net, seed, extra)
        for seed in args.seeds
        for experiment, net, extra in plan(args)
    ]
    print(table(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
