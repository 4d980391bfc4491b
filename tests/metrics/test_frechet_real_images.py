"""The Fréchet metric on real images: Fashion-MNIST read by torchvision's own reader, a classifier trained
on 4,000 of its images (half a minute, shared with the bench test through conftest), and what the distance says about real, corrupted, class-collapsed
and noise sets of 2,000 images. The thresholds leave a wide margin below what the sets measure (the
numbers in the comments, printed with ``-s``), so they test the metric's sense, not one classifier.

Needs the real data (``fashion_mnist_root`` in conftest); skipped where there is none."""

from __future__ import annotations

import math

import pytest
import torch
from distortions import blur

from gan_ray.config import DataConfig
from gan_ray.data.images import load_labelled
from gan_ray.metrics.features import ClassifierFeatures
from gan_ray.metrics.features.classifier import fingerprint
from gan_ray.metrics.frechet import FrechetEvaluator, frechet_distance

N = 2000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def spec(fashion_mnist_root) -> DataConfig:
    return DataConfig(name="fashion_mnist", root=str(fashion_mnist_root))


@pytest.fixture(scope="module")
def splits(spec):
    train_images, train_labels = load_labelled(spec, train=True)
    test_images, test_labels = load_labelled(spec, train=False)
    return train_images, train_labels, test_images, test_labels


@pytest.fixture(scope="module")
def classifier(fashion_mnist_classifier) -> ClassifierFeatures:
    return fashion_mnist_classifier[0]


@pytest.fixture(scope="module")
def reference(splits, classifier) -> torch.Tensor:
    """Features of 2,000 training images the classifier never saw: the 'real' side of every distance."""
    with torch.no_grad():
        return classifier(splits[0][4000 : 4000 + N])


def _distance(classifier, reference, images) -> float:
    with torch.no_grad():
        return frechet_distance(reference, classifier(images))


def test_torchvision_reads_the_real_splits(splits):
    train_images, train_labels, test_images, test_labels = splits
    assert train_images.shape == (60_000, 1, 28, 28) and test_images.shape == (10_000, 1, 28, 28)
    assert train_images.min() == -1 and train_images.max() == 1  # scaled from uint8 0..255 to [-1, 1]
    assert torch.bincount(train_labels).tolist() == [6000] * 10
    assert torch.bincount(test_labels).tolist() == [1000] * 10
    # a real photo set, not a synthetic stand-in: per-class mean images differ clearly (trouser vs bag)
    means = torch.stack([train_images[train_labels == c].mean(0) for c in range(10)])
    assert (means[1] - means[8]).abs().mean() > 0.2


def test_the_classifier_learns_the_classes(classifier, splits):
    """Its held-out accuracy (a fifth of its 4,000 images) and on the test split: 0.76 / 0.78 measured
    (the cached extractor that sweeps use, trained on all 60,000 images, holds out at 0.87)."""
    from gan_ray.metrics.features.classifier import accuracy

    _, _, test_images, test_labels = splits
    on_test = accuracy(classifier, test_images[:N], test_labels[:N], "cpu")
    print(f"held-out accuracy {classifier.test_accuracy:.3f}, test split {on_test:.3f}")
    assert classifier.test_accuracy > 0.7 and on_test > 0.7


def test_real_is_far_below_light_corruption_which_is_far_below_noise(classifier, reference, splits):
    """Test vs train 1.4; blur once 23, noise sigma 0.1 8; uniform noise 1426; one class only (the mean over
    the 10 classes) 1218, about as far as noise: a classifier's feature space pulls the classes apart."""
    test_images = splits[2][:N]
    gen = torch.Generator().manual_seed(0)
    real = _distance(classifier, reference, test_images)
    blurred = _distance(classifier, reference, blur(test_images, 1))
    noisy = _distance(
        classifier,
        reference,
        (test_images + 0.1 * torch.randn(test_images.shape, generator=gen)).clamp(-1, 1),
    )
    noise = _distance(classifier, reference, torch.rand(test_images.shape, generator=gen) * 2 - 1)
    one_class = [_distance(classifier, reference, splits[2][splits[3] == c][: N // 2]) for c in range(10)]
    print(
        f"real {real:.2f} blur {blurred:.1f} noise0.1 {noisy:.1f} one class {sum(one_class) / 10:.0f} noise {noise:.0f}"
    )
    assert real < 0.25 * min(blurred, noisy, min(one_class))
    assert max(blurred, noisy) < 0.2 * noise
    assert sum(one_class) / 10 < noise


@pytest.mark.parametrize("corruption", ["noise", "blur"])
def test_distance_grows_with_corruption_strength(classifier, reference, splits, corruption):
    """Noise sigma 0.1 / 0.2 / 0.4 / 0.8: 8 / 40 / 184 / 579; blur 1-4 times: 23 / 58 / 93 / 123."""
    test_images = splits[2][:N]
    gen = torch.Generator().manual_seed(1)
    if corruption == "noise":
        sets = [
            (test_images + s * torch.randn(test_images.shape, generator=gen)).clamp(-1, 1)
            for s in (0.1, 0.2, 0.4, 0.8)
        ]
    else:
        sets = [blur(test_images, t) for t in (1, 2, 3, 4)]
    distances = [_distance(classifier, reference, images) for images in sets]
    real = _distance(classifier, reference, test_images)
    print(corruption, [round(d, 1) for d in distances])
    assert real < distances[0] and distances == sorted(distances), distances


def test_distance_drops_as_a_collapsed_set_regains_classes(classifier, reference, splits):
    """2,000 test images drawn from 1, 2, 4, 7 and all 10 classes (each count averaged over the 10
    rotations of which classes): 1217 / 646 / 351 / 104 / 1.2."""
    _, _, test_images, test_labels = splits
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        features = classifier(test_images)
    means = []
    for k in (1, 2, 4, 7, 10):
        distances = []
        for first in range(10):
            classes = torch.tensor([(first + i) % 10 for i in range(k)])
            pool = torch.nonzero(torch.isin(test_labels, classes)).flatten()
            pick = pool[torch.randint(len(pool), (N,), generator=gen)]
            distances.append(frechet_distance(reference, features[pick]))
        means.append(sum(distances) / len(distances))
    print("classes 1/2/4/7/10", [round(m, 1) for m in means])
    assert means == sorted(means, reverse=True), means
    assert means[-1] < 0.01 * means[0]


def test_the_evaluator_scores_real_images_through_the_torchvision_path(
    fashion_mnist_classifier, splits, spec, tmp_path
):
    """The run's evaluator on real data: real statistics of 2,000 training images read by torchvision,
    the classifier pinned from a file as a sweep hands it to its trials, and class coverage."""
    classifier, path = fashion_mnist_classifier
    evaluator = FrechetEvaluator(spec, cache_dir=tmp_path / "cache", num_real=N, extractor_file=path)
    assert (
        evaluator.identity == f"classifier-{fingerprint(classifier.state_dict())}" and evaluator.num_real == N
    )
    _, _, test_images, test_labels = splits
    real = evaluator.scores(test_images[:N])
    collapsed = evaluator.scores(test_images[test_labels == 7][:N])
    assert real["fid_classifier"] < 0.05 * collapsed["fid_classifier"]
    assert real["classes_covered"] == 10 and real["class_reverse_kl"] < 0.1
    assert collapsed["class_reverse_kl"] > 1.0 and math.isfinite(collapsed["fid_classifier"])
