"""Every fact gan_ray knows about a dataset, in one table: its kind, shape, where it comes from, and
what a sweep on it optimises. Imports nothing heavy, so config validation and the CLI can read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from gan_ray.objective import Objective

MIXTURE_METRICS = ("mode_distance", "modes_covered", "high_quality_fraction", "reverse_kl")
#: The Fréchet distance is named for the features it is computed on (``metrics.features``): the default
#: classifier's make a different number from Inception-FID, and must not be read as one.
FID_METRICS = {"classifier": "fid_classifier", "inception": "fid_inception"}
#: Metric names of earlier versions -> today's: ``fid`` was the classifier's Fréchet distance.
RENAMED_METRICS = {"fid": "fid_classifier"}
#: The classes the feature classifier sees in the samples (the StackedMNIST protocol's mode count).
CLASS_METRICS = ("classes_covered", "class_reverse_kl")
#: What every eval report carries besides the quality metrics.
TRAINING_METRICS = ("loss_d", "loss_g", "d_real", "d_fake")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: Literal["mixture", "image"]
    channels: int
    #: side length of the stored images (None for the 2-D mixtures)
    native_size: int | None = None
    #: class name in ``torchvision.datasets`` (None: generated, or bundled with scikit-learn)
    torchvision_class: str | None = None
    num_classes: int = 0
    #: number of Gaussian modes (mixtures only)
    num_modes: int = 0

    @property
    def is_mixture(self) -> bool:
        return self.kind == "mixture"

    @property
    def needs_root(self) -> bool:
        """Its files come from a torchvision root folder (``data.root``)."""
        return self.torchvision_class is not None

    def quality_metrics(self, features: str = "classifier") -> tuple[str, ...]:
        """The quality metrics every eval on this dataset reports, the objective's first: the mixtures' mode
        metrics, or the Fréchet distance on ``features`` (and, for the classifier, the classes it sees)."""
        if self.is_mixture:
            return MIXTURE_METRICS
        if features not in FID_METRICS:
            raise ValueError(f"unknown feature extractor {features!r}; expected one of {sorted(FID_METRICS)}")
        return (FID_METRICS[features],) + (CLASS_METRICS if features == "classifier" else ())

    def reported_metrics(self, features: str = "classifier") -> tuple[str, ...]:
        """The metrics every eval report on this dataset carries (what a sweep may optimise)."""
        return self.quality_metrics(features) + TRAINING_METRICS

    def objective(self, features: str = "classifier") -> Objective:
        """What a sweep optimises by default: ``mode_distance`` (mixtures) or the Fréchet distance on
        ``features`` (images: ``fid_classifier`` by default), minimised."""
        return Objective(self.quality_metrics(features)[0], "min")

    def sample_shape(self, image_size: int | None = None) -> tuple[int, ...]:
        """One sample's shape; images resized to ``image_size`` when given."""
        if self.is_mixture:
            return (2,)
        size = image_size or self.native_size
        return (self.channels, size, size)


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("ring8", "mixture", channels=2, num_modes=8),
        DatasetInfo("grid25", "mixture", channels=2, num_modes=25),
        DatasetInfo("digits", "image", channels=1, native_size=8, num_classes=10),
        DatasetInfo("mnist", "image", 1, 28, "MNIST", num_classes=10),
        DatasetInfo("fashion_mnist", "image", 1, 28, "FashionMNIST", num_classes=10),
        DatasetInfo("cifar10", "image", 3, 32, "CIFAR10", num_classes=10),
    )
}
MIXTURE_DATASETS = tuple(name for name, d in DATASETS.items() if d.is_mixture)
IMAGE_DATASETS = tuple(name for name, d in DATASETS.items() if not d.is_mixture)
TORCHVISION_DATASETS = tuple(name for name, d in DATASETS.items() if d.needs_root)


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry of ``name``, or a ValueError listing the known datasets."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None


class DataSpec(Protocol):
    """What the data loaders read from a config's ``data`` section (``gan_ray.config.DataConfig`` is one).

    A structural type: anything with these attributes will do, so this floor needs no config import.
    """

    name: str
    root: str | None
    download: bool
    image_size: int | None
