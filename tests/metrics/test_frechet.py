"""The Fréchet image metric: a classifier trained once on digits, its disk cache, and how the distance
behaves on real, corrupted and noise images. One classifier is trained for the whole module (seconds)."""

from __future__ import annotations

import importlib.util
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from distortions import blur

from gan_ray.config import DataConfig
from gan_ray.data.images import load_images, load_labelled
from gan_ray.errors import FeatureExtractorUnavailable
from gan_ray.metrics.features import (
    ClassifierFeatures,
    FeatureExtractor,
    clear_memo,
    get_feature_extractor,
    train_classifier,
)
from gan_ray.metrics.features.cache import try_load
from gan_ray.metrics.features.classifier import classifier_file, usable
from gan_ray.metrics.frechet import FrechetEvaluator, frechet_distance

DIGITS = DataConfig(name="digits")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here trains tiny models (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gan_ray_cache")


@pytest.fixture(scope="module")
def evaluator(cache_dir) -> FrechetEvaluator:
    """Trains the digits classifier into ``cache_dir`` (the only training in this module)."""
    clear_memo()
    ev = FrechetEvaluator(DIGITS, "cpu", cache_dir=cache_dir, num_real=10_000)
    assert ev.extractor.origin == "built"
    return ev


@pytest.fixture(scope="module")
def halves() -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random halves of the 1797 digits."""
    images = load_images(DIGITS)
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(1))
    half = images.shape[0] // 2
    return images[order[:half]], images[order[half : 2 * half]]


@torch.no_grad()
def _features(evaluator: FrechetEvaluator, images: torch.Tensor) -> torch.Tensor:
    return evaluator.extractor(images)


# --- the classifier -----------------------------------------------------------------------------------


def test_load_labelled_digits():
    images, labels = load_labelled(DIGITS)
    assert images.shape == (1797, 1, 8, 8) and labels.shape == (1797,) and labels.dtype == torch.long
    assert set(labels.tolist()) == set(range(10))
    torch.testing.assert_close(images, load_images(DIGITS))
    resized, _ = load_labelled(DataConfig(name="digits", image_size=28))
    assert resized.shape == (1797, 1, 28, 28) and resized.min() >= -1 and resized.max() <= 1


def test_classifier_is_accurate_on_held_out_digits(evaluator):
    assert evaluator.classifier_accuracy is not None and evaluator.classifier_accuracy > 0.85
    assert isinstance(evaluator.extractor, ClassifierFeatures)
    assert isinstance(evaluator.extractor, FeatureExtractor)
    assert not evaluator.extractor.training
    assert not any(p.requires_grad for p in evaluator.extractor.parameters())


@pytest.mark.parametrize("size", [8, 28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_classifier_accepts_every_size_and_channel_count(size, channels):
    model = ClassifierFeatures(channels, size, num_features=16)
    images = torch.rand(2, channels, size, size) * 2 - 1
    assert model(images).shape == (2, 16)
    assert model.logits(images).shape == (2, 10)


def test_training_leaves_the_callers_rng_alone():
    images, labels = load_labelled(DIGITS)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_classifier(images[:300], labels[:300], min_steps=2, max_steps=2)
    torch.testing.assert_close(torch.rand(3), expected)


def test_three_channel_classifier_learns_colour():
    """A tiny 3-channel set whose class is which channel is bright: the colour path trains."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (600,), generator=gen)
    images = torch.rand(600, 3, 8, 8, generator=gen) * 0.5 - 1
    images[torch.arange(600), labels] += 1.0
    model = train_classifier(images, labels, min_steps=100, max_steps=100, batch_size=32)
    assert model.test_accuracy > 0.9
    with torch.no_grad():
        red, green = model(images[labels == 0]), model(images[labels == 1])
    assert frechet_distance(red[:80], red[80:160]) < frechet_distance(red[:80], green[:80])


# --- the cache ----------------------------------------------------------------------------------------


def test_second_call_loads_from_disk_without_training(evaluator, cache_dir):
    files = list(cache_dir.glob("classifier-digits-1x8x8-seed0-v*.pt"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    clear_memo()
    loaded = get_feature_extractor(DIGITS, cache_dir=cache_dir)
    assert loaded.origin == "disk"
    assert files[0].stat().st_mtime_ns == mtime
    assert loaded.cache_id == evaluator.extractor.cache_id
    torch.testing.assert_close(loaded.state_dict(), evaluator.extractor.state_dict())
    assert get_feature_extractor(DIGITS, cache_dir=cache_dir).origin == "memory"
    assert not list(cache_dir.glob("*.tmp"))  # the atomic writes left nothing behind


def test_real_statistics_are_cached(evaluator, cache_dir, halves):
    stats = list(cache_dir.glob("real-digits-1x8x8-n10000-*.pt"))
    assert len(stats) == 1
    mtime = stats[0].stat().st_mtime_ns
    clear_memo()
    again = FrechetEvaluator(DIGITS, "cpu", cache_dir=cache_dir, num_real=10_000)
    assert stats[0].stat().st_mtime_ns == mtime
    assert again.num_real == evaluator.num_real == 1797  # capped at the dataset's size
    assert again.evaluate(halves[1]) == pytest.approx(evaluator.evaluate(halves[1]), rel=1e-6)


def test_stale_or_broken_cache_files_are_not_loaded(tmp_path, evaluator):
    """A truncated file, or weights of an older architecture under the same name, mean: train again."""

    def _load_classifier(path):
        saved = try_load(path)
        return saved if usable(saved) else None

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert _load_classifier(broken) is None
    stale = tmp_path / "stale.pt"
    other = ClassifierFeatures(1, 8, num_features=16)
    meta = {"in_channels": 1, "image_size": 8, "num_features": 64, "cache_id": "x", "test_accuracy": 0.9}
    torch.save({"state_dict": other.state_dict(), "meta": meta}, stale)
    assert _load_classifier(stale) is None
    assert _load_classifier(tmp_path / "missing.pt") is None


def test_different_seed_is_a_different_cache_entry(cache_dir):
    _classifier_file = classifier_file
    assert _classifier_file(DIGITS, 0) != _classifier_file(DIGITS, 1)
    assert _classifier_file(DIGITS, 0) != _classifier_file(DataConfig(name="digits", image_size=28), 0)


# --- the distance ---------------------------------------------------------------------------------------


def test_distance_of_a_set_to_itself_is_zero(evaluator, halves):
    feats = _features(evaluator, halves[0])
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    assert evaluator.evaluate(load_images(DIGITS)) == pytest.approx(0.0, abs=1e-3)


def test_real_halves_are_close_and_noise_is_far(evaluator, halves):
    fa, fb = (_features(evaluator, h) for h in halves)
    noise = torch.rand(halves[1].shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    d_halves = frechet_distance(fa, fb)
    d_noise = frechet_distance(fa, _features(evaluator, noise))
    assert d_halves < 0.05 * d_noise
    assert evaluator.evaluate(halves[1]) < 0.05 * evaluator.evaluate(noise)


def test_distance_grows_with_corruption(evaluator, halves):
    real_a, real_b = halves
    fa = _features(evaluator, real_a)
    d_halves = frechet_distance(fa, _features(evaluator, real_b))
    gen = torch.Generator().manual_seed(3)
    noisy = [
        frechet_distance(
            fa, _features(evaluator, (real_b + s * torch.randn(real_b.shape, generator=gen)).clamp(-1, 1))
        )
        for s in (0.25, 0.5, 1.0)
    ]
    blurred = [frechet_distance(fa, _features(evaluator, blur(real_b, t))) for t in (1, 2, 3)]
    for distances in (noisy, blurred):
        assert d_halves < distances[0] < distances[1] < distances[2]


def test_mode_collapse_is_penalised(evaluator):
    images, labels = load_labelled(DIGITS)
    all_classes = evaluator.evaluate(images[::2])
    five_classes = evaluator.evaluate(images[labels < 5])
    one_class = evaluator.evaluate(images[labels == 3])
    assert all_classes < five_classes < one_class


def test_non_finite_images_give_inf(evaluator, halves):
    fake = halves[1].clone()
    fake[0, 0, 0, 0] = float("nan")
    assert evaluator.evaluate(fake) == math.inf
    fake[0, 0, 0, 0] = float("inf")
    assert evaluator.evaluate(fake) == math.inf
    assert math.isfinite(evaluator.evaluate(halves[1]))  # and the evaluator is still usable


def test_evaluate_checks_the_shape(evaluator):
    with pytest.raises(ValueError, match=r"\(1, 8, 8\)"):
        evaluator.evaluate(torch.zeros(10, 1, 28, 28))
    with pytest.raises(ValueError, match="at least 2"):
        evaluator.evaluate(torch.zeros(1, 1, 8, 8))


def test_frechet_distance_matches_closed_form():
    """Gaussians with diagonal covariances: d = |mu1 - mu2|^2 + sum (s1 - s2)^2 with s the std devs."""
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(200_000, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    b = torch.randn(200_000, 3, generator=gen, dtype=torch.float64) * torch.tensor([2.0, 1.0, 0.5]) + 1.0
    expected = 3 * 1.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


# --- pluggable extractors -------------------------------------------------------------------------------


def test_inception_without_its_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("GAN_RAY_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty hub cache: nothing to find
    expected = "weights" if importlib.util.find_spec("torch_fidelity") else "torch-fidelity"
    with pytest.raises(FeatureExtractorUnavailable, match=expected) as err:
        get_feature_extractor(DIGITS, kind="inception", cache_dir=tmp_path)
    assert "classifier" in str(err.value)  # it names the alternative
    assert not list((tmp_path / "torch_home").rglob("*.pth"))  # and downloaded nothing


def test_unknown_kind_and_non_image_dataset_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown feature extractor 'vgg'"):
        get_feature_extractor(DIGITS, kind="vgg", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="image dataset"):
        get_feature_extractor(DataConfig(name="ring8"), cache_dir=tmp_path)


# --- labels of torchvision datasets ---------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def test_load_labelled_mnist_pairs_images_with_their_labels(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("t10k", 3)):
        labels = np.arange(n, dtype=np.uint8)
        # image i is uniformly 20 * label: the pairing is visible in the pixels
        _write_idx(raw / f"{split}-images-idx3-ubyte", np.repeat(20 * labels, 28 * 28).reshape(n, 28, 28))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    del rng
    for train, n in ((True, 5), (False, 3)):
        images, labels = load_labelled(DataConfig(name="mnist", root=str(tmp_path)), train=train)
        assert images.shape == (n, 1, 28, 28) and labels.tolist() == list(range(n))
        torch.testing.assert_close(images[:, 0, 0, 0], (20 * labels).float() / 127.5 - 1)
    images, _ = load_labelled(DataConfig(name="mnist", root=str(tmp_path), image_size=32))
    assert images.shape == (5, 1, 32, 32)


def test_a_pinned_extractor_file_wins_over_the_nodes_own_cache(evaluator, cache_dir, tmp_path, halves):
    """What a sweep relies on: every trial scored by the file it was handed, whatever a node has cached.

    Two classifiers trained with different seeds give the same images different scores."""
    from gan_ray.metrics.features import extractor_file

    path, identity = extractor_file(DIGITS, cache_dir=cache_dir)
    assert path.is_file() and identity == evaluator.identity
    other_cache = tmp_path / "other_node"
    other = FrechetEvaluator(DIGITS, "cpu", cache_dir=other_cache, extractor_seed=1)
    assert other.identity != evaluator.identity
    pinned = FrechetEvaluator(DIGITS, "cpu", cache_dir=other_cache, extractor_seed=1, extractor_file=path)
    assert pinned.identity == evaluator.identity and pinned.extractor.origin == "file"
    fake = halves[1]
    assert pinned.evaluate(fake) == pytest.approx(evaluator.evaluate(fake), rel=1e-6)
    assert other.evaluate(fake) != pytest.approx(evaluator.evaluate(fake), rel=0.01)
    with pytest.raises(FileNotFoundError, match="no usable feature classifier"):
        FrechetEvaluator(DIGITS, "cpu", cache_dir=other_cache, extractor_file=tmp_path / "nothing.pt")


def test_scores_name_the_distance_for_its_features_and_count_classes(evaluator):
    images, labels = load_labelled(DIGITS)
    one_class = images[labels == 3]
    scores = evaluator.scores(one_class)
    assert evaluator.metric_name == "fid_classifier" and set(scores) == {
        "fid_classifier",
        "classes_covered",
        "class_reverse_kl",
    }
    assert scores["fid_classifier"] == pytest.approx(evaluator.evaluate(one_class), rel=1e-9)
    # a classifier of 85-95 % accuracy puts a few of one digit's images in other classes: covered counts
    # those, the reverse KL (log 10 = 2.3 for one class only) weighs them for what they are
    assert scores["classes_covered"] < 10 and scores["class_reverse_kl"] > 1.5
    every = evaluator.scores(images[::2])
    assert every["classes_covered"] == 10 and every["class_reverse_kl"] < 0.05
    broken = one_class.clone()
    broken[0, 0, 0, 0] = float("nan")
    assert evaluator.scores(broken) == {"fid_classifier": math.inf}  # no classes of a diverged generator


def test_the_suite_on_digits_with_its_cached_reference(evaluator, cache_dir, halves, tmp_path):
    """``metrics.suite: full``: the reference's real features are cached beside the Fréchet statistics
    (one file, named by its identity), a real half scores as real data, one digit as a collapse; and a
    pytorch-fid .npz of the same real features gives the same Fréchet distance as the data's own."""
    from gan_ray.metrics.reference import save_npz_stats

    suite = ("kid", "precision_recall", "density_coverage")
    ev = FrechetEvaluator(DIGITS, "cpu", cache_dir=cache_dir, suite=suite, reference_samples=800)
    assert ev.identity == evaluator.identity and ev.reference_file.is_file()
    assert ev.reference_file.name == f"real-features-digits-train-1x8x8-n800-{ev.identity}.pt"
    assert ev.reference_identity["split"] == "train" and ev.reference_identity["source"] == "data"
    real = ev.scores(halves[1][:800])
    images, labels = load_labelled(DIGITS)
    collapsed = ev.scores(images[labels == 3][:150].repeat(6, 1, 1, 1))
    assert real["precision"] > 0.7 and real["recall"] > 0.7 and real["coverage"] > 0.7
    assert collapsed["precision"] > 0.5 and collapsed["recall"] < 0.3 and collapsed["coverage"] < 0.3
    assert collapsed["kid_classifier"] > 10 * max(real["kid_classifier"], 1e-3)
    assert ev.scores(halves[1][:800]) == real  # two scorings of the same images agree exactly
    npz = tmp_path / "digits.npz"
    save_npz_stats(_features(evaluator, load_images(DIGITS)), npz)  # the whole set: what num_real draws
    from_npz = FrechetEvaluator(DIGITS, "cpu", cache_dir=cache_dir, reference=npz)
    assert from_npz.reference_identity["source"] == "digits.npz"
    assert from_npz.evaluate(halves[1]) == pytest.approx(evaluator.evaluate(halves[1]), rel=1e-6)


def test_per_class_metrics_of_real_images_see_their_labels_right_and_wrong(evaluator, cache_dir):
    """What a conditional run's eval adds: real digits scored as a conditional G's samples. With their
    true labels the intra-class FID is small and the class accuracy high; with the labels rotated (every
    image "asked" for the next class) the intra-class FID grows many times and the accuracy falls."""
    from gan_ray.metrics.conditional import intra_class_fid

    ev = FrechetEvaluator(DIGITS, "cpu", cache_dir=cache_dir, keep_fake_features=True, reference_samples=900)
    images, labels = load_labelled(DIGITS)
    pick = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(3))[:600]
    fakes, truth = images[pick], labels[pick]
    real, real_labels = ev.labelled_real_features()
    assert real.shape[0] == real_labels.shape[0] == 900
    right = ev.scores(fakes, asked=truth)
    right.update(intra_class_fid(real, real_labels, ev.fake_features, truth))
    wrong_labels = (truth + 1) % 10
    wrong = ev.scores(fakes, asked=wrong_labels)
    wrong.update(intra_class_fid(real, real_labels, ev.fake_features, wrong_labels))
    assert right["class_accuracy"] > 0.9 > 0.2 > wrong["class_accuracy"]
    assert wrong["intra_fid"] > 5 * right["intra_fid"]
    assert right[ev.metric_name] == pytest.approx(wrong[ev.metric_name])  # the pooled distance is blind to it
    assert {f"intra_fid_{c}" for c in range(10)} <= right.keys()
    ev.scores(torch.full_like(fakes, float("nan")), asked=truth)
    assert ev.fake_features is None  # a diverged G's eval keeps no stale features
