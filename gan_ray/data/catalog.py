"""Every fact gan_ray knows about a dataset, in one table: its kind, shape, where it comes from, and
what a sweep on it optimises. Imports nothing heavy, so config validation and the CLI can read it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Literal, Protocol

from gan_ray.errors import PluginError
from gan_ray.objective import Objective
from gan_ray.registry import Registry, is_import_path

MIXTURE_METRICS = ("mode_distance", "modes_covered", "high_quality_fraction", "reverse_kl")
#: The Fréchet distance is named for the features it is computed on (``metrics.features``): the default
#: classifier's make a different number from Inception-FID, and must not be read as one.
FID_METRICS = {"classifier": "fid_classifier", "inception": "fid_inception"}
#: The feature extractors' entry-point group (their registry lives in gan_ray.metrics.features).
FEATURES_GROUP = "gan_ray.features"
#: Metric names of earlier versions -> today's: ``fid`` was the classifier's Fréchet distance.
RENAMED_METRICS = {"fid": "fid_classifier"}
#: The classes the feature classifier sees in the samples (the StackedMNIST protocol's mode count).
CLASS_METRICS = ("classes_covered", "class_reverse_kl")
#: The standard suite beyond the Fréchet distance (``metrics.suite``), cheapest first; ``full`` is all of it.
SUITE_PARTS = ("kid", "precision_recall", "density_coverage")
#: What a run reports where its features are on real data: the reference's identity (a tag).
REFERENCE_KEY = "reference_statistics"
#: The local file holding the reference's real feature sample (an eval report's, for MLflow to log).
REFERENCE_FILE_KEY = "reference_file"
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
    #: A plug-in image set's reader: ``load(spec, train) -> (images (N, C, H, W) float in [-1, 1], int64
    #: labels (N,))``. None for the built-ins, which gan_ray.data.images reads itself.
    load: Callable[[Any, bool], Any] | None = field(default=None, repr=False, compare=False)
    #: A plug-in mixture's mode centres ((x, y), ...) and their standard deviation.
    modes: tuple[tuple[float, ...], ...] = ()
    mode_std: float = 0.0
    #: Its shape is the config's (``data.channels``, ``data.image_size``) and its classes are found in the
    #: files (``data.labels: auto``): the ``folder`` dataset. See :func:`spec_info`.
    shaped_by_config: bool = False

    @property
    def is_mixture(self) -> bool:
        return self.kind == "mixture"

    @property
    def needs_root(self) -> bool:
        """Its files come from a torchvision root folder (``data.root``)."""
        return self.torchvision_class is not None

    def quality_metrics(self, features: str = "classifier", suite: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The quality metrics every eval on this dataset reports, the objective's first: the mixtures' mode
        metrics, or the Fréchet distance on ``features`` (and, for the classifier, the classes it sees, and
        the ``suite``'s metrics: :func:`suite_metrics`)."""
        if self.is_mixture:
            return MIXTURE_METRICS
        classes = CLASS_METRICS if features == "classifier" else ()
        return (frechet_metric(features),) + classes + suite_metrics(features, suite)

    def reported_metrics(self, features: str = "classifier", suite: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The metrics every eval report on this dataset carries (what a sweep may optimise)."""
        return self.quality_metrics(features, suite) + TRAINING_METRICS

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


def _as_dataset(name: str, obj: object) -> DatasetInfo:
    """A plug-in dataset is a :class:`DatasetInfo` that says how to read it (``load`` or ``modes``)."""
    if not isinstance(obj, DatasetInfo):
        raise PluginError(
            f"dataset {name!r} is {obj!r}; expected a gan_ray.data.DatasetInfo(name=..., kind='image', "
            "channels=..., native_size=..., num_classes=..., load=fn)"
        )
    if obj.is_mixture and not obj.modes:
        raise PluginError(f"dataset {name!r}: a mixture plug-in needs its modes ((x, y), ...) and mode_std")
    if not obj.is_mixture and (obj.load is None or not obj.native_size):
        raise PluginError(
            f"dataset {name!r}: an image plug-in needs native_size and load(spec, train) -> (images, labels)"
        )
    return obj


#: The datasets by name: the built-ins here; plug-ins by import path or ``gan_ray.datasets`` entry points.
DATASETS: Registry[DatasetInfo] = Registry(
    "dataset",
    "gan_ray.datasets",
    {
        d.name: d
        for d in (
            DatasetInfo("ring8", "mixture", channels=2, num_modes=8),
            DatasetInfo("grid25", "mixture", channels=2, num_modes=25),
            DatasetInfo("digits", "image", channels=1, native_size=8, num_classes=10),
            DatasetInfo("mnist", "image", 1, 28, "MNIST", num_classes=10),
            DatasetInfo("fashion_mnist", "image", 1, 28, "FashionMNIST", num_classes=10),
            DatasetInfo("cifar10", "image", 3, 32, "CIFAR10", num_classes=10),
            # Your own images (gan_ray.data.prepared): a folder, a .zip or s3://...; labels from subfolders.
            DatasetInfo("folder", "image", channels=3, shaped_by_config=True),
        )
    },
    convert=_as_dataset,
)
MIXTURE_DATASETS = tuple(name for name in DATASETS if DATASETS[name].is_mixture)
IMAGE_DATASETS = tuple(name for name in DATASETS if not DATASETS[name].is_mixture)
TORCHVISION_DATASETS = tuple(name for name in DATASETS if DATASETS[name].needs_root)


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry of ``name`` (a built-in or a plug-in), or a one-line error listing the built-ins."""
    return DATASETS.resolve(name)


#: ``data.channels`` when a config leaves it unset.
DEFAULT_FOLDER_CHANNELS = 3


def spec_info(spec: DataSpec) -> DatasetInfo:
    """The catalog entry of ``spec.name`` with the facts the config sets filled in: for ``folder``, its
    channels and side length (its class count is known once its files are listed: see the prepared file)."""
    info = dataset_info(spec.name)
    if not info.shaped_by_config:
        return info
    channels = getattr(spec, "channels", None) or DEFAULT_FOLDER_CHANNELS
    return replace(info, channels=channels, native_size=spec.image_size)


def frechet_metric(features: str) -> str:
    """The name of the Fréchet distance on ``features``: ``fid_classifier``, ``fid_inception``, or for a
    plug-in extractor ``fid_<its attribute or entry-point name>`` (never read as Inception-FID)."""
    if features in FID_METRICS:
        return FID_METRICS[features]
    short = features.rpartition(":")[2].rpartition(".")[2] if is_import_path(features) else features
    return "fid_" + re.sub(r"\W+", "_", short).lower()


def suite_metrics(features: str, suite: tuple[str, ...]) -> tuple[str, ...]:
    """What the ``suite`` parts report: ``kid_<features>`` and its std over subsets (named like the Fréchet
    distance: not Inception-KID unless on Inception), ``precision``/``recall``, ``density``/``coverage``."""
    kid = "kid" + frechet_metric(features)[len("fid") :]
    names = {
        "kid": (kid, kid + "_std"),
        "precision_recall": ("precision", "recall"),
        "density_coverage": ("density", "coverage"),
    }
    return tuple(m for part in SUITE_PARTS if part in suite for m in names[part])


def check_suite(value: object) -> tuple[str, ...]:
    """``metrics.suite`` as its parts: ``fid`` (none: the default), ``full`` (all), or a list of parts."""
    if value in ("fid", None):
        return ()
    if value == "full":
        return SUITE_PARTS
    parts = (value,) if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or any(p not in SUITE_PARTS for p in parts):
        raise ValueError(f"expected 'fid', 'full' or a list of {list(SUITE_PARTS)}, got {value!r}")
    return tuple(p for p in SUITE_PARTS if p in parts)


def check_feature_name(features: str) -> str:
    """``features`` if it can name a feature extractor (a built-in, an import path, an installed entry
    point); the import itself waits for the metrics floor, which builds the extractor."""
    if features in FID_METRICS or is_import_path(features):
        return features
    if any(ep.name == features for ep in metadata.entry_points(group=FEATURES_GROUP)):
        return features
    raise PluginError(
        f"unknown feature extractor {features!r}; built-ins are {list(FID_METRICS)}; plug one in by import "
        f"path 'package.module:attr' or an entry point in group {FEATURES_GROUP!r}"
    )


class DataSpec(Protocol):
    """What the data loaders read from a config's ``data`` section (``gan_ray.config.DataConfig`` is one).

    A structural type: anything with these attributes will do, so this floor needs no config import.
    """

    name: str
    root: str | None
    download: bool
    image_size: int | None
    #: ``folder`` only (None/``auto``/False elsewhere): 1 or 3; ``auto`` or ``none``; a prepared file to read.
    channels: int | None
    labels: str
    mirror: bool
    prepared: str | None
