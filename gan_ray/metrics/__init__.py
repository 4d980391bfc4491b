"""Quality metrics computed at each eval, and which one is the search objective per dataset."""

from __future__ import annotations

from gan_ray.datasets import MIXTURE_DATASETS
from gan_ray.metrics.frechet import (
    FeatureExtractorUnavailable,
    FrechetEvaluator,
    frechet_distance,
    get_feature_extractor,
)
from gan_ray.metrics.mixture import mode_metrics

__all__ = [
    "FeatureExtractorUnavailable",
    "FrechetEvaluator",
    "frechet_distance",
    "get_feature_extractor",
    "mode_metrics",
    "objective_for",
    "reported_metrics",
]


def objective_for(dataset_name: str) -> tuple[str, str]:
    """(metric name, "min" | "max") that a sweep on this dataset optimises.

    2-D mixtures: ``mode_distance`` (min; see :func:`mode_metrics`). Images: ``fid``, the Fréchet
    distance on a classifier's features (min).
    """
    return ("mode_distance", "min") if dataset_name in MIXTURE_DATASETS else ("fid", "min")


def reported_metrics(dataset_name: str) -> tuple[str, ...]:
    """The metrics every eval report of this dataset carries (what a sweep may optimise)."""
    quality = (
        ("mode_distance", "modes_covered", "high_quality_fraction", "reverse_kl")
        if dataset_name in MIXTURE_DATASETS
        else ("fid",)
    )
    return quality + ("loss_d", "loss_g", "d_real", "d_fake")
