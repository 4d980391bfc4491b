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
        _check_images(cfg)


def _check_images(cfg: GanConfig) -> None:
    """A folder that a run cannot use (fewer images than a batch, classifier metrics without two classes),
    and a pretrained extractor whose weights are not on disk: one line each, before anything trains."""
    if cfg.metrics.features == "inception" and cfg.metrics.extractor is None:
        from gan_ray.metrics.features.inception import check_inception

        check_inception()
    if cfg.data.info.shaped_by_config:
        from gan_ray.data.prepared import check_for_run

        check_for_run(
            cfg.data,
            cfg.train.batch_size,
            class_metrics=cfg.metrics.features == "classifier",
            conditional=cfg.model.conditional,
        )
