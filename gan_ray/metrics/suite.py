"""The standard sample-quality suite beside the Fréchet distance, as pure functions of two feature sets:
KID, improved precision and recall, density and coverage.

- KID (Bińkowski et al. 2018): the unbiased MMD² under the cubic polynomial kernel, averaged over random
  subsets (torchmetrics' ``poly_mmd``; its defaults: 100 subsets of 1,000).
- Improved precision and recall (Kynkäänniemi et al. 2019, k = 3): a sample's manifold is the union of
  balls around each of its points reaching that point's k-th nearest neighbour; precision is the share of
  fakes inside the real manifold, recall the share of reals inside the fake one.
- Density and coverage (Naeem et al. 2020, k = 5): density counts how many real balls hold each fake
  (mean / k; 1 for matching distributions, above 1 where fakes crowd real modes); coverage is the share of
  real balls that hold at least one fake.

The balls are closed (``<=``), as the papers write them. Distances are computed in float64 in chunks,
so memory stays at ``chunk x M`` whatever the sample counts.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The papers' neighbourhood sizes.
K_PRECISION_RECALL = 3
K_DENSITY_COVERAGE = 5
#: torchmetrics' (and torch-fidelity's) KID protocol.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def _check(real: Tensor, fake: Tensor, at_least: int) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"expected two (N, F) feature sets with the same F, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if min(real.shape[0], fake.shape[0]) < at_least:
        raise ValueError(
            f"each feature set needs at least {at_least} samples, got {real.shape[0]} and {fake.shape[0]}"
        )


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """(A, B) squared Euclidean distances in float64 (the matmul route, exact enough in float64; clamped
    at 0 so an exact copy is at distance 0)."""
    a, b = a.double(), b.double()
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min_(0.0)


def knn_radii(features: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Squared distance of each point (N, F) to its k-th nearest *other* point (N,), float64."""
    if not 1 <= k < features.shape[0]:
        raise ValueError(
            f"k must lie in [1, {features.shape[0] - 1}] for {features.shape[0]} points, got {k}"
        )
    out = []
    for start in range(0, features.shape[0], chunk):
        d = _squared_distances(features[start : start + chunk], features)
        # the k+1 smallest include the point itself (distance 0); a duplicate elsewhere also counts as a neighbour
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def precision_recall(
    real: Tensor,
    fake: Tensor,
    k: int = K_PRECISION_RECALL,
    real_radii: Tensor | None = None,
    chunk: int = 1024,
) -> dict[str, float]:
    """Improved ``precision`` and ``recall`` of fake features (M, F) against real ones (N, F).

    ``real_radii`` are :func:`knn_radii` of ``real`` for this ``k``, when the caller keeps them."""
    _check(real, fake, k + 1)
    real_radii = knn_radii(real, k, chunk) if real_radii is None else real_radii.double()
    fake_radii = knn_radii(fake, k, chunk).to(real.device)
    fake_inside = torch.zeros(fake.shape[0], dtype=torch.bool, device=real.device)
    real_inside = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for start in range(0, real.shape[0], chunk):
        d = _squared_distances(real[start : start + chunk], fake.to(real.device))
        fake_inside |= (d <= real_radii[start : start + chunk, None].to(d.device)).any(0)
        real_inside[start : start + chunk] = (d <= fake_radii[None, :]).any(1)
    return {"precision": float(fake_inside.double().mean()), "recall": float(real_inside.double().mean())}


def density_coverage(
    real: Tensor,
    fake: Tensor,
    k: int = K_DENSITY_COVERAGE,
    real_radii: Tensor | None = None,
    chunk: int = 1024,
) -> dict[str, float]:
    """``density`` and ``coverage`` of fake features (M, F) against real ones (N, F)."""
    _check(real, fake, k + 1)
    real_radii = knn_radii(real, k, chunk) if real_radii is None else real_radii.double()
    held = torch.zeros(fake.shape[0], dtype=torch.float64, device=real.device)
    covered = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for start in range(0, real.shape[0], chunk):
        d = _squared_distances(real[start : start + chunk], fake.to(real.device))
        inside = d <= real_radii[start : start + chunk, None].to(d.device)
        held += inside.sum(0)
        covered[start : start + chunk] = inside.any(1)
    return {"density": float(held.sum() / (k * fake.shape[0])), "coverage": float(covered.double().mean())}


def kid(
    real: Tensor,
    fake: Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std over subsets) of the kernel inception distance between feature sets (N, F) and (M, F).

    Subsets of ``min(subset_size, N, M)`` are drawn with a generator seeded by ``seed`` in torchmetrics'
    order (a real permutation, then a fake one, per subset), so a scoring repeats exactly and equals
    ``KernelInceptionDistance`` run after ``torch.manual_seed(seed)`` on the same features."""
    from torchmetrics.image.kid import poly_mmd

    _check(real, fake, 2)
    size = min(subset_size, real.shape[0], fake.shape[0])
    gen = torch.Generator().manual_seed(seed)
    fake = fake.to(real.device)
    scores = []
    for _ in range(subsets):
        pick_real = torch.randperm(real.shape[0], generator=gen)[:size].to(real.device)
        pick_fake = torch.randperm(fake.shape[0], generator=gen)[:size].to(real.device)
        scores.append(poly_mmd(real[pick_real].double(), fake[pick_fake].double()))
    values = torch.stack(scores)
    return float(values.mean()), float(values.std(unbiased=False))
