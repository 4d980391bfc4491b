"""Reference statistics: the real side of every metric, computed once per (dataset, split, resolution,
extractor) and cached; or a user's precomputed Fréchet statistics (pytorch-fid's ``.npz``: mu, sigma).

Two files in the feature cache: the Fréchet statistics (feature sum and covariance sum of ``num_real``
images, what torchmetrics' FID keeps) and a bounded sample of real *features* (the first
``num_features`` of the same seeded draw) for KID, precision/recall and density/coverage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gan_ray.metrics.features.cache import cached

#: The split every reference is drawn from (the generator learns it; see the docs on memorisation).
SPLIT = "train"
#: The most real features a reference sample keeps: 50,000 is the papers' protocol (on a GPU).
MAX_REFERENCE_FEATURES = 50_000
#: The sample count pytorch-fid's statistics stand for (it stores none): only the FID state's bookkeeping;
#: the distance is the same for any count.
NPZ_NOMINAL_COUNT = 50_000


def identity(
    dataset: str, shape: tuple[int, ...], extractor: str, num: int, source: str = "data"
) -> dict[str, Any]:
    """What a reference is: dataset, split, resolution, extractor, sample count and where it came from."""
    return {
        "dataset": dataset,
        "split": SPLIT,
        "resolution": "x".join(str(s) for s in shape),
        "extractor": extractor,
        "num_samples": num,
        "source": source,
    }


def identity_line(ident: dict[str, Any]) -> str:
    """One line naming a reference (a tag: equal lines, comparable scores)."""
    return "/".join(str(ident[k]) for k in ("dataset", "split", "resolution", "extractor")) + (
        f"/n{ident['num_samples']}" + ("" if ident["source"] == "data" else f"/{ident['source']}")
    )


def stats_from_mu_sigma(
    mu: np.ndarray, sigma: np.ndarray, count: int = NPZ_NOMINAL_COUNT
) -> dict[str, Tensor]:
    """torchmetrics' FID state (sums over ``count`` samples) for a mean and an (unbiased) covariance."""
    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    sigma_t = torch.as_tensor(sigma, dtype=torch.float64)
    # torchmetrics: cov = (cov_sum - n mu mu^T) / (n - 1)
    return {
        "features_sum": mu_t * count,
        "features_cov_sum": sigma_t * (count - 1) + count * torch.outer(mu_t, mu_t),
        "num_samples": torch.tensor(count),
    }


def read_npz_stats(path: str | Path, num_features: int) -> dict[str, Tensor]:
    """pytorch-fid's statistics file (keys ``mu`` (F,), ``sigma`` (F, F)) as the FID state; one-line
    errors for a missing file, missing keys or a feature count other than the extractor's."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"metrics.reference {str(path)!r}: no such file (expected pytorch-fid's .npz)"
        )
    with np.load(path) as npz:
        missing = [k for k in ("mu", "sigma") if k not in npz.files]
        if missing:
            raise ValueError(
                f"metrics.reference {str(path)!r} lacks {missing}; pytorch-fid's .npz has mu and sigma"
            )
        mu, sigma = npz["mu"], npz["sigma"]
    if mu.shape != (num_features,) or sigma.shape != (num_features, num_features):
        raise ValueError(
            f"metrics.reference {str(path)!r} holds mu {mu.shape}, sigma {sigma.shape}; the extractor has "
            f"{num_features} features (Inception's pool3 is 2048)"
        )
    return stats_from_mu_sigma(mu, sigma)


def save_npz_stats(features: Tensor, path: str | Path) -> None:
    """Write pytorch-fid's format (mu, sigma of ``features`` (N, F), float64) to ``path``."""
    f = features.double().cpu().numpy()
    np.savez(path, mu=f.mean(0), sigma=np.cov(f, rowvar=False))


def _features_valid(num_features: int, num: int) -> Callable[[dict[str, Any] | None], bool]:
    def valid(saved: dict[str, Any] | None) -> bool:
        try:
            return saved["features"].shape == (num, num_features) and isinstance(saved["identity"], str)
        except (TypeError, KeyError, AttributeError):
            return False

    return valid


def cached_real_features(
    cache_dir: Path,
    ident: dict[str, Any],
    num_features: int,
    build: Callable[[], Tensor],
) -> tuple[Tensor, Path]:
    """The reference's real feature sample (``ident['num_samples']`` x ``num_features``, float32), from
    the cache or ``build()``; and the file holding it (with its identity, for MLflow)."""
    name = (
        f"real-features-{ident['dataset']}-{ident['split']}-{ident['resolution']}-n{ident['num_samples']}"
        f"-{ident['extractor']}.pt"
    )
    saved, _ = cached(
        cache_dir,
        name,
        lambda: {"features": build().float().cpu(), "identity": json.dumps(ident, sort_keys=True)},
        _features_valid(num_features, int(ident["num_samples"])),
    )
    return saved["features"], cache_dir / name
