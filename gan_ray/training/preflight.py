"""Every component a config names, tried once on the CPU before anything expensive starts.

The config's validation resolves each name already (an unknown name, a module that does not import, a
builder of the wrong signature); this builds what only building shows: G and D against their contract,
the noise sampler against its, the feature extractor's plug-in import. One line each, before Ray or any
worker starts.
"""

from __future__ import annotations

from gan_ray.config import GanConfig
from gan_ray.noise import check_sampler
from gan_ray.training.networks import build_models


def check_components(cfg: GanConfig) -> None:
    """Raise :class:`gan_ray.errors.PluginError` in one line where a component of ``cfg`` breaks its contract."""
    check_sampler(cfg.noise.distribution, cfg.noise_dim)
    build_models(cfg)  # checks G and D (gan_ray.models.check_contract)
    if not cfg.data.is_mixture:
        from gan_ray.metrics.features import FEATURE_EXTRACTORS  # torchmetrics: image runs only

        FEATURE_EXTRACTORS.resolve(cfg.metrics.features)
