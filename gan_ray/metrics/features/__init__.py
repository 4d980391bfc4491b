"""Feature extractors for the Fréchet distance, selected by name: ``classifier`` (default) or ``inception``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from gan_ray.data.catalog import FEATURES_GROUP, DataSpec, dataset_info
from gan_ray.errors import FeatureExtractorUnavailable, PluginError
from gan_ray.metrics.features.cache import clear_memo, default_cache_dir
from gan_ray.metrics.features.classifier import (
    ClassifierFeatures,
    classifier_extractor,
    classifier_file,
    load_classifier_file,
    train_classifier,
)
from gan_ray.metrics.features.inception import inception_extractor
from gan_ray.registry import Registry, require_callable

__all__ = [
    "FEATURE_EXTRACTORS",
    "ClassifierFeatures",
    "FeatureExtractor",
    "FeatureExtractorUnavailable",
    "clear_memo",
    "default_cache_dir",
    "extractor_file",
    "get_feature_extractor",
    "train_classifier",
]


@runtime_checkable
class FeatureExtractor(Protocol):
    """An ``nn.Module`` mapping images (N, C, H, W) in [-1, 1] to features (N, ``num_features``), and a
    ``cache_id`` naming its weights (it keys the cached real statistics)."""

    num_features: int
    cache_id: str

    def __call__(self, images: Tensor) -> Tensor: ...


ExtractorBuilder = Callable[[DataSpec, Path, torch.device, int], nn.Module]


#: kind -> builder(data spec, cache_dir, device, seed) returning a :class:`FeatureExtractor`; plug-ins by
#: import path or ``gan_ray.features`` entry points (their Fréchet metric is ``fid_<name>``).
FEATURE_EXTRACTORS: Registry[ExtractorBuilder] = Registry(
    "feature extractor",
    FEATURES_GROUP,
    {"classifier": classifier_extractor, "inception": inception_extractor},
    convert=require_callable(
        "feature extractor",
        "a builder(data_spec, cache_dir, device, seed) returning an nn.Module with num_features and cache_id",
    ),
)


def get_feature_extractor(
    spec: DataSpec,
    kind: str = "classifier",
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    file: str | Path | None = None,
) -> nn.Module:
    """The feature extractor ``kind`` for ``spec``'s images, on ``device``, in eval mode, without grads.

    ``classifier`` trains a :class:`ClassifierFeatures` the first time for a (dataset, image shape,
    ``seed``, architecture version) and caches it under ``cache_dir`` (default :func:`default_cache_dir`);
    later calls load it, and calls in the same process reuse it from memory. Keep ``seed`` fixed across a
    sweep (it is not the trial's seed): distances are comparable only under the same extractor.
    ``inception`` is torchmetrics' Inception-v3; it raises :class:`FeatureExtractorUnavailable` unless
    torch-fidelity and its weights file are present locally. ``file`` is a saved classifier (see
    :func:`extractor_file`) to use instead of the cache's: how a sweep scores all its trials alike.
    """
    if file is not None:
        if kind != "classifier":
            raise ValueError(f"a feature-extractor file holds a classifier; features {kind!r} takes none")
        return load_classifier_file(Path(file), torch.device(device))
    builder = FEATURE_EXTRACTORS.resolve(kind)
    if dataset_info(spec.name).is_mixture:
        raise ValueError(f"a Fréchet distance needs an image dataset, got {spec.name!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    extractor = builder(spec, cache, torch.device(device), seed)
    missing = [a for a in ("num_features", "cache_id") if not hasattr(extractor, a)]
    if missing or not isinstance(extractor, nn.Module):
        raise PluginError(
            f"feature extractor {kind!r} built {type(extractor).__name__}, which lacks {missing or 'nn.Module'}: "
            "a feature extractor is an nn.Module with num_features and cache_id (see FeatureExtractor)"
        )
    return extractor


def extractor_file(
    spec: DataSpec, kind: str = "classifier", cache_dir: str | Path | None = None, seed: int = 0
) -> tuple[Path | None, str]:
    """(the file holding the extractor for ``spec``, its identity): trained into the cache now if it is
    not there yet. ``inception`` has no file (its weights are fixed), only its identity."""
    extractor = get_feature_extractor(spec, kind, cache_dir, "cpu", seed)
    if kind != "classifier":
        return None, extractor.cache_id
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / classifier_file(spec, seed), extractor.cache_id
