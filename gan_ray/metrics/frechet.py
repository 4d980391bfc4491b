"""Image quality as a Fréchet distance between real and generated feature statistics.

The features come from a pluggable extractor (:mod:`gan_ray.metrics.features`); the distance itself is
torchmetrics' ``FrechetInceptionDistance`` fed with those features. With the default extractor this is
not Inception-FID: compare scores only between runs scored by the same extractor.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gan_ray.data.catalog import DataSpec, frechet_metric, spec_info
from gan_ray.data.images import data_identity, load_stored, to_unit_range
from gan_ray.metrics.classes import class_coverage
from gan_ray.metrics.features import default_cache_dir, get_feature_extractor
from gan_ray.metrics.features.cache import cached
from gan_ray.metrics.reference import cached_real_features, identity, read_npz_stats
from gan_ray.metrics.scorer import SuiteScorer

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance


class _Identity(nn.Module):
    """Features in, features out: lets the torchmetrics metric take precomputed features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def _fid_metric(extractor: nn.Module) -> FrechetInceptionDistance:
    from torchmetrics.image.fid import FrechetInceptionDistance

    # A custom module receives the images unchanged (``normalize`` only matters for Inception's uint8).
    # sync_on_compute=False: the evaluator may run on one rank of a DDP group; an all-gather would hang.
    return FrechetInceptionDistance(feature=extractor, reset_real_features=False, sync_on_compute=False)


def _compute(metric: FrechetInceptionDistance) -> float:
    fake_ok = (
        torch.isfinite(metric.fake_features_sum).all() and torch.isfinite(metric.fake_features_cov_sum).all()
    )
    if not bool(fake_ok):
        return math.inf
    value = float(metric.compute().double())
    if not math.isfinite(value):
        return math.inf
    return max(value, 0.0)  # the eigenvalue route can land a hair below zero for identical sets


@torch.no_grad()
def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted (in float64) to two feature sets (N, F) and (M, F)."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"expected two (N, F) feature sets with the same F, "
            f"got {tuple(features_a.shape)} and {tuple(features_b.shape)}"
        )
    if min(features_a.shape[0], features_b.shape[0]) < 2:
        raise ValueError("a Fréchet distance needs at least 2 samples in each set")
    metric = _fid_metric(_Identity(features_a.shape[1])).to(features_a.device)
    metric.update(features_a.double(), real=True)
    metric.update(features_b.double().to(features_a.device), real=False)
    return _compute(metric)


def _real_sample(spec: DataSpec, num: int) -> tuple[Tensor, Tensor]:
    """The first ``num`` real images of one seeded draw, with their labels: the Fréchet statistics, the
    reference's feature sample and the per-class features all come from the same draw."""
    images, labels = load_stored(spec)  # uint8 where stored so: only the picked ones become float
    pick = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))[:num]
    return to_unit_range(images[pick]), labels[pick]


def _stats_validator(num_features: int):
    def valid(stats: dict[str, Any] | None) -> bool:
        try:
            return (
                stats["features_sum"].shape == (num_features,)
                and stats["features_cov_sum"].shape == (num_features, num_features)
                and int(stats["num_samples"]) >= 2
            )
        except (TypeError, KeyError, AttributeError):
            return False

    return valid


