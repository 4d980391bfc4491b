"""The standard suite on real Fashion-MNIST, on the feature classifier's features: each metric moves the
right way under rising blur and noise, dropped classes, a duplicated or collapsed set, and memorised
training images (the blind spot every reference-based metric shares); two scorings of the same images
agree. The sets are bench/corruptions.py's (its table at 2,000 images is in bench/QUALITY.md); here 1,000
a set. Needs the real data (``fashion_mnist_root`` in conftest); skipped where there is none."""

from __future__ import annotations

import pytest
import torch
from bench_scripts import bench_module

from gan_ray.config import DataConfig
from gan_ray.data.images import load_labelled

N = 1000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def bench():
    return bench_module("corruptions")


@pytest.fixture(scope="module")
def scored(fashion_mnist_root, fashion_mnist_classifier, bench) -> dict[str, dict[str, float]]:
    spec = DataConfig(name="fashion_mnist", root=str(fashion_mnist_root))
    train, _ = load_labelled(spec, train=True)
    test, test_labels = load_labelled(spec, train=False)
    extractor = fashion_mnist_classifier[0]
    with torch.no_grad():
        reference = extractor(train[bench.CLASSIFIER_IMAGES : bench.CLASSIFIER_IMAGES + N])
    sets = bench.corrupted_sets(train, test, test_labels, N)
    rows = {name: bench.score(extractor, reference, images()) for name, images in sets.items()}
    print("\n" + bench.table(rows))
    rows["again"] = bench.score(extractor, reference, sets["test split (real)"]())
    shuffled = sets["test split (real)"]()[torch.randperm(N, generator=torch.Generator().manual_seed(5))]
    rows["shuffled"] = bench.score(extractor, reference, shuffled)
    return rows


def _column(rows, names, metric):
    return [rows[n][metric] for n in names]


def _rising(values):
    return all(a < b for a, b in zip(values, values[1:], strict=False))


def _falling(values):
    return all(a > b for a, b in zip(values, values[1:], strict=False))


def test_blur_of_rising_strength(scored):
    names = ["test split (real)", "blur x1", "blur x2", "blur x4"]
    assert _rising(_column(scored, names, "fid")) and _rising(_column(scored, names, "kid"))
    assert _falling(_column(scored, names, "recall")) and _falling(_column(scored, names, "coverage"))
    # blurred clothes still look like clothes to the classifier: precision and density fall last
    assert scored["blur x4"]["precision"] < scored["test split (real)"]["precision"]
    assert scored["blur x4"]["density"] < scored["test split (real)"]["density"]


def test_noise_of_rising_strength(scored):
    names = ["test split (real)", "noise 0.1", "noise 0.2", "noise 0.4"]
    assert _rising(_column(scored, names, "fid")) and _rising(_column(scored, names, "kid"))
    for metric in ("precision", "recall", "density", "coverage"):
        assert _falling(_column(scored, names, metric)), metric


def test_dropped_classes(scored):
    """Coverage counts the real neighbourhoods left empty; recall falls too, but not in proportion (the
    fake manifold's k-NN balls inflate where a set is sparse: Naeem et al.'s argument for coverage)."""
    names = ["test split (real)", "8 of 10 classes", "5 of 10 classes", "2 of 10 classes"]
    assert _rising(_column(scored, names, "fid")) and _rising(_column(scored, names, "kid"))
    assert _falling(_column(scored, names, "coverage"))
    real = scored["test split (real)"]
    for name in names[1:]:
        assert scored[name]["recall"] < real["recall"]
        assert scored[name]["precision"] > real["precision"] - 0.05  # what is drawn still looks real


def test_duplicated_and_collapsed_sets_keep_precision_and_lose_recall_and_coverage(scored):
    real = scored["test split (real)"]
    for name in [n for n in scored if n.startswith(("duplicated", "collapsed"))]:
        row = scored[name]
        assert row["precision"] > real["precision"] - 0.05, name
        # a fake with 3 exact copies has a k=3 ball of radius 0: duplicates recall nothing
        assert row["recall"] < 0.1 and row["coverage"] < real["coverage"] / 2, name
        assert row["fid"] > real["fid"] and row["kid"] > real["kid"], name


def test_memorised_training_images_score_best_of_all(scored):
    """The reference's own images are perfect on every metric (density (k+1)/k, the closed form for a
    set scored against itself) and beat fresh real images: no reference-based metric catches
    memorisation; compare a run's scores against the test split's to see it."""
    memorised, real = scored["memorised (the reference's own)"], scored["test split (real)"]
    assert memorised["fid"] < 1e-6 < real["fid"]
    assert memorised["kid"] < real["kid"]
    assert (memorised["precision"], memorised["recall"], memorised["coverage"]) == (1.0, 1.0, 1.0)
    assert memorised["density"] == pytest.approx(6 / 5)


def test_two_scorings_of_the_same_images_agree(scored):
    real = scored["test split (real)"]
    assert scored["again"] == real  # the same images: exactly (KID's subsets are seeded)
    shuffled = {k: v for k, v in scored["shuffled"].items() if k != "kid"}
    assert shuffled == pytest.approx({k: v for k, v in real.items() if k != "kid"}, rel=1e-6)
    # KID draws other subsets of a shuffled set: the same number within its subset noise
    assert abs(scored["shuffled"]["kid"] - real["kid"]) < 0.1 * scored["blur x1"]["kid"]
