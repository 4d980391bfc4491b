"""The corruption table: how each metric of the standard suite moves when real Fashion-MNIST images are
blurred, noised, lose classes, collapse onto a few images, or are the reference's own (memorised) images.

Every set has ``--n`` images and is scored against ``--n`` training images that the feature classifier
never saw (the reference); the classifier is trained on the first 4,000 training images (400 steps,
half a minute: the tests' own, see tests/conftest.py ``fashion_mnist_classifier``), so the numbers are
on the *classifier's* features (not Inception). precision/recall k = 3, density/coverage
k = 5, on equal counts.

    python bench/corruptions.py --data-root ../shared/data --n 2000     # ~2 min on 2 CPUs

Stdout: one JSON object per set (and the environment); stderr: the Markdown table (bench/QUALITY.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from distortions import blur  # noqa: E402  (tests/distortions.py: the tests' own corruption helpers)
from throughput import environment  # noqa: E402

from gan_ray.metrics.frechet import frechet_distance  # noqa: E402
from gan_ray.metrics.suite import density_coverage, kid, precision_recall  # noqa: E402

COLUMNS = ("fid", "kid", "precision", "recall", "density", "coverage")
#: The classifier's training images come first in the training split; the reference follows them.
CLASSIFIER_IMAGES = 4000


def noise(images: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """Gaussian pixel noise of std ``sigma`` (the images span [-1, 1]), clamped back into range."""
    gen = torch.Generator().manual_seed(seed)
    return (images + sigma * torch.randn(images.shape, generator=gen)).clamp(-1, 1)


def of_classes(images: Tensor, labels: Tensor, classes: int, n: int) -> Tensor:
    """``n`` images of the first ``classes`` classes only (the rest dropped), in the split's order."""
    return images[labels < classes][:n]


def collapsed(images: Tensor, distinct: int, n: int) -> Tensor:
    """``n`` images that are ``distinct`` images repeated: a collapsed or duplicated set."""
    return images[:distinct].repeat(-(-n // distinct), 1, 1, 1)[:n]


def corrupted_sets(
    train: Tensor, test: Tensor, test_labels: Tensor, n: int
) -> dict[str, Callable[[], Tensor]]:
    """Each row's images (built when asked): fresh real ones, the reference itself, and the corruptions."""
    reference = train[CLASSIFIER_IMAGES : CLASSIFIER_IMAGES + n]
    real = test[:n]
    return {
        "test split (real)": lambda: real,
        "memorised (the reference's own)": lambda: reference,
        "blur x1": lambda: blur(real, 1),
        "blur x2": lambda: blur(real, 2),
        "blur x4": lambda: blur(real, 4),
        "noise 0.1": lambda: noise(real, 0.1),
        "noise 0.2": lambda: noise(real, 0.2),
        "noise 0.4": lambda: noise(real, 0.4),
        "8 of 10 classes": lambda: of_classes(test, test_labels, 8, n),
        "5 of 10 classes": lambda: of_classes(test, test_labels, 5, n),
        "2 of 10 classes": lambda: of_classes(test, test_labels, 2, n),
        f"duplicated ({n // 10} x 10)": lambda: collapsed(real, n // 10, n),
        f"collapsed ({max(2, n // 100)} x {n // max(2, n // 100)})": lambda: collapsed(
            real, max(2, n // 100), n
        ),
    }


@torch.no_grad()
def score(extractor: torch.nn.Module, reference: Tensor, images: Tensor) -> dict[str, float]:
    """Every metric of one set's images against the reference features."""
    fake = extractor(images)
    mean, _ = kid(reference, fake)
    return {
        "fid": frechet_distance(reference, fake),
        "kid": mean,
        **precision_recall(reference, fake),
        **density_coverage(reference, fake),
    }


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| set | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3g}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def classifier(train: Tensor, labels: Tensor) -> torch.nn.Module:
    from gan_ray.metrics.features import train_classifier

    return train_classifier(
        train[:CLASSIFIER_IMAGES], labels[:CLASSIFIER_IMAGES], min_steps=400, max_steps=400
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="a torchvision root holding FashionMNIST/raw")
    p.add_argument("--n", type=int, default=2000, help="images a set, and in the reference")
    args = p.parse_args(argv)
    from gan_ray.config import DataConfig
    from gan_ray.data.images import load_labelled

    torch.set_num_threads(1)
    spec = DataConfig(name="fashion_mnist", root=args.data_root)
    train, train_labels = load_labelled(spec, train=True)
    test, test_labels = load_labelled(spec, train=False)
    print(json.dumps(environment()), flush=True)
    extractor = classifier(train, train_labels)
    reference = extractor(train[CLASSIFIER_IMAGES : CLASSIFIER_IMAGES + args.n]).detach()
    rows = {}
    for name, images in corrupted_sets(train, test, test_labels, args.n).items():
        rows[name] = score(extractor, reference, images())
        print(json.dumps({"measurement": "corruption", "set": name, "n": args.n, **rows[name]}), flush=True)
    print(table(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
