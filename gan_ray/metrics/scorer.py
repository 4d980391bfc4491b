"""The suite at eval time: one run's real reference features against each eval's fake features, with the
real neighbourhood radii kept between evals (they depend on the reference alone)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gan_ray.data.catalog import suite_metrics
from gan_ray.metrics.suite import (
    K_DENSITY_COVERAGE,
    K_PRECISION_RECALL,
    density_coverage,
    kid,
    knn_radii,
    precision_recall,
)


class SuiteScorer:
    """Scores fake features (M, F) against ``real`` (N, F) with the ``parts`` of the suite.

    KID takes every fake; precision/recall and density/coverage take the first ``min(M, N)`` of each side,
    as the papers compare equal counts (recall and coverage grow with the fake count)."""

    def __init__(self, frechet_metric: str, parts: tuple[str, ...]):
        self.parts = parts
        self.names = suite_metrics(frechet_metric.removeprefix("fid_"), parts)
        self.real: Tensor | None = None
        self._radii: dict[tuple[int, int], Tensor] = {}

    def _real_radii(self, count: int, k: int) -> Tensor:
        if (count, k) not in self._radii:
            assert self.real is not None
            self._radii[(count, k)] = knn_radii(self.real[:count], k)
        return self._radii[(count, k)]

    def worst(self) -> dict[str, float]:
        """What a generator with non-finite samples scores: KID inf, the rest 0 (finite: a search can rank it)."""
        return {n: (math.inf if n.startswith("kid") and not n.endswith("_std") else 0.0) for n in self.names}

    @torch.no_grad()
    def scores(self, fake: Tensor | None) -> dict[str, float]:
        """The suite's metrics (names as :func:`gan_ray.data.catalog.suite_metrics`); :meth:`worst` for None."""
        if fake is None or not bool(torch.isfinite(fake).all()):
            return self.worst()
        assert self.real is not None, "set the reference features first"
        out: dict[str, float] = {}
        if "kid" in self.parts:
            mean, std = kid(self.real, fake)
            out[self.names[0]], out[self.names[1]] = mean, std
        count = min(fake.shape[0], self.real.shape[0])
        real, fake = self.real[:count], fake[:count]
        if "precision_recall" in self.parts:
            k = K_PRECISION_RECALL
            out.update(precision_recall(real, fake, k, self._real_radii(count, k)))
        if "density_coverage" in self.parts:
            k = K_DENSITY_COVERAGE
            out.update(density_coverage(real, fake, k, self._real_radii(count, k)))
        return out
