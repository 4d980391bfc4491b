"""The standard suite as pure functions: KID against torchmetrics' own metric on the same features,
precision/recall and density/coverage against a brute-force numpy reading of the papers' definitions,
closed forms on point sets, and the reference statistics (cache, pytorch-fid's .npz)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gan_ray.config import MetricsConfig
from gan_ray.data.catalog import dataset_info, suite_metrics
from gan_ray.metrics.features.cache import clear_memo
from gan_ray.metrics.frechet import _compute, _fid_metric, _Identity, frechet_distance
from gan_ray.metrics.reference import cached_real_features, identity, read_npz_stats, save_npz_stats
from gan_ray.metrics.scorer import SuiteScorer
from gan_ray.metrics.suite import density_coverage, kid, knn_radii, precision_recall


def _points(seed: int, n: int, dim: int = 5, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def _kth(d: np.ndarray, k: int) -> np.ndarray:
    """k-th nearest other point: sort each row, skip the point itself (its 0)."""
    return np.sort(d, axis=1)[:, k]


def _brute_force(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """Kynkäänniemi et al. 2019 eq. 1-2 and Naeem et al. 2020 eq. 3-4, one point at a time."""
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # noqa: E731
    d_rr, d_ff, d_rf = dist(real, real), dist(fake, fake), dist(real, fake)
    r_pr, f_pr, r_dc = _kth(d_rr, k_pr), _kth(d_ff, k_pr), _kth(d_rr, k_dc)
    precision = np.mean([any(d_rf[i, j] <= r_pr[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d_rf[i, j] <= f_pr[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum(d_rf[i, j] <= r_dc[i] for i in range(len(real)) for j in range(len(fake))) / (
        k_dc * len(fake)
    )
    coverage = np.mean([d_rf[i].min() <= r_dc[i] for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("shift", [0.0, 0.7, 3.0])
def test_precision_recall_density_coverage_match_the_papers_definitions(shift):
    real, fake = _points(0, 60), _points(1, 45, shift=shift) * 0.8
    ours = {**precision_recall(real, fake, chunk=16), **density_coverage(real, fake, chunk=16)}
    expected = _brute_force(real.numpy(), fake.numpy())
    assert ours == pytest.approx(expected, abs=1e-12)
    if shift == 3.0:  # and the definitions do what they are for: a far set is neither precise nor covering
        assert ours["precision"] < 0.3 and ours["coverage"] < 0.3


def test_closed_forms_on_point_sets():
    real = _points(2, 200)
    same = {**precision_recall(real, real.clone()), **density_coverage(real, real.clone())}
    # each real ball holds its own copy and its k neighbours' copies: density (k + 1) / k
    assert same == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 6 / 5, "coverage": 1.0})
    far = {**precision_recall(real, real + 100.0), **density_coverage(real, real + 100.0)}
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # a collapsed set: all fakes on 3 real points: precise, but neither recalling nor covering
    collapsed = real[:3].repeat(67, 1)[:200]
    pr, dc = precision_recall(real, collapsed), density_coverage(real, collapsed)
    assert pr["precision"] == 1.0 and pr["recall"] < 0.05 and dc["coverage"] < 0.1


def test_knn_radii_skip_the_point_itself_and_check_k():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(points, 1).tolist() == [1.0, 1.0, 4.0, 16.0]  # squared
    assert knn_radii(points, 3).tolist() == [49.0, 36.0, 16.0, 49.0]
    with pytest.raises(ValueError, match="k must lie in"):
        knn_radii(points, 4)


@pytest.mark.parametrize("seed", [0, 3])
def test_kid_equals_torchmetrics_on_the_same_features(seed):
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _points(3, 150, dim=8), _points(4, 120, dim=8, shift=0.3)
    metric = KernelInceptionDistance(feature=_Identity(8), subsets=7, subset_size=50, sync_on_compute=False)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(seed)
    mean, std = metric.compute()
    assert kid(real, fake, subsets=7, subset_size=50, seed=seed) == pytest.approx(
        (float(mean), float(std)), rel=1e-9
    )


def test_kid_is_the_unbiased_mmd_and_repeats_exactly():
    real, fake = _points(5, 40, dim=3), _points(6, 40, dim=3, shift=1.0)
    k = lambda a, b: (a @ b.T / 3 + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(real, real).numpy(), k(fake, fake).numpy(), k(real, fake).numpy()
    m = 40
    unbiased = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2
    assert kid(real, fake, subsets=1, subset_size=m)[0] == pytest.approx(unbiased, rel=1e-10)
    assert kid(real, fake, subsets=5, subset_size=20) == kid(real, fake, subsets=5, subset_size=20)
    assert kid(real, _points(7, 40, dim=3))[0] < kid(real, fake)[0]


def test_pytorch_fid_npz_gives_the_same_distance_as_the_features(tmp_path):
    real, fake = _points(8, 500, dim=6), _points(9, 400, dim=6, shift=0.5)
    path = tmp_path / "stats.npz"
    save_npz_stats(real, path)
    stats = read_npz_stats(path, 6)
    metric = _fid_metric(_Identity(6))
    metric.real_features_sum, metric.real_features_cov_sum = stats["features_sum"], stats["features_cov_sum"]
    metric.real_features_num_samples = stats["num_samples"]
    metric.update(fake, real=False)
    assert _compute(metric) == pytest.approx(frechet_distance(real, fake), rel=1e-9)


def test_bad_npz_is_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.reference .*no such file"):
        read_npz_stats(tmp_path / "none.npz", 6)
    np.savez(tmp_path / "odd.npz", mean=np.zeros(6))
    with pytest.raises(ValueError, match=r"lacks \['mu', 'sigma'\]"):
        read_npz_stats(tmp_path / "odd.npz", 6)
    np.savez(tmp_path / "wide.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ValueError, match="extractor has 6 features"):
        read_npz_stats(tmp_path / "wide.npz", 6)


def test_reference_features_are_built_once_and_keyed_by_identity(tmp_path):
    clear_memo()
    built = []

    def build():
        built.append(1)
        return _points(10, 30, dim=4).float()

    ident = identity("digits", (1, 8, 8), "classifier-abc", 30)
    first, path = cached_real_features(tmp_path, ident, 4, build)
    clear_memo()  # a new process: from disk
    again, _ = cached_real_features(tmp_path, ident, 4, build)
    assert built == [1] and torch.equal(first, again) and path.is_file()
    assert "digits-train-1x8x8-n30-classifier-abc" in path.name
    other = identity("digits", (1, 8, 8), "classifier-abd", 30)
    cached_real_features(tmp_path, other, 4, build)
    assert len(built) == 2  # another extractor, another reference


def test_scorer_uses_equal_counts_and_ranks_broken_samples_last():
    scorer = SuiteScorer("fid_classifier", ("kid", "precision_recall", "density_coverage"))
    scorer.real = _points(11, 100, dim=4)
    out = scorer.scores(_points(12, 60, dim=4))
    assert set(out) == {"kid_classifier", "kid_classifier_std", "precision", "recall", "density", "coverage"}
    expected = {**precision_recall(scorer.real[:60], _points(12, 60, dim=4))}
    assert out["recall"] == expected["recall"]
    worst = scorer.scores(None)
    assert worst["kid_classifier"] == float("inf") and worst["recall"] == 0.0


def test_suite_setting_and_the_metrics_it_reports():
    assert MetricsConfig().suite == () and MetricsConfig(suite="fid").suite == ()
    assert MetricsConfig(suite="full").suite == ("kid", "precision_recall", "density_coverage")
    assert MetricsConfig(suite=["density_coverage", "kid"]).suite == ("kid", "density_coverage")
    with pytest.raises(ValueError, match="expected 'fid', 'full' or a list of"):
        MetricsConfig(suite=["recall"])
    assert suite_metrics("inception", ("kid",)) == ("kid_inception", "kid_inception_std")
    reported = dataset_info("fashion_mnist").reported_metrics("classifier", ("precision_recall",))
    assert {"fid_classifier", "precision", "recall"} <= set(reported) and "density" not in reported