class FrechetEvaluator:
    """The image-quality metric of one run: ``evaluate(fake_images)`` is the Fréchet distance between the
    extractor's features of generated images and of ``num_real`` real ones (lower is better, 0 = same).

    Built once per run; the extractor and the real statistics are cached on disk and in memory, so trials
    of a sweep share them; ``extractor_file`` pins the extractor (a sweep's, see
    :func:`gan_ray.metrics.features.extractor_file`). ``identity`` names it: compare scores only between
    equal identities. ``classifier_accuracy`` is the held-out accuracy of the classifier extractor.
    The distance is biased upwards for small sample counts: compare runs at the same ``len(fake_images)``.
    ``scores(fake_images)`` adds, for the classifier extractor, the classes it sees in them.
    """

    def __init__(
        self,
        spec: DataSpec,
        device: torch.device | str = "cpu",
        cache_dir: str | Path | None = None,
        num_real: int = 10_000,
        kind: str = "classifier",
        extractor_seed: int = 0,
        batch_size: int = 500,
        extractor_file: str | Path | None = None,
        suite: tuple[str, ...] = (),
        reference_samples: int = 5000,
        reference: str | Path | None = None,
        keep_fake_features: bool = False,
    ):
        if num_real < 2:
            raise ValueError(f"num_real must be at least 2, got {num_real}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        info = spec_info(spec)
        data_name = data_identity(spec)
        self.shape = info.sample_shape(spec.image_size)
        self.metric_name = frechet_metric(kind)
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.extractor = get_feature_extractor(spec, kind, cache, self.device, extractor_seed, extractor_file)
        self.classifier_accuracy: float | None = getattr(self.extractor, "test_accuracy", None)
        # The classes the classifier was trained on (a folder's are its class folders), else the catalog's.
        head = getattr(self.extractor, "head", None)
        self.num_classes = head.out_features if isinstance(head, nn.Linear) else info.num_classes
        # The features are computed here (not inside torchmetrics), so the classifier's head can label the
        # same forward pass's samples.
        self._metric = _fid_metric(_Identity(self.extractor.num_features)).to(self.device)
        self.suite = SuiteScorer(self.metric_name, suite) if suite else None
        # The last scored samples' features, for per-class metrics (a conditional G) and the suite.
        self.keep_fake_features = keep_fake_features or self.suite is not None
        self._fake_features: Tensor | None = None
        self._spec, self._reference_samples = spec, reference_samples
        self._labelled_real: tuple[Tensor, Tensor] | None = None
        c, h, w = self.shape
        if reference is not None:
            stats = read_npz_stats(reference, self.extractor.num_features)
            source = Path(reference).name
        else:
            name = f"real-{data_name}-{c}x{h}x{w}-n{num_real}-{self.extractor.cache_id}.pt"
            stats, _ = cached(
                cache,
                name,
                lambda: self._real_stats(spec, num_real),
                _stats_validator(self.extractor.num_features),
            )
            source = "data"
        self.num_real = int(stats["num_samples"])
        self._metric.real_features_sum = stats["features_sum"].to(self.device)
        self._metric.real_features_cov_sum = stats["features_cov_sum"].to(self.device)
        self._metric.real_features_num_samples = stats["num_samples"].to(self.device)
        self.reference_identity = identity(data_name, self.shape, self.identity, self.num_real, source)
        self.reference_file: Path | None = None
        if self.suite is not None:
            features_ident = identity(data_name, self.shape, self.identity, reference_samples)
            real, self.reference_file = cached_real_features(
                cache,
                features_ident,
                self.extractor.num_features,
                lambda: self._features(_real_sample(spec, reference_samples)[0]),
            )
            self.suite.real = real.to(self.device)

    @property
    def identity(self) -> str:
        return self.extractor.cache_id

    def _real_stats(self, spec: DataSpec, num_real: int) -> dict[str, Tensor]:
        self._update(_real_sample(spec, num_real)[0], real=True)
        return {
            "features_sum": self._metric.real_features_sum.cpu().clone(),
            "features_cov_sum": self._metric.real_features_cov_sum.cpu().clone(),
            "num_samples": self._metric.real_features_num_samples.cpu().clone(),
        }

    @property
    def labels_classes(self) -> bool:
        """The extractor is a classifier of the dataset's classes: its head can label samples."""
        return isinstance(getattr(self.extractor, "head", None), nn.Linear) and self.num_classes > 0

    @property
    def fake_features(self) -> Tensor | None:
        """The features of the last scored samples (with ``keep_fake_features``; None after non-finite ones)."""
        return self._fake_features

    def labelled_real_features(self) -> tuple[Tensor, Tensor]:
        """Features and labels of ``reference_samples`` real images (the seeded draw of the statistics),
        computed once: what per-class metrics compare a conditional G's samples of each class with."""
        if self._labelled_real is None:
            images, labels = _real_sample(self._spec, self._reference_samples)
            self._labelled_real = (self._features(images), labels)
        return self._labelled_real

    @torch.no_grad()
    def _features(self, images: Tensor) -> Tensor:
        """The extractor's features of ``images``, in batches."""
        return torch.cat(
            [
                self.extractor(
                    images[s : s + self.batch_size].to(self.device, torch.float32, non_blocking=True)
                )
                for s in range(0, images.shape[0], self.batch_size)
            ]
        )

    @torch.no_grad()
    def _update(self, images: Tensor, real: bool) -> list[Tensor]:
        """Feed the images' features to the metric; the classes the classifier predicts for fake ones.
        The fake features are kept (``self._fake_features``) where the suite needs them."""
        labels, kept = [], []
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start : start + self.batch_size].to(self.device, torch.float32, non_blocking=True)
            features = self.extractor(batch)
            self._metric.update(features.double(), real=real)
            if not real and self.labels_classes:
                labels.append(self.extractor.head(features).argmax(1).cpu())
            if not real and self.keep_fake_features:
                kept.append(features)
        self._fake_features = torch.cat(kept) if kept else None
        return labels

    @torch.no_grad()
    def _score(self, fake_images: Tensor) -> tuple[float, list[Tensor]]:
        if tuple(fake_images.shape[1:]) != self.shape or fake_images.shape[0] < 2:
            raise ValueError(
                f"expected at least 2 generated images of shape {self.shape}, "
                f"got a tensor of shape {tuple(fake_images.shape)}"
            )
        self._fake_features = None
        if not bool(torch.isfinite(fake_images).all()):
            return math.inf, []  # a diverged generator's samples get no classes
        self._metric.reset()  # fake statistics only: reset_real_features=False keeps the real ones
        labels = self._update(fake_images.detach(), real=False)
        return _compute(self._metric), labels

    def evaluate(self, fake_images: Tensor) -> float:
        """Fréchet distance of generated images (N, C, H, W) in [-1, 1] to the real ones.

        ``inf`` when any generated value is NaN/inf (a diverged generator), so a minimising search ranks
        the trial last instead of crashing.
        """
        return self._score(fake_images)[0]

    def scores(self, fake_images: Tensor, asked: Tensor | None = None) -> dict[str, float]:
        """The Fréchet distance under its name (``fid_classifier`` / ``fid_inception``) and, for the
        classifier, ``classes_covered`` and ``class_reverse_kl`` of the classes it predicts for the samples
        (:func:`gan_ray.metrics.classes.class_coverage`); no classes for non-finite samples. ``asked``: the
        classes a conditional G was asked for, one a sample: adds ``class_accuracy``, the fraction the
        classifier judges to be of the class asked for."""
        distance, labels = self._score(fake_images)
        out = {self.metric_name: distance}
        if labels:
            predicted = torch.cat(labels)
            out.update(class_coverage(predicted, self.num_classes))
            if asked is not None:
                out["class_accuracy"] = float((predicted == asked.cpu()).double().mean())
        if self.suite is not None:
            out.update(self.suite.scores(self._fake_features if math.isfinite(distance) else None))
        return out
